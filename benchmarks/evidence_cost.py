"""Cost of evidence maps: ``analyze`` plus every map the report draws, evidence mode against the
paper mode, on r3d_18 with a 16x112x112 clip.

"Every map of the report" is what ``write_report`` asks the pyramid for with its defaults: the
layer-wise map of every level and the kernel-wise maps of up to 8 kernels per level, upsampled to
the clip. The paper mode pays one targeted forward for them (``prefetch_maps``), the evidence
mode one forward and one backward. The two are timed interleaved in one process, fresh pyramids
each round (the maps' caches are per pyramid), CPU time (``time.process_time``), medians.
Run: ``python benchmarks/evidence_cost.py``.
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


def _report_maps(analyzer: fxcfp.Analyzer, clip: torch.Tensor, mode: str) -> tuple[float, int]:
    """CPU seconds of analyze + every map of the report, and how many maps were made."""
    start = time.process_time()
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
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18().eval()
    clip = torch.randn(3, args.frames, args.size, args.size)
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(clip)  # trace and plan once
    times: dict[str, list[float]] = {"forward": [], "paper": [], "evidence": []}
    counts = {}
    for _ in range(args.rounds):
        start = time.process_time()
        with torch.no_grad():
            model(clip[None])
        times["forward"].append(time.process_time() - start)
        for mode in ("paper", "evidence"):
            seconds, counts[mode] = _report_maps(analyzer, clip, mode)
            times[mode].append(seconds)
    forward, paper, evidence = (statistics.median(times[k]) for k in ("forward", "paper",
                                                                       "evidence"))
    rows = [
        "| what | CPU seconds (median) | / forward | / paper mode |",
        "|---|---|---|---|",
        f"| forward | {forward:.2f} | 1.00 | |",
        f"| analyze + {counts['paper']} report maps, paper mode | {paper:.2f} | "
        f"{paper / forward:.2f} | 1.00 |",
        f"| analyze + {counts['evidence']} report maps, evidence mode | {evidence:.2f} | "
        f"{evidence / forward:.2f} | {evidence / paper:.2f} |",
    ]
    text = (f"## Evidence maps: cost against the paper mode, r3d_18 {args.frames}x{args.size}x"
            f"{args.size}\n\nMachine: {machine()}; {args.rounds} interleaved rounds, CPU time "
            "(process_time, all threads). Target: evidence / paper <= 2.\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    _write_section(RESULTS, "## Evidence maps:", text)


if __name__ == "__main__":
    main()
