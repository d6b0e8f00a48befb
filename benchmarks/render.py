"""Rendering speed: every pyramid level of r3d_18 for a 16-frame 112x112 clip, next to the forward.

Times what a user pays for pictures after ``fxcfp.analyze``: the targeted forward that captures
the passing channels, layer-wise maps, cubic-spline upsampling, overlays and files
(``render_pyramid(..., formats=("mp4",))``), and the whole report of every level
(``write_report(max_levels=None)``: level videos and stills, the Graphviz graph of every level,
a kernel map per shown kernel, the page). The pyramid is analysed with ``top_k=3``, as the
command line does. Each measurement is interleaved with a forward pass in one process and the
median of ``--repeats`` runs is kept, in CPU time (``time.process_time``: every thread of this
process) and wall time.
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


def _clock(action: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    action()
    return time.process_time() - cpu, time.perf_counter() - wall


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
    with torch.no_grad():
        model(clip[None])

    def forward() -> None:
        with torch.no_grad():
            model(clip[None])

    def fresh() -> fxcfp.Pyramid:  # no map cached from an earlier run
        return analyzer.analyze(clip, threshold=0.6, top_k=3)

    def capture() -> None:
        target = fresh()
        start = _clock(lambda: target.prefetch_maps([level.name for level in target.layers]))
        samples["capture"].append(start)

    def files() -> None:
        target = fresh()
        with tempfile.TemporaryDirectory() as out:
            samples["render"].append(_clock(lambda: render_pyramid(
                target, out, clip=clip, mean=MEAN, std=STD, formats=("mp4",))))

    def report() -> None:
        target = fresh()
        with tempfile.TemporaryDirectory() as out:
            samples["report"].append(_clock(lambda: write_report(
                target, out, clip=clip, mean=MEAN, std=STD, max_levels=None,
                max_kernels_per_layer=4)))

    samples: dict[str, list[tuple[float, float]]] = {
        "forward": [], "capture": [], "render": [], "report": []}
    for _ in range(args.repeats):
        for step in (capture, files, report):
            samples["forward"].append(_clock(forward))
            step()
    cpu = {k: statistics.median(c for c, _ in v) for k, v in samples.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in samples.items()}
    what = {
        "forward": "forward",
        "capture": f"targeted forward capturing the passing channels of all "
                   f"{len(pyramid.layers)} levels",
        "render": f"render_pyramid of all {len(pyramid.layers)} levels, mp4 (capture, maps, "
                  "upsampling, overlays, files)",
        "report": f"write_report of all {len(pyramid.layers)} levels (the above, stills, graph "
                  "of every level, kernel maps, page)",
    }
    rows = ["| what | CPU s | CPU / forward | wall s | wall / forward |", "|---|---|---|---|---|"]
    for key, text in what.items():
        rows.append(f"| {text} | {cpu[key]:.2f} | {cpu[key] / cpu['forward']:.2f} | "
                    f"{wall[key]:.2f} | {wall[key] / wall['forward']:.2f} |")
    text = (f"## Render: every level of r3d_18, {args.frames}x{args.size}x{args.size}\n\n"
            f"Machine: {machine()}. top_k=3, medians of {args.repeats} runs, each interleaved "
            "with a forward pass; CPU time counts every thread of the process.\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    _write_section(RESULTS, "## Render:", text)


if __name__ == "__main__":
    main()
