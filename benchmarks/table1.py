"""The paper's Table 1, restated: the six networks, their GFLOPs, and the back-step against the
paper's own.

For each network at the paper's threshold, in one run, on one device and one clip:

- GFLOPs at 16x224x224 (``torch.utils.flop_counter`` on the meta device, so counting costs
  nothing) and the no-grad forward;
- fxcfp's back-step alone (on the captured pooled inputs) and ``analyze`` at depth 2, 3 and
  full, medians of CPU time (CUDA events on a GPU) interleaved with the forward;
- **the paper's published back-step**, timed faithfully. Its public code (``utils/calc_utils.py``
  of alexandrosstergiou/Class_Feature_Visualization_Pyramid: ``backprop_kernel_indices`` called
  by the recursive ``generate_indices``) makes, *for every kernel of every node* of its tree: an
  ``avg_pool3d`` of the kernel, an ``avg_pool3d`` of the layer's whole input activation (again for
  each kernel), a product, a division by its sum, then one Python loop over the channels that
  builds a ``FloatTensor`` of ``(x - min) / range`` from 0-d tensors and a second loop comparing
  each to θ. :func:`paper_kernel` repeats exactly those operations (our code, not theirs). Its
  per-kernel cost is *measured* on every layer of the chain, on the layer's real input, and the
  tree is the paper's recursion without memoisation (``fxcfp.zoo.paper_literal``'s chain and
  selection), whose nodes per level are counted exactly by multiplicities (a kernel reached
  along ``m`` paths is expanded ``m`` times). The paper's time at depth ``d`` is then *modelled*
  as ``sum over levels < d of (nodes at the level) x (per-kernel cost of its layer)``; at depth 2
  the paper's recursion is also *run* (every kernel through :func:`paper_kernel`) to check the
  model, and the table shows both.

Run: ``python benchmarks/table1.py [--size 112] [--frames 16]`` (CPU default 16x112x112; a 3D
ResNet-152 forward at 224 takes minutes on two cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# this checkout's fxcfp, not whichever one the environment installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fxcfp
from fxcfp._backstep import backstep
from fxcfp.zoo.paper import PAPER_BACKSTEP_MS, PAPER_GFLOPS, PAPER_NETWORKS

try:  # run as a script (python benchmarks/table1.py) or as a module
    from core import RESULTS, _write_section, backstep_inputs, machine, milliseconds
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, backstep_inputs, machine, milliseconds

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
DEPTHS = (2, 3, None)


def gflops(factory, frames: int, size: int) -> float:
    with torch.device("meta"):
        model = factory().eval()
        clip = torch.empty(1, 3, frames, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(clip)
    # the paper's GFLOPs are 2 per multiply-add, as torch's counter counts them: ours land
    # within 3% of all six of its figures
    return counter.get_total_flops() / 1e9


def paper_kernel(weight: torch.Tensor, activation: torch.Tensor, kernel: int,
                 threshold: float) -> list[int]:
    """One kernel of the paper's public back-step, operation for operation: pool the kernel and
    the whole input activation, multiply, divide by the sum, min-max normalise channel by
    channel in Python, and compare channel by channel to θ.

    Args:
        weight: the layer's weight, ``C_out x C_in/groups x k...`` (or ``C_out x C_in``).
        activation: the layer's input for one clip, ``C_in x T x H x W`` (or ``C_in``).
        kernel: the kernel (output channel).
        threshold: θ.
    """
    row = weight[kernel % weight.shape[0]]
    if row.dim() == 4:
        row = F.avg_pool3d(row, row.shape[1:]).squeeze(-1).squeeze(-1).squeeze(-1)
    if activation.dim() == 4:
        activation = F.avg_pool3d(activation, activation.shape[1:]).squeeze(-1).squeeze(-1)
        activation = activation.squeeze(-1)
    elif activation.dim() > 1:  # a linear layer reading features last
        activation = activation.reshape(-1, activation.shape[-1]).mean(0)
    groups = activation.shape[0] // row.shape[0]
    if groups > 1:  # the public code inflates a grouped kernel entry by entry
        row = torch.cat([value.repeat(groups) for value in row], 0)
    pooled = torch.mul(row, activation[: row.shape[0]])
    pooled = pooled / pooled.sum(0).expand_as(pooled)
    base = torch.min(pooled)
    span = torch.max(pooled) - base
    pooled = torch.FloatTensor([(x - base) / span for x in pooled])
    return [j for j, value in enumerate(pooled) if value >= threshold]


class _Chain:
    """The paper's view of a network: its weighted modules in registration order, the inputs
    of one forward (first sample), and each layer's per-kernel cost of :func:`paper_kernel`,
    measured during that forward on a few kernels of the layer."""

    def __init__(self, model: nn.Module, clip: torch.Tensor, threshold: float,
                 samples: int) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
        self.cost: dict[nn.Module, float] = {}
        self.pooled: dict[nn.Module, torch.Tensor] = {}
        self.raw: dict[nn.Module, torch.Tensor] = {}
        self.keep_raw: set[nn.Module] = set()

        def seen(module: nn.Module, args: tuple) -> None:
            if module in self.cost:
                return  # a module called twice keeps its first input
            x = args[0].detach()[0]
            weight = module.weight.detach()
            times = []
            for kernel in range(min(samples, weight.shape[0])):
                start = time.process_time()
                paper_kernel(weight, x, kernel, threshold)
                times.append(time.process_time() - start)
            self.cost[module] = statistics.median(times)
            channel = x.dim() - 1 if isinstance(module, nn.Linear) else 0
            others = [d for d in range(x.dim()) if d != channel]
            self.pooled[module] = x.float().mean(dim=others) if others else x.float()
            if module in self.keep_raw:
                self.raw[module] = x

        self.keep_raw = set(self.layers[-2:])  # the real run at depth 2 needs these inputs
        handles = [layer.register_forward_pre_hook(seen) for layer in self.layers]
        try:
            with torch.no_grad():
                model(clip)
        finally:
            for handle in handles:
                handle.remove()
        self.layers = [layer for layer in self.layers if layer in self.cost]
        self.weights = [self._pooled_weight(layer) for layer in self.layers]

    @staticmethod
    def _pooled_weight(layer: nn.Module) -> torch.Tensor:
        weight = layer.weight.detach().float()
        return weight if weight.dim() == 2 else weight.mean(dim=tuple(range(2, weight.dim())))

    def select(self, level: int, kernel: int, threshold: float) -> list[int]:
        """``fxcfp.zoo.paper_literal``'s selection: channel indices the kernel's row passes."""
        row = self.weights[level][kernel % self.weights[level].shape[0]]
        scores = self.pooled[self.layers[level]][: row.shape[0]] * row
        low, high = scores.min(), scores.max()
        if high == low:
            return []
        return torch.nonzero((scores - low) / (high - low) >= threshold).flatten().tolist()

    def nodes_per_level(self, cls: int, threshold: float, depth: int | None) -> list[int]:
        """Nodes of the paper's tree at each level (level 0: the class), by multiplicities: the
        recursion expands a kernel once per path that reaches it."""
        levels = len(self.layers) if depth is None else min(depth, len(self.layers))
        paths: Counter[int] = Counter({cls: 1})
        nodes = [1]
        for step in range(levels):
            level = len(self.layers) - 1 - step
            following: Counter[int] = Counter()
            for kernel, count in paths.items():
                for channel in self.select(level, kernel, threshold):
                    following[channel] += count
            paths = following
            nodes.append(sum(paths.values()))
        return nodes

    def modelled_seconds(self, nodes: list[int]) -> float:
        """Every node above the last level is one kernel evaluation of its layer."""
        return sum(count * self.cost[self.layers[len(self.layers) - 1 - level]]
                   for level, count in enumerate(nodes[:-1]))

    def run_depth_2(self, cls: int, threshold: float) -> float:
        """The paper's recursion to depth 2, run: the class's kernel, then every kernel it
        selects, each through :func:`paper_kernel` on the layer's real input."""
        last, before = self.layers[-1], self.layers[-2]
        start = time.process_time()
        for channel in paper_kernel(last.weight.detach(), self.raw[last], cls, threshold):
            paper_kernel(before.weight.detach(), self.raw[before], channel, threshold)
        return time.process_time() - start


