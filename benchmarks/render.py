"""Rendering speed: every pyramid level of r3d_18 for a 16-frame 112x112 clip, next to the forward.

Times the whole path a user pays for pictures: the targeted forward that captures the passing
channels, layer-wise maps, cubic-spline upsampling, overlays and one GIF per level
(``render_pyramid(..., formats=("gif",))``), and the same with PNG frames and MP4s too.
Run: ``python benchmarks/render.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torchvision

import fxcfp
from fxcfp.render import render_pyramid

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18().eval()
    clip = torch.randn(3, args.frames, args.size, args.size)
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(clip)
    with torch.no_grad():
        model(clip[None])
        start = time.perf_counter()
        model(clip[None])
        forward = time.perf_counter() - start
    mean, std = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
    rows = ["| what | seconds | / forward |", "|---|---|---|", f"| forward | {forward:.2f} | 1.00 |"]
    pyramid = analyzer.analyze(clip, threshold=0.6)
    start = time.perf_counter()
    pyramid.prefetch_maps([level.name for level in pyramid.layers])
    capture = time.perf_counter() - start
    rows.append(f"| targeted forward capturing the passing channels of all "
                f"{len(pyramid.layers)} levels | {capture:.2f} | {capture / forward:.2f} |")
    for formats in (("gif",), ("png", "gif", "mp4")):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = render_pyramid(pyramid, out, clip=clip, mean=mean, std=std, formats=formats)
            seconds = time.perf_counter() - start
        rows.append(f"| then all {len(result.levels)} levels, {'+'.join(formats)} (maps, "
                    f"upsampling, overlays, files) | {seconds:.2f} | {seconds / forward:.2f} |")
        print(rows[-1], flush=True)
    text = (f"## Render: every level of r3d_18, {args.frames}x{args.size}x{args.size}\n\n"
            f"Machine: {machine()}.\n\n" + "\n".join(rows) + "\n")
    print(text)
    _write_section(RESULTS, "## Render:", text)


if __name__ == "__main__":
    main()
