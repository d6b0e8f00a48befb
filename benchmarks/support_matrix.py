"""Support matrix: every architecture of ``tests/test_support_matrix.py``, timed at a real clip size.

For each model (random weights; the clip is 16x112x112 for video CNNs, 224x224 for image CNNs, or
the smallest the model accepts where that is larger: S3D 16x224², the X3D heads their own
crops; SlowFast's slow pathway 4 frames beside 16): its weighted layers, the kernels and layers
of its full-depth pyramid at the default threshold 0.6, and what an explanation costs next to
the forward pass it explains. Each model runs in a fresh process (so the first call pays what a
user's first call pays: lazy imports, tracing, the channel-map pass), on ``--threads`` torch
threads (1 by default): the first ``analyze`` call is timed once after one forward (and the
full collections Python's cyclic collector ran inside it, apart: their cost is the whole heap's),
the second once (its capture writes its code), then ``--rounds`` rounds (default 7, as the
issue measures) each time the plain no-grad forward, ``analyze`` in steady state (graph lazy)
and the back-step alone, one after another; every figure is the median over the rounds of the
process's CPU time, so each ratio compares calls made side by side.

The kernels and layers are counted from the pyramid's depth per kernel, which decides the
nodes of ``Pyramid.graph``, without building the graph: at full depth a deep ResNet's graph
holds tens of millions of edges.

Run from the repository root: ``python benchmarks/support_matrix.py [--models r3d_18 ...]
[--rounds 7] [--no-write]``. It prints one markdown table and writes it into
``benchmarks/RESULTS.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the matrix is defined once, beside its test

import fxcfp  # noqa: E402
from fxcfp import _fused  # noqa: E402
from fxcfp._backstep import UNREACHED, backstep  # noqa: E402
from tests.test_support_matrix import MATRIX, Case  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
THRESHOLD = 0.6
MARKER = "## Support matrix"
VIDEO = (16, 112, 112)
IMAGE = (224, 224)
# where the model needs more than the common clip: S3D's fixed 2x7x7 average pool, the X3D
# heads sized for their own crops (4 and 13 frames at 160²), SlowFast's two pathways (alpha 4)
CLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "s3d": ((1, 3, 16, 224, 224),),
    "x3d_xs": ((1, 3, 4, 160, 160),),
    "x3d_s": ((1, 3, 13, 160, 160),),
    "slowfast_r50": ((1, 3, 4, 112, 112), (1, 3, 16, 112, 112)),
}


def bench_clips(case: Case) -> tuple[tuple[int, ...], ...]:
    """The clip shapes a model is timed at (see the module docstring)."""
    if case.name in CLIPS:
        return CLIPS[case.name]
    return tuple((1, 3, *(IMAGE if len(shape) == 4 else VIDEO)) for shape in case.clips)


def _shape(shapes: tuple[tuple[int, ...], ...]) -> str:
    return " + ".join("x".join(str(d) for d in shape[1:]) for shape in shapes)


def _seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def _collected(fn) -> tuple[float, float]:
    """The CPU time of ``fn``, and of the full collections (generation 2) Python's cyclic
    collector ran inside it: their cost grows with the whole process's heap (torch's and the
    model library's objects), and they fall in whichever call crosses the collector's
    threshold."""
    spent = [0.0, 0.0]

    def watch(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                spent[1] = time.process_time()
            else:
                spent[0] += time.process_time() - spent[1]

    gc.callbacks.append(watch)
    try:
        return _seconds(fn), spent[0]
    finally:
        gc.callbacks.remove(watch)


def measure(case: Case, rounds: int) -> dict[str, object]:
    """One model, in this process: first call, then interleaved rounds."""
    model, _ = case.make()
    model.eval()
    generator = torch.Generator().manual_seed(1)
    clips = [torch.randn(shape, generator=generator) for shape in bench_clips(case)]
    clip = clips if len(clips) > 1 else clips[0]
    single = [x[0] for x in clips] if len(clips) > 1 else clips[0][0]

    def forward() -> None:
        with torch.no_grad():
            # a fresh list each call: SlowFast's blocks write into the list they are given
            model(list(clip) if isinstance(clip, list) else clip)

    forward()  # torch's lazy initialisation is nobody's first call
    analyzer = fxcfp.Analyzer(model)
    first, collections = _collected(lambda: analyzer.analyze(single, threshold=THRESHOLD))
    # the timed rounds take the C++ back-step: built (or loaded from its cache) before them,
    # not by whichever round the background build happens to finish in
    _fused.wait()
    # the second call runs the capture for the first time (the first took the channel-map
    # pass's values), so it writes the capture's code
    second = _seconds(lambda: analyzer.analyze(single, threshold=THRESHOLD))
    pyramid = analyzer.analyze(single, threshold=THRESHOLD)
    plan = pyramid._plan
    with torch.no_grad():
        logits, pooled = plan.capture(*[x.clone() for x in clips])
    layer_pooled = [pooled[i] for i in plan.pooled_index]
    tensors = analyzer._layer_tensors(plan, logits.device, layer_pooled[0].dtype)
    roots = plan.output_sources[logits.argmax(1)]
    roots = torch.where(roots < 0, plan.total_ids, roots)

    def step() -> None:
        backstep(tensors, layer_pooled, roots, plan.total_ids, threshold=THRESHOLD,
                 max_depth=None, top_k=None)

    calls = {"forward": forward,
             "analyze": lambda: analyzer.analyze(single, threshold=THRESHOLD), "backstep": step}
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):  # interleaved: every ratio compares neighbours in time
        for key, fn in calls.items():
            times[key].append(_seconds(fn))
    depth = pyramid._depth
    kernels = total = layers = 0
    for layer in plan.layers:
        selected = int((depth[layer.first_id: layer.first_id + layer.out_channels]
                        < UNREACHED).sum())
        kernels += selected
        total += layer.out_channels
        layers += selected > 0
    return {"trace": plan.traced.method, "weighted": len(plan.layers), "kernels": kernels,
            "total": total, "layers": layers, "first": first, "collections": collections,
            "second": second,
            **{key: statistics.median(v) for key, v in times.items()}}


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"CPU ({cpu}), {os.cpu_count()} cores, {threads} torch thread(s), "
            f"torch {torch.__version__}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}, load average {load:.1f} at the end")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _spawn(name: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--rounds", str(args.rounds),
         "--threads", str(args.threads)],
        check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="names from the matrix (default: all)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        case = next(c for c in MATRIX if c.name == args.worker)
        print(json.dumps(measure(case, args.rounds)))
        return
    cases = [c for c in MATRIX if not args.models or c.name in args.models]
    unknown = set(args.models or ()) - {c.name for c in cases}
    if unknown:
        parser.error(f"not in the matrix: {sorted(unknown)}")

    header = ("| model | family | clip (C x T x H x W, images C x H x W) | trace | weighted layers "
              f"| kernels at {THRESHOLD} (of all) | layers at {THRESHOLD} | forward "
              "| analyze / forward | back-step / forward | first call | first / forward "
              "| full GC in the first | second / forward |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for case in cases:
        m = _spawn(case.name, args)
        f = m["forward"]
        rows.append(
            f"| {case.name} | {case.family} | {_shape(bench_clips(case))} | {m['trace']} "
            f"| {m['weighted']} | {m['kernels']} ({m['total']}) | {m['layers']} | {_ms(f)} "
            f"| {m['analyze'] / f:.3f}x | {100 * m['backstep'] / f:.2f}% | {_ms(m['first'])} "
            f"| {m['first'] / f:.2f}x | {_ms(m['collections'])} | {m['second'] / f:.2f}x |")
        print(rows[-1], file=sys.stderr, flush=True)  # progress; the table goes to stdout
    if args.models and not args.no_write:
        rows = _merged_rows(RESULTS, rows, [c.name for c in MATRIX])
    text = (f"{MARKER}: fxcfp.analyze at full depth, threshold {THRESHOLD}, random weights, "
            f"16x112x112 clips (images 224x224)\n\nMachine: {machine(args.threads)}. Each model "
            f"in a fresh process; times are medians of {args.rounds} interleaved rounds of CPU "
            "time (forward, analyze, back-step); the first call once, after one forward, with the CPU "
            "time of the full collections Python's cyclic collector ran inside it; the second "
            "call once, after the C++ back-step is loaded (it writes the capture's code).\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    if not args.no_write:
        _replace_section(RESULTS, MARKER, text)


def _merged_rows(path: Path, rows: list[str], order: list[str]) -> list[str]:
    """A run of some models updates their rows of the table already written (same columns),
    in the matrix's order, keeping the others'."""
    old = path.read_text() if path.exists() else ""
    start = old.find(MARKER)
    if start < 0:
        return rows
    end = old.find("\n## ", start + len(MARKER))
    section = old[start: None if end < 0 else end].splitlines()
    table = [line for line in section if line.startswith("| ")]
    if not table or table[0] != rows[0]:
        return rows  # another layout: start afresh
    by_name = {line.split("|")[1].strip(): line for line in table[1:] if not line.startswith("|---")}
    by_name.update({line.split("|")[1].strip(): line for line in rows[2:]})
    return rows[:2] + [by_name[name] for name in order if name in by_name]


def _replace_section(path: Path, marker: str, text: str) -> None:
    """Put ``text`` in place of the section that starts with ``marker``, or append it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(marker)
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(marker))
    path.write_text(old[:start] + text + ("" if end < 0 else old[end:]))


if __name__ == "__main__":
    main()
