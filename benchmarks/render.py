"""Rendering speed: every pyramid level of r3d_18 for a 16-frame 112x112 clip, next to the forward.

Times what a user pays for pictures after ``fxcfp.analyze``, split in two:

- **map recording**: ``Pyramid.prefetch_maps`` of every level, the one pass that records what
  the maps are made of (evidence maps, the default: one forward and one backward; paper maps:
  one targeted forward, shown as the floor of the other mode);
- **drawing, encoding and the report**: on a pyramid whose maps are recorded, the layer maps'
  weighted sums and cubic-spline upsampling, overlays, files
  (``render_pyramid(..., formats=("mp4",))``) or the whole report of every level
  (``write_report(max_levels=None)``: level videos and stills, the Graphviz graph of every
  level, a kernel map per shown kernel, the page).

``write_report`` from a fresh pyramid (both parts, end to end) is measured too. The pyramid is
analysed with ``top_k=3``, as the command line does. Every measurement is interleaved with a
forward pass in one process, and the median of ``--repeats`` runs is kept, in CPU time
(``time.process_time``: every thread of this process) and wall time.
Run: ``python benchmarks/render.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torchvision

import fxcfp
from fxcfp.render import render_pyramid, write_report

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine

MEAN, STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
TARGET = 1.0  # the target: the report of every level <= 1.0x the forward


def _clock(action: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.process_time() - cpu, time.perf_counter() - wall


def interleaved(steps: dict[str, Callable[[], tuple[float, float]]], forward: Callable[[], None],
                repeats: int) -> dict[str, tuple[float, float]]:
    """Median ``(CPU s, wall s)`` per step, each run right after a forward pass (timed as
    ``"forward"``), so that a noisy machine slows the step and its reference alike. A step
    times its own part (and returns it), so that its set-up is not counted."""
    samples: dict[str, list[tuple[float, float]]] = {"forward": [], **{k: [] for k in steps}}
    for _ in range(repeats):
        for name, step in steps.items():
            samples["forward"].append(_clock(forward))
            samples[name].append(step())
    return {name: (statistics.median(c for c, _ in got), statistics.median(w for _, w in got))
            for name, got in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18().eval()
    clip = torch.randn(3, args.frames, args.size, args.size)
    analyzer = fxcfp.Analyzer(model)
    pyramid = analyzer.analyze(clip, threshold=0.6, top_k=3)
    names = [level.name for level in pyramid.layers]

    def forward() -> None:
        with torch.no_grad():
            model(clip[None])

    def fresh() -> fxcfp.Pyramid:  # no map cached from an earlier run
        return analyzer.analyze(clip, threshold=0.6, top_k=3)

    def recorded() -> fxcfp.Pyramid:
        target = fresh()
        target.prefetch_maps(names, mode="evidence")
        return target

    def record(mode: str) -> Callable[[], tuple[float, float]]:
        def step() -> tuple[float, float]:
            target = fresh()
            return _clock(lambda: target.prefetch_maps(names, mode=mode))
        return step

    def files(target: fxcfp.Pyramid) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            return _clock(lambda: render_pyramid(target, out, clip=clip, mean=MEAN, std=STD,
                                                 formats=("mp4",)))

    def report(target: fxcfp.Pyramid) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            return _clock(lambda: write_report(target, out, clip=clip, mean=MEAN, std=STD,
                                               max_levels=None, max_kernels_per_layer=4))

    forward()
    report(recorded())  # warm-up: imports, the page's templates, Graphviz
    steps = {
        "record": record("evidence"),
        "record_paper": record("paper"),
        "files": lambda: files(recorded()),
        "report": lambda: report(recorded()),
        "end_to_end": lambda: report(fresh()),
    }
    median = interleaved(steps, forward, args.repeats)
    count = len(names)
    what = {
        "forward": "forward",
        "record": f"map recording of all {count} levels, evidence maps (forward + backward)",
        "record_paper": f"map recording of all {count} levels, paper maps (targeted forward)",
        "files": f"drawing + encoding: render_pyramid of all {count} levels, mp4 (maps' sums, "
                 "upsampling, overlays, files, figures)",
        "report": f"drawing + encoding + report: write_report of all {count} levels (the above, "
                  "stills, graph of every level, kernel maps, page)",
        "end_to_end": f"write_report of all {count} levels from a fresh pyramid (recording "
                      "included)",
    }
    forward_cpu, forward_wall = median["forward"]
    rows = ["| what | CPU s | CPU / forward | wall s | wall / forward |", "|---|---|---|---|---|"]
    for key, text in what.items():
        cpu, wall = median[key]
        rows.append(f"| {text} | {cpu:.2f} | {cpu / forward_cpu:.2f} | {wall:.2f} | "
                    f"{wall / forward_wall:.2f} |")
    total = median["end_to_end"][0] / forward_cpu
    floor = median["record"][0] / forward_cpu
    verdict = (f"Target (report of every level <= {TARGET:.1f}x the forward, CPU): "
               f"{'met' if total <= TARGET else 'NOT met'} at {total:.2f}x. Map recording alone "
               f"is {floor:.2f}x (evidence maps; {median['record_paper'][0] / forward_cpu:.2f}x "
               "for paper maps): that is the floor of any report of evidence maps; drawing, "
               f"encoding and the page add {median['report'][0] / forward_cpu:.2f}x.")
    text = (f"## Render: every level of r3d_18, {args.frames}x{args.size}x{args.size}\n\n"
            f"Machine: {machine()}. top_k=3, medians of {args.repeats} runs, each interleaved "
            "with a forward pass; CPU time counts every thread of the process.\n\n"
            + "\n".join(rows) + "\n\n" + verdict + "\n")
    print(text)
    _write_section(RESULTS, "## Render:", text)


if __name__ == "__main__":
    main()