def _medians(calls: dict, rounds: int, device: torch.device) -> dict[str, float]:
    """Median milliseconds of each call, the calls interleaved round by round."""
    times: dict[str, list[float]] = {key: [] for key in calls}
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(rounds):
        for key, fn in calls.items():
            times[key].append(milliseconds(fn, device))
    return {key: statistics.median(v) for key, v in times.items()}


def _seconds(value: float) -> str:
    if value < 1e5:
        return f"{value:.3g} s"
    return f"{value:.2e} s ({value / 3.15e7:.1e} years)" if value > 3.15e7 else f"{value:.2e} s"


def measure(name: str, args: argparse.Namespace, device: torch.device) -> tuple[str, str]:
    """The two rows of one network: fxcfp's times, and the paper's against them."""
    factory, theta = PAPER_NETWORKS[name]
    torch.manual_seed(0)
    model = factory().eval().to(device)
    clip = torch.randn(1, 3, args.frames, args.size, args.size, device=device,
                       generator=torch.Generator(device=device).manual_seed(1))
    analyzer = fxcfp.Analyzer(model)
    pyramid = analyzer.analyze(clip, threshold=theta)
    plan, tensors, layer_pooled, roots = backstep_inputs(analyzer, clip, device)

    def forward():
        with torch.no_grad():
            model(clip)

    calls = {"forward": forward}
    for depth in DEPTHS:
        calls[f"step{depth}"] = (lambda d: lambda: backstep(
            tensors, layer_pooled, roots, plan.total_ids, threshold=theta, max_depth=d,
            top_k=None))(depth)
        calls[f"analyze{depth}"] = (lambda d: lambda: analyzer.analyze(
            clip, pyramid.target, threshold=theta, max_depth=d))(depth)
    ms = _medians(calls, args.rounds, device)

    chain = _Chain(model.cpu(), clip.cpu(), theta, args.samples)
    nodes = {d: chain.nodes_per_level(pyramid.target, theta, d) for d in DEPTHS}
    paper_s = {d: chain.modelled_seconds(nodes[d]) for d in DEPTHS}
    run2 = chain.run_depth_2(pyramid.target, theta)
    model.to(device)
    kernels = {d: sum(len(level.kernels) for level in analyzer.analyze(
        clip, pyramid.target, threshold=theta, max_depth=d).layers) for d in DEPTHS}
    forward_ms = ms["forward"]
    ours = (f"| {name} | {theta} | {gflops(factory, args.frames, 224):.1f} / "
            f"{PAPER_GFLOPS[name]} | {forward_ms:.1f} ms | "
            + " | ".join(f"{ms[f'step{d}']:.2f} ms / {ms[f'analyze{d}'] / forward_ms:.3f}x"
                         for d in DEPTHS)
            + f" | {100 * ms['stepNone'] / forward_ms:.2f}% | "
            + " / ".join(str(kernels[d]) for d in DEPTHS) + f" | {PAPER_BACKSTEP_MS[name]} ms |")
    theirs = (f"| {name} | {1e3 * statistics.mean(chain.cost.values()):.2f} ms "
              f"| {run2:.2f} s / {paper_s[2]:.2f} s | "
              + " | ".join(f"{_seconds(paper_s[d])} ({sum(nodes[d][:-1]):.3g} kernel "
                           f"evaluations) | {paper_s[d] / (ms[f'step{d}'] / 1e3):.3g}x"
                           for d in DEPTHS) + " |")
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=224 if device.type == "cuda" else 112)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5 if device.type == "cpu" else 20)
    parser.add_argument("--samples", type=int, default=3,
                        help="kernels per layer timed through the paper's per-kernel code")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--networks", nargs="*", default=list(PAPER_NETWORKS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    ours_header = ("| network | θ | GFLOPs (224, ours / paper) | forward | back-step / analyze "
                   "÷ forward, d=2 | d=3 | full | full back-step / forward "
                   "| kernels d=2 / 3 / full | paper's reported back-step (3 layers, GPU) |")
    theirs_header = ("| network | paper's per-kernel cost (mean over layers) | its depth 2: run "
                     "/ modelled | its depth 2 (modelled) | fxcfp faster | depth 3 | fxcfp "
                     "faster | full depth | fxcfp faster |")
    ours, theirs = [ours_header, "|" + "---|" * (ours_header.count("|") - 1)], [
        theirs_header, "|" + "---|" * (theirs_header.count("|") - 1)]
    for name in args.networks:
        a, b = measure(name, args, device)
        ours.append(a)
        theirs.append(b)
        print(a, b, sep="\n", flush=True)
    text = (f"## Table 1: the paper's six networks at {args.frames}x{args.size}x{args.size}\n\n"
            f"Machine: {machine()}; torch on {args.threads} thread(s). GFLOPs at 16x224x224 (2 per "
            "multiply-add, as the paper's); the paper's reported back-step times are its own (2x "
            "GTX 1080 Ti, 3 layers). fxcfp: medians of "
            f"{args.rounds} interleaved rounds of CPU time.\n\n" + "\n".join(ours) + "\n\n"
            "The paper's published back-step on the same machine and clip: its per-kernel code "
            f"timed on {args.samples} kernels of every layer (CPU time), its tree's nodes counted "
            "exactly, the time modelled as nodes x per-kernel cost; at depth 2 also run.\n\n"
            + "\n".join(theirs) + "\n")
    print()
    print(text)
    _write_section(RESULTS, "## Table 1:", text)


if __name__ == "__main__":
    main()
