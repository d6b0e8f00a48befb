"""Support matrix: every architecture of ``tests/test_support_matrix.py``, analysed once.

For each model (random weights, the smallest clip it accepts, as in the test): its weighted
layers, the kernels and layers of its full-depth pyramid at the default threshold 0.6, and what
one explanation costs next to the forward pass it explains, both timed in the same run: the
plain no-grad forward, and ``Analyzer.analyze`` in steady state (the model already traced and
its channels mapped by a first call, which is timed too).

The kernels and layers are counted from the pyramid's depth per kernel, which decides the
nodes of ``Pyramid.graph``, without building the graph: at full depth a deep ResNet's graph
holds tens of millions of edges.

Run from the repository root: ``python benchmarks/support_matrix.py [--models r3d_18 ...]
[--repeats 3] [--no-write]``. It prints one markdown table and writes it into
``benchmarks/RESULTS.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the matrix is defined once, beside its test

import fxcfp  # noqa: E402
from fxcfp._backstep import UNREACHED  # noqa: E402
from tests.test_support_matrix import MATRIX, Case  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
THRESHOLD = 0.6
MARKER = "## Support matrix"


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median of ``repeats`` timed calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _shape(case: Case) -> str:
    return " + ".join("x".join(str(d) for d in shape[1:]) for shape in case.clips)


def measure(case: Case, repeats: int) -> dict[str, object]:
    model, clip = case.make()
    model.eval()

    def forward() -> None:
        with torch.no_grad():
            # a fresh list each call: SlowFast's blocks write into the list they are given
            model(list(clip) if isinstance(clip, list) else clip)

    forward_s = _median_seconds(forward, repeats)
    analyzer = fxcfp.Analyzer(model)
    start = time.perf_counter()
    pyramid = analyzer.analyze(clip, threshold=THRESHOLD)
    first_s = time.perf_counter() - start
    analyze_s = _median_seconds(lambda: analyzer.analyze(clip, threshold=THRESHOLD), repeats)

    plan, depth = pyramid._plan, pyramid._depth
    kernels = total = layers = 0
    for layer in plan.layers:
        selected = int((depth[layer.first_id: layer.first_id + layer.out_channels]
                        < UNREACHED).sum())
        kernels += selected
        total += layer.out_channels
        layers += selected > 0
    return {
        "trace": plan.traced.method, "weighted": len(plan.layers), "kernels": kernels,
        "total": total, "layers": layers, "forward": forward_s, "analyze": analyze_s,
        "first": first_s,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({cpu})"
    return (f"{device}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; the model and the analysis on the CPU")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="names from the matrix (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    cases = [c for c in MATRIX if not args.models or c.name in args.models]
    unknown = set(args.models or ()) - {c.name for c in cases}
    if unknown:
        parser.error(f"not in the matrix: {sorted(unknown)}")

    header = ("| model | family | clip (C x T x H x W, images C x H x W) | trace | weighted layers "
              f"| kernels at {THRESHOLD} (of all) | layers at {THRESHOLD} | forward "
              "| analyze (steady) | analyze / forward | analyze (first call) |")
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for case in cases:
        m = measure(case, args.repeats)
        rows.append(
            f"| {case.name} | {case.family} | {_shape(case)} | {m['trace']} | {m['weighted']} "
            f"| {m['kernels']} ({m['total']}) | {m['layers']} | {_ms(m['forward'])} "
            f"| {_ms(m['analyze'])} | {m['analyze'] / m['forward']:.2f}x "
            f"| {_ms(m['first'])} |")
        print(rows[-1], file=sys.stderr, flush=True)  # progress; the table goes to stdout
        gc.collect()
    text = (f"{MARKER}: fxcfp.analyze at full depth, threshold {THRESHOLD}, random weights, "
            f"smallest clips\n\nMachine: {machine()}. Times are medians of {args.repeats} calls "
            "after a warm-up.\n\n" + "\n".join(rows) + "\n")
    print(text)
    if not args.no_write:
        _replace_section(RESULTS, MARKER, text)


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
