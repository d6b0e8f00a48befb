"""Batch and scale: ``analyze_batch`` over 8 clips against 8 single ``analyze`` calls.

Both use one warmed-up :class:`fxcfp.Analyzer` on r3d_18; the batch runs one forward pass and one
back-step batched over the samples on the device. Run: ``python benchmarks/batch.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torchvision

# this checkout's fxcfp, not whichever one the environment installed
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fxcfp

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18().eval().to(device)
    clips = torch.randn(args.clips, 3, args.frames, args.size, args.size, device=device)
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(clips[0])
    analyzer.analyze_batch(clips)  # warm-up: plans for both shapes

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    singles = timed(lambda: [analyzer.analyze(clip) for clip in clips])
    batch = timed(lambda: analyzer.analyze_batch(clips))
    rows = [
        "| r3d_18, clips | 8 single analyze calls | one analyze_batch | batch / singles |",
        "|---|---|---|---|",
        f"| {args.clips} x {args.frames}x{args.size}x{args.size} | {singles:.2f} s | {batch:.2f} s "
        f"| {batch / singles:.2f}x |",
    ]
    text = (f"## Batch: analyze_batch against single calls\n\nMachine: {machine()}.\n\n"
            + "\n".join(rows) + "\n")
    print(text)
    _write_section(RESULTS, "## Batch:", text)


if __name__ == "__main__":
    main()
