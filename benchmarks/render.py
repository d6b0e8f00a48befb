"""Rendering speed: every pyramid level of r3d_18 for a 16-frame 112x112 clip, next to the forward.

Times what a user pays for pictures, split in parts:

- **the analysis**: ``fxcfp.analyze`` alone, and ``fxcfp.analyze(..., maps=...)``, whose forward
  pass also keeps what the maps of one mode are made of (evidence maps, the default of the
  pictures: the forward with gradients and one backward after the back-step; paper maps: the
  map nodes' outputs);
- **map recording after the analysis**: ``Pyramid.prefetch_maps`` of every level, the pass a
  pyramid analysed without ``maps=`` runs for its pictures (evidence: a forward and a backward;
  paper: a targeted forward);
- **drawing, encoding and the report**: on a pyramid whose maps are recorded, the layer maps'
  weighted sums and cubic-spline upsampling, overlays, files
  (``render_pyramid(..., formats=("mp4",))``) or the whole report of every level
  (``write_report(max_levels=None)``: level videos and stills, the Graphviz graph of every
  level, a kernel map per shown kernel, the page).

End to end, from the clip: ``analyze`` then ``write_report`` (the maps recorded by the report),
and ``analyze(maps="evidence")`` then ``write_report`` (what ``fxcfp explain`` runs). The pyramid
is analysed with ``top_k=3``, as the command line does. Every measurement is interleaved with a
forward pass in one process, and the median of ``--repeats`` runs is kept, in CPU time
(``time.process_time``: every thread of this process) and wall time.
Run: ``python benchmarks/render.py`` (``--no-write``: print the table only).
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
    parser.add_argument("--no-write", action="store_true", help="print only")
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

    def fresh(maps: str | None = None) -> fxcfp.Pyramid:  # no map cached from an earlier run
        return analyzer.analyze(clip, threshold=0.6, top_k=3, maps=maps)  # type: ignore[arg-type]

    def analysis(maps: str | None) -> Callable[[], tuple[float, float]]:
        return lambda: _clock(lambda: fresh(maps))

    def record(mode: str) -> Callable[[], tuple[float, float]]:
        def step() -> tuple[float, float]:
            target = fresh()
            return _clock(lambda: target.prefetch_maps(names, mode=mode))
        return step

    def files(target: fxcfp.Pyramid) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            return _clock(lambda: render_pyramid(target, out, clip=clip, mean=MEAN, std=STD,
                                                 formats=("mp4",)))

    def report(target: Callable[[], fxcfp.Pyramid] | fxcfp.Pyramid) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            return _clock(lambda: write_report(target() if callable(target) else target, out,
                                               clip=clip, mean=MEAN, std=STD, max_levels=None,
                                               max_kernels_per_layer=4))

    forward()
    report(fresh("evidence"))  # warm-up: imports, the page's templates, Graphviz
    steps = {
        "analyze": analysis(None),
        "analyze_evidence": analysis("evidence"),
        "analyze_paper": analysis("paper"),
        "record": record("evidence"),
        "record_paper": record("paper"),
        "files": lambda: files(fresh("evidence")),
        "report": lambda: report(fresh("evidence")),
        "end_to_end": lambda: report(fresh),
        "chain": lambda: report(lambda: fresh("evidence")),
    }
    median = interleaved(steps, forward, args.repeats)
    count = len(names)
    what = {
        "forward": "forward",
        "analyze": "analyze (no maps)",
        "analyze_evidence": "analyze(maps=\"evidence\"): forward with gradients, back-step, "
                            "one backward",
        "analyze_paper": "analyze(maps=\"paper\"): forward keeping the map nodes, back-step",
        "record": f"map recording after analyze, all {count} levels, evidence maps "
                  "(prefetch_maps: forward + backward)",
        "record_paper": f"map recording after analyze, all {count} levels, paper maps "
                        "(prefetch_maps: targeted forward)",
        "files": f"drawing + encoding: render_pyramid of all {count} levels, mp4 (maps' sums, "
                 "upsampling, overlays, files, figures), maps recorded",
        "report": f"drawing + encoding + report: write_report of all {count} levels (the above, "
                  "stills, graph of every level, kernel maps, page), maps recorded",
        "end_to_end": f"analyze, then write_report of all {count} levels (it records the maps)",
        "chain": f"analyze(maps=\"evidence\"), then write_report of all {count} levels "
                 "(fxcfp explain's chain)",
    }
    forward_cpu, forward_wall = median["forward"]
    rows = ["| what | CPU s | CPU / forward | wall s | wall / forward |", "|---|---|---|---|---|"]
    for key, text in what.items():
        cpu, wall = median[key]
        rows.append(f"| {text} | {cpu:.2f} | {cpu / forward_cpu:.2f} | {wall:.2f} | "
                    f"{wall / forward_wall:.2f} |")
    ratio = {key: cpu / forward_cpu for key, (cpu, _) in median.items()}
    # what the pictures cost on top of the analysis: the maps' share of the analysis, the report
    rendering = ratio["analyze_evidence"] - ratio["analyze"] + ratio["report"]
    paper = ratio["analyze_paper"] - ratio["analyze"] + ratio["report"]
    verdict = (
        f"Target (rendering every level, the report included, <= {TARGET:.1f}x the forward, "
        f"CPU): evidence maps (the pictures' default) {'met' if rendering <= TARGET else 'NOT met'}"
        f" at {rendering:.2f}x, paper maps {'met' if paper <= TARGET else 'NOT met'} at "
        f"{paper:.2f}x. The maps "
        f"add {ratio['analyze_evidence'] - ratio['analyze']:.2f}x to the analysis with "
        f"maps=\"evidence\" ({ratio['analyze_paper'] - ratio['analyze']:.2f}x with "
        f"maps=\"paper\"; a map recording after the analysis costs {ratio['record']:.2f}x and "
        f"{ratio['record_paper']:.2f}x), drawing, encoding and the page "
        f"{ratio['report']:.2f}x. From the clip: {ratio['chain']:.2f}x with the maps in the "
        f"analysis, {ratio['end_to_end']:.2f}x without.")
    text = (f"## Render: every level of r3d_18, {args.frames}x{args.size}x{args.size}\n\n"
            f"Machine: {machine()}. top_k=3, medians of {args.repeats} runs, each interleaved "
            "with a forward pass; CPU time counts every thread of the process.\n\n"
            + "\n".join(rows) + "\n\n" + verdict + "\n")
    print(text)
    if not args.no_write:
        _write_section(RESULTS, "## Render:", text)


if __name__ == "__main__":
    main()
