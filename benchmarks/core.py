"""Core benchmark: what an explanation costs next to the forward pass it explains.

For each network, in one process and on one device, ``--rounds`` rounds (default 7) that each
time, one after another: the plain no-grad forward, ``analyze`` at full depth (steady state,
graph lazy), the capture alone (the forward that also pools every layer's input), the
back-step alone at full depth and at ``max_depth=3``, the edge count of a fresh pyramid, and the
back-step that also counts the edges of the kernels its early exit skipped (``count=True``).
Every figure is the median over the rounds of CPU time (``time.process_time``; torch on
``--threads`` threads, 1 by default), so each ratio compares calls made side by side and
survives a machine whose load drifts. The first call (tracing, channel maps) is timed once,
before the rounds, after one forward (so torch's lazy imports are not charged to it).

Peak memory: on CUDA from torch's allocator (``torch.cuda.max_memory_allocated``). torch keeps no
allocator statistics for the CPU (and ``tracemalloc`` does not see its allocations), so on the
CPU it is the growth of the process's resident high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) over one warm call (the third: the second writes the capture's code,
which the plan keeps, and its peak is shown apart), each measurement in a fresh process whose malloc
maps every block of 64 KiB or more on its own (``MALLOC_MMAP_THRESHOLD_``), so that freed tensors
leave the resident set and the mark follows the live tensors; for one clip and for
``analyze_batch`` of 8. The resident cache of pooled weights (what an Analyzer keeps per
device: pooled weights, channel maps and counts) is reported from its tensors' sizes.

Run: ``python benchmarks/core.py [--models r3d_18 ...] [--size 112] [--frames 16]``; it prints
one markdown table and writes it into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

# this checkout's fxcfp, not whichever one the environment installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("r3d_18", "r2plus1d_18", "s3d", "resnet3d_50", "resnet3d_152", "resnext3d_101")
# torchvision's S3D ends in a fixed 2x7x7 average pool: it needs at least 13x209x209
MIN_SIZE = {"s3d": 224}
RESULTS = Path(__file__).with_name("RESULTS.md")
BATCH = 8


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith(("resnet3d_", "resnext3d_")):
        from fxcfp.zoo.paper import PAPER_NETWORKS

        return PAPER_NETWORKS[name][0]().eval()
    import torchvision

    return getattr(torchvision.models.video, name)().eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def _reset_peak(device: torch.device) -> float:
    """Start a new peak-memory window; returns the memory in use now (MiB)."""
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: reset the resident high-water mark (VmHWM)
    return _status_mb("VmRSS")


def _peak(device: torch.device, base: float) -> float:
    _sync(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 - base
    return _status_mb("VmHWM") - base


def _cache_mib(analyzer) -> float:
    """Bytes of the tensors an Analyzer keeps for the back-step (pooled weights and maps)."""
    total = 0
    for _, tensors in analyzer._tensors.values():
        for layer in tensors:
            for value in (layer.weight, layer.group_of_kernel, layer.sources, layer.members):
                if value is not None:
                    total += value.numel() * value.element_size()
    return total / 2**20


def _clip(name: str, frames: int, size: int, batch: int, device: torch.device) -> torch.Tensor:
    size = max(size, MIN_SIZE.get(name, 0))
    return torch.randn(batch, 3, frames, size, size, device=device,
                       generator=torch.Generator(device=device).manual_seed(1))


def worker(name: str, mode: str, frames: int, size: int, rounds: int) -> dict:
    """One measurement in this (fresh) process."""
    import fxcfp
    from fxcfp import _fused
    from fxcfp._backstep import backstep

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(name).to(device)
    batch = BATCH if mode.endswith("batch") else 1
    clips = _clip(name, frames, size, batch, device)
    result: dict = {"size": clips.shape[-1]}

    def forward():
        with torch.no_grad():
            model(clips)

    analyzer = fxcfp.Analyzer(model)

    def analyze():
        if batch == 1:
            return analyzer.analyze(clips[0], threshold=0.6)
        return analyzer.analyze_batch(clips, threshold=0.6)

    if mode.startswith("peak"):
        forward()  # warm: the first forward's one-time allocations are nobody's peak
        base = _reset_peak(device)
        forward()
        result["forward_mb"] = _peak(device, base)
        analyze()
        # the second call writes the capture's code (the first took the channel-label pass's
        # values): kept for the plan's lifetime, like the pooled weights the first call made,
        # so it is measured apart and the warm call is the third
        base = _reset_peak(device)
        analyze()
        result["second_mb"] = _peak(device, base)
        base = _reset_peak(device)
        analyze()
        result["analyze_mb"] = _peak(device, base)
        result["cache_mb"] = _cache_mib(analyzer)
        return result
    forward()
    _sync(device)
    start = time.process_time()
    pyramid = analyze()
    _sync(device)
    result["first_seconds"] = time.process_time() - start
    _fused.wait()  # the timed rounds take the C++ back-step, not the build's race with them
    plan = next(iter(analyzer._plans.values()))
    with torch.no_grad():
        logits, pooled = plan.capture(clips)
    layer_pooled = [pooled[i] for i in plan.pooled_index]
    tensors = analyzer._layer_tensors(plan, logits.device, layer_pooled[0].dtype)
    roots = plan.output_sources.to(device)[logits.argmax(1)]
    roots = torch.where(roots < 0, plan.total_ids, roots)

    def capture():
        with torch.no_grad():
            plan.capture(clips)

    def step(depth, count=False):
        return lambda: backstep(tensors, layer_pooled, roots, plan.total_ids, threshold=0.6,
                                max_depth=depth, top_k=None, count=count)

    def count():
        return dataclasses.replace(pyramid).num_edges  # a fresh pyramid: nothing cached

    calls = {"forward": forward, "analyze": analyze, "capture": capture,
             "backstep": step(None), "backstep3": step(3), "count": count,
             "backstep_counted": step(None, count=True)}
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):  # interleaved: every ratio compares neighbours in time
        for key, fn in calls.items():
            _sync(device)
            start = time.process_time()
            fn()
            _sync(device)
            times[key].append(time.process_time() - start)
    result.update({f"{key}_seconds": statistics.median(v) for key, v in times.items()})
    result["edges"], result["nodes"] = pyramid.num_edges, pyramid.num_kernels
    result["layers"] = len(plan.layers)
    result["cache_mb"] = _cache_mib(analyzer)
    result["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return result


def _spawn(name: str, mode: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if mode.startswith("peak"):
        # every allocation of 64 KiB or more its own mapping, unmapped when freed: the resident
        # set then follows the live tensors, and its high-water mark is their peak
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, mode, "--frames", str(args.frames),
         "--size", str(args.size), "--rounds", str(args.rounds), "--threads", str(args.threads)],
        check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def milliseconds(fn: Any, device: torch.device) -> float:
    """One call of ``fn`` in milliseconds: CUDA events on a GPU (the device's own clock, waited
    for), CPU time of the process elsewhere (steadier than wall time on a shared machine)."""
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    begin = time.process_time()
    fn()
    return (time.process_time() - begin) * 1e3


def backstep_inputs(analyzer: Any, clips: torch.Tensor, device: torch.device
                    ) -> tuple[Any, list[Any], list[torch.Tensor], torch.Tensor]:
    """What :func:`fxcfp._backstep.backstep` is called with for ``clips`` of an analyzer that
    has analysed them once: ``(plan, layer tensors, pooled inputs, roots of the top class)``,
    so a benchmark can time the back-step alone."""
    plan = next(iter(analyzer._plans.values()))
    with torch.no_grad():
        logits, pooled = plan.capture(clips)
    layer_pooled = [pooled[i] for i in plan.pooled_index]
    tensors = analyzer._layer_tensors(plan, device, layer_pooled[0].dtype)
    roots = plan.output_sources.to(device)[logits.argmax(1)]
    return plan, tensors, layer_pooled, torch.where(roots < 0, plan.total_ids, roots)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({cpu})"
    # the load says how far a figure of this shared machine can be trusted (ratios survive it)
    load = (f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    return (f"{device}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}{load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "MODE"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.frames, args.size, args.rounds)))
        return
    header = ("| network | clip | layers | forward | analyze | analyze / forward | first call "
              "| first / forward | capture / forward | back-step | back-step / forward "
              "| back-step d=3 / full | edge count / forward | back-step counting every edge / forward "
              "| nodes / edges "
              "| peak forward / analyze (1 clip) | ratio | peak forward / analyze_batch (8) "
              "| ratio | pooled-weight cache |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in args.models:
        t = _spawn(name, "time", args)
        f = t["forward_seconds"]
        cells = [
            name, f"{args.frames}x{t['size']}x{t['size']}", str(t["layers"]),
            f"{f * 1e3:.0f} ms", f"{t['analyze_seconds'] * 1e3:.0f} ms",
            f"{t['analyze_seconds'] / f:.3f}x", f"{t['first_seconds']:.2f} s",
            f"{t['first_seconds'] / f:.2f}x", f"{t['capture_seconds'] / f:.3f}x",
            f"{t['backstep_seconds'] * 1e3:.2f} ms", f"{100 * t['backstep_seconds'] / f:.2f}%",
            f"{t['backstep3_seconds'] / t['backstep_seconds']:.2f}",
            f"{100 * t['count_seconds'] / f:.2f}%",
            f"{100 * t['backstep_counted_seconds'] / f:.2f}%", f"{t['nodes']} / {t['edges']}",
        ]
        for mode in ("peak", "peak-batch"):
            if args.no_memory:
                cells += ["skipped", ""]
                continue
            m = _spawn(name, mode, args)
            cells += [f"{m['forward_mb']:.0f} / {m['analyze_mb']:.0f} MiB (second call "
                      f"{m['second_mb']:.0f})",
                      f"{m['analyze_mb'] / max(m['forward_mb'], 1e-9):.2f}x"]
        cells.append(f"{t['cache_mb']:.1f} MiB")
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    title = (f"## Core: {', '.join(args.models)} at {args.frames}x{args.size}x{args.size} "
             "(s3d: its smallest, 224), threshold 0.6, full depth")
    memory = ("torch.cuda.max_memory_allocated" if torch.cuda.is_available() else
              "growth of the resident high-water mark over one warm call (the third: the "
              "second writes the capture's code, its peak in brackets), fresh process, "
              "blocks >= 64 KiB mapped on their own (torch keeps no CPU allocator statistics)")
    text = (f"{title}\n\nMachine: {machine()}; torch on {args.threads} thread(s). Times: "
            f"medians of {args.rounds} interleaved rounds of CPU time. Peak memory: {memory}.\n\n"
            f"{table}\n")
    print()
    print(text)
    _write_section(RESULTS, "## Core:", text)


def _write_section(path: Path, marker: str, text: str) -> None:
    """Replace the section starting with ``marker`` (up to the next ``## ``) or append it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    start = old.find(marker)
    if start < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + ("" if end < 0 else old[end:])
    path.write_text(new)


if __name__ == "__main__":
    main()
