"""GPU benchmark: forward, analyze and the back-step of 3D ResNet-152 and r3d_18 on one device.

For each network, clip size (16x112², 16x224²) and batch (1 clip, ``analyze_batch`` of 8 and 32),
after warm-up, medians of ``--repeats`` calls timed with CUDA events (on the CPU: process time,
one thread per torch's settings):

- the plain no-grad forward, ``analyze`` / ``analyze_batch`` (default threshold 0.6, full depth,
  graph lazy), and the back-step alone on the captured inputs;
- peak memory of the forward and of the analysis (``torch.cuda.max_memory_allocated``);
- that the back-step never synchronises with the host: it runs under
  ``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronising call;
- the back-step captured in a CUDA graph (its shapes are static by design) and replayed; the
  replay must give the eager depths exactly, and its time is reported.

On the CPU (``--device cpu``) the sync check and the CUDA graph are skipped with a note; there the
back-step reads the host on purpose (its early exit), so the sync-free form GPUs use is timed too.

Run: ``python benchmarks/gpu.py`` (CUDA when available), ``python benchmarks/gpu.py --device cpu
--quick`` for a small check; it prints one table and writes it into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

# this checkout's fxcfp, not whichever one the environment installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fxcfp  # noqa: E402
from fxcfp._backstep import backstep

try:  # run as a script (python benchmarks/gpu.py) or as a module
    from core import RESULTS, _write_section, backstep_inputs, machine, milliseconds
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, backstep_inputs, machine, milliseconds

NETWORKS = ("resnet3d_152", "r3d_18")
SIZES = (112, 224)
BATCHES = (1, 8, 32)
THRESHOLD = 0.6


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "resnet3d_152":
        from fxcfp.zoo.paper import resnet3d_152

        return resnet3d_152().eval()
    import torchvision

    return getattr(torchvision.models.video, name)().eval()


class Clock:
    """Median milliseconds of ``fn`` over ``repeats`` calls after ``warmup`` calls."""

    def __init__(self, device: torch.device, repeats: int, warmup: int) -> None:
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        times = [milliseconds(fn, self.device) for _ in range(self.repeats)]
        return statistics.median(times)


def _peak_mib(device: torch.device, fn: Callable[[], object]) -> float | None:
    if device.type != "cuda":
        return None  # see benchmarks/core.py for the CPU's allocator figures
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def measure(name: str, model: torch.nn.Module, frames: int, size: int, batch: int,
            device: torch.device, clock: Clock, notes: list[str]) -> str:
    clips = torch.randn(batch, 3, frames, size, size, device=device,
                        generator=torch.Generator(device=device).manual_seed(1))
    analyzer = fxcfp.Analyzer(model)

    def forward() -> None:
        with torch.no_grad():
            model(clips)

    def analyze() -> object:
        return (analyzer.analyze(clips[0], threshold=THRESHOLD) if batch == 1
                else analyzer.analyze_batch(clips, threshold=THRESHOLD))

    analyze()  # the plan, traced and mapped once
    plan, tensors, layer_pooled, roots = backstep_inputs(analyzer, clips, device)

    def step(sync: bool | None = None) -> Callable[[], torch.Tensor]:
        return lambda: backstep(tensors, layer_pooled, roots, plan.total_ids,
                                threshold=THRESHOLD, max_depth=None, top_k=None,
                                sync=sync).depth

    forward_ms = clock(forward)
    analyze_ms = clock(analyze)
    step_ms = clock(step())
    dense_ms = clock(step(sync=False))
    peak_forward, peak_analyze = _peak_mib(device, forward), _peak_mib(device, analyze)
    sync_check = graph_cell = "skipped (CPU)"
    if device.type == "cuda":
        step()()
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
        try:
            eager = step()()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        sync_check = "none"
        graph_cell = cuda_graph(step(), eager, clock, device)
    elif not notes:
        notes.append("On the CPU the sync check and the CUDA graph are skipped: "
                     "torch.cuda.set_sync_debug_mode and CUDA graphs need a GPU.")
    peaks = ("n/a (CPU)" if peak_forward is None
             else f"{peak_forward:.0f} / {peak_analyze:.0f} MiB "
                  f"({peak_analyze / max(peak_forward, 1e-9):.2f}x)")
    return (f"| {name} | {batch} x {frames}x{size}x{size} | {forward_ms:.2f} ms "
            f"| {analyze_ms:.2f} ms | {analyze_ms / forward_ms:.3f}x | {step_ms:.3f} ms "
            f"| {100 * step_ms / forward_ms:.2f}% | {dense_ms:.3f} ms | {graph_cell} "
            f"| {sync_check} | {peaks} |")


def cuda_graph(fn: Callable[[], torch.Tensor], eager: torch.Tensor, clock: Clock,
               device: torch.device) -> str:
    """Capture the back-step once, replay it, check it against the eager depths, time it."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
        fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fn()
    graph.replay()
    torch.cuda.synchronize(device)
    if not torch.equal(captured, eager):
        raise AssertionError("the CUDA graph replay gave other depths than the eager back-step")
    return f"{clock(graph.replay):.3f} ms"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS))
    parser.add_argument("--sizes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--batches", nargs="*", type=int, default=list(BATCHES))
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="a small check: 16x32x32 clips, batches 1 and 2, 2 repeats")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeats, args.warmup = [32], [1, 2], 2, 1
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    clock = Clock(device, args.repeats, args.warmup)
    header = ("| network | clips | forward | analyze | analyze / forward | back-step "
              "| back-step / forward | back-step, sync-free form | CUDA graph replay "
              "| host syncs in the back-step | peak memory forward / analyze |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    notes: list[str] = []
    for name in args.networks:
        model = build(name).to(device)
        for size in args.sizes:
            for batch in args.batches:
                rows.append(measure(name, model, args.frames, size, batch, device, clock,
                                    notes))
                print(rows[-1], flush=True)
        del model
    named = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    text = (f"## GPU: forward, analyze and back-step on {named}\n\n"
            f"Machine: {machine()}; device {device}. Medians of {args.repeats} calls after "
            f"{args.warmup} warm-up calls ({'CUDA events' if device.type == 'cuda' else 'process time'})"
            f"; threshold {THRESHOLD}, full depth.\n\n" + "\n".join(rows) + "\n"
            + "".join(f"\n{note}\n" for note in notes))
    print()
    print(text)
    _write_section(args.results, "## GPU:", text)


if __name__ == "__main__":
    main()
