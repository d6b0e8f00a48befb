"""Cost of evidence maps: ``analyze`` plus every map the report draws, evidence mode against the
paper mode, on r3d_18 with a 16x112x112 clip.

"Every map of the report" is what ``write_report`` asks the pyramid for with its defaults: the
layer-wise map of every level and the kernel-wise maps of up to 8 kernels per level, upsampled to
the clip. Recorded after the analysis (``prefetch_maps``), the paper mode pays one targeted
forward for them, the evidence mode one forward and one backward; recorded by the analysis
itself (``analyze(..., maps=mode)``, what ``fxcfp explain`` runs), the paper mode keeps the map
nodes of its forward, the evidence mode runs that forward with gradients and one backward. The
four are timed interleaved in one process, fresh pyramids each round (the maps' caches are per
pyramid), CPU time (``time.process_time``), medians.
Run: ``python benchmarks/evidence_cost.py`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

import fxcfp

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine

_KERNELS = 8  # write_report's max_kernels_per_layer


def _report_maps(analyzer: fxcfp.Analyzer, clip: torch.Tensor, mode: str, in_analysis: bool
                 ) -> tuple[float, int]:
    """CPU seconds of analyze + every map of the report, and how many maps were made."""
    start = time.process_time()
    if in_analysis:
        pyramid = analyzer.analyze(clip, threshold=0.6, maps=mode)  # type: ignore[arg-type]
    else:
        pyramid = analyzer.analyze(clip, threshold=0.6)
        pyramid.prefetch_maps([level.name for level in pyramid.layers], mode=mode)
    count = 0
    for level in pyramid.layers:
        try:
            pyramid.layer_map(level.name, upsample=True, mode=mode)
        except fxcfp.InvalidArgumentError:
            continue  # a level at max_depth has no map
        count += 1
        for kernel in level.kernels[:_KERNELS]:
            pyramid.kernel_map(level.name, kernel, upsample=True, mode=mode)
            count += 1
    return time.process_time() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18().eval()
    clip = torch.randn(3, args.frames, args.size, args.size)
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(clip)  # trace and plan once
    variants = [(mode, in_analysis) for in_analysis in (False, True)
                for mode in ("paper", "evidence")]
    times: dict[tuple[str, bool] | str, list[float]] = {"forward": [], **{v: [] for v in variants}}
    counts = {}
    for _ in range(args.rounds):
        start = time.process_time()
        with torch.no_grad():
            model(clip[None])
        times["forward"].append(time.process_time() - start)
        for mode, in_analysis in variants:
            seconds, counts[mode] = _report_maps(analyzer, clip, mode, in_analysis)
            times[(mode, in_analysis)].append(seconds)
    median = {key: statistics.median(got) for key, got in times.items()}
    forward = median["forward"]
    rows = [
        "| what | CPU seconds (median) | / forward | / paper mode |",
        "|---|---|---|---|",
        f"| forward | {forward:.2f} | 1.00 | |",
    ]
    for mode, in_analysis in variants:
        seconds, paper = median[(mode, in_analysis)], median[("paper", in_analysis)]
        how = f'analyze(maps="{mode}")' if in_analysis else "analyze, prefetch_maps"
        rows.append(f"| {how} + {counts[mode]} report maps, {mode} mode | {seconds:.2f} | "
                    f"{seconds / forward:.2f} | {seconds / paper:.2f} |")
    text = (f"## Evidence maps: cost against the paper mode, r3d_18 {args.frames}x{args.size}x"
            f"{args.size}\n\nMachine: {machine()}; {args.rounds} interleaved rounds, CPU time "
            "(process_time, all threads). Target: evidence / paper <= 2.\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    if not args.no_write:
        _write_section(RESULTS, "## Evidence maps:", text)


if __name__ == "__main__":
    main()
