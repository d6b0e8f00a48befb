"""The paper's Table 1, reproduced: the six networks, their GFLOPs, forward and back-step times.

For each network at the paper's threshold: GFLOPs at 16x224x224 (``torch.utils.flop_counter`` on
the meta device, so counting costs nothing), the forward time, fxcfp's back-step at depth 3 and at
full depth, the kernels selected, the paper's reported back-step (3 layers, 2x GTX 1080 Ti) and
the paper-literal tree recursion at depth 3 measured in the same run. On CUDA, times come from
CUDA events after warm-up; on the CPU from ``time.perf_counter``.

Run: ``python benchmarks/table1.py [--size 224] [--frames 16]``. On a CPU, 16x112x112 is the
default (a 3D ResNet-152 forward at 224 takes minutes on two cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import fxcfp
from fxcfp._backstep import backstep
from fxcfp.zoo.paper import PAPER_BACKSTEP_MS, PAPER_GFLOPS, PAPER_NETWORKS
from fxcfp.zoo.paper_literal import DNF, paper_literal_backstep

try:  # run as a script (python benchmarks/table1.py) or as a module
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine


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


class Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self, fn, repeats: int) -> float:
        """Median milliseconds after a warm-up call."""
        fn()
        times = []
        for _ in range(repeats):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                begin = time.perf_counter()
                fn()
                times.append((time.perf_counter() - begin) * 1e3)
        return statistics.median(times)


def measure(name: str, args: argparse.Namespace, device: torch.device, timer: Timer) -> str:
    """One row of the table."""
    factory, theta = PAPER_NETWORKS[name]
    torch.manual_seed(0)
    model = factory().eval().to(device)
    clip = torch.randn(1, 3, args.frames, args.size, args.size, device=device)
    analyzer = fxcfp.Analyzer(model)
    pyramid = analyzer.analyze(clip, threshold=theta)
    shallow = analyzer.analyze(clip, pyramid.target, threshold=theta, max_depth=3)
    plan = next(iter(analyzer._plans.values()))

    def forward():
        with torch.no_grad():
            model(clip)

    with torch.no_grad():
        logits, pooled = plan.capture(clip)
    layer_pooled = [pooled[i] for i in plan.pooled_index]
    tensors = analyzer._layer_tensors(plan, device, layer_pooled[0].dtype)
    roots = plan.output_sources.to(device)[logits.argmax(1)].clamp(min=0)

    def step(depth):
        return lambda: backstep(tensors, layer_pooled, roots, plan.total_ids,
                                threshold=theta, max_depth=depth, top_k=None)

    forward_ms = timer(forward, args.repeats)
    depth3_ms = timer(step(3), max(args.repeats, 5))
    full_ms = timer(step(None), max(args.repeats, 5))
    kernels3 = sum(len(level.kernels) for level in shallow.layers)
    kernels = sum(len(level.kernels) for level in pyramid.layers)
    try:
        begin = time.perf_counter()
        _, nodes = paper_literal_backstep(model.cpu(), clip.cpu(), pyramid.target, theta, 3,
                                          timeout_s=args.timeout)
        literal = f"{(time.perf_counter() - begin) * 1e3:.0f} ms ({nodes} nodes)"
    except DNF:
        literal = f"DNF (> {args.timeout:.0f} s)"
    return (f"| {name} | {theta} | {gflops(factory, args.frames, 224):.1f} / {PAPER_GFLOPS[name]} "
            f"| {forward_ms:.1f} ms | {depth3_ms:.2f} ms | {full_ms:.2f} ms "
            f"| {100 * full_ms / forward_ms:.2f}% | {kernels3} | {kernels} "
            f"| {PAPER_BACKSTEP_MS[name]} ms | {literal} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=224 if device.type == "cuda" else 112)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3 if device.type == "cpu" else 20)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--networks", nargs="*", default=list(PAPER_NETWORKS))
    args = parser.parse_args()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    timer = Timer(device)
    header = ("| network | θ | GFLOPs (224, ours / paper) | forward | back-step d=3 | back-step "
              "full | full / forward | kernels d=3 | kernels full | paper back-step (3 layers) "
              "| paper-literal d=3 |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in args.networks:
        rows.append(measure(name, args, device, timer))
        print(rows[-1], flush=True)
    text = (f"## Table 1: the paper's six networks at {args.frames}x{args.size}x{args.size}\n\n"
            f"Machine: {machine()}. GFLOPs at 16x224x224 (2 per multiply-add, as the paper's); the "
            "paper's back-step times are its own (2x GTX 1080 Ti, 3 layers).\n\n"
            + "\n".join(rows) + "\n")
    print()
    print(text)
    _write_section(RESULTS, "## Table 1:", text)


if __name__ == "__main__":
    main()
