"""Peak memory of ``fxcfp.analyze(..., maps=...)`` against ``fxcfp.analyze``: r3d_18, 16x112x112.

With ``maps=`` the analysis's forward keeps every map node's output until the back-step is done
(``"paper"``), and for evidence maps the autograd graph of the forward too, until its one
backward. The peak is measured as the process's maximum resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``; torch's CPU allocator keeps no statistics), each
variant in a fresh process: the model is built and analysed once without ``maps=`` (trace, plan,
the plain peak), then once more with the variant; the row is the growth of the peak over the
plain analysis's. Run: ``python benchmarks/maps_memory.py`` (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine

_CHILD = """
import json, resource, sys
import torch, torchvision, fxcfp
torch.manual_seed(0)
model = torchvision.models.video.r3d_18().eval()
clip = torch.randn(3, {frames}, {size}, {size})
fxcfp.analyze(model, clip, threshold=0.6, top_k=3)
fxcfp.analyze(model, clip, threshold=0.6, top_k=3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
maps, after_analysis = {maps!r}, {after!r}
if after_analysis:
    fxcfp.analyze(model, clip, threshold=0.6, top_k=3).prefetch_maps(mode=maps)
else:
    pyramid = fxcfp.analyze(model, clip, threshold=0.6, top_k=3, maps=maps)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"before": before, "after": after}}))
"""


def _peak(maps: str | None, after: bool, frames: int, size: int) -> tuple[float, float]:
    """(peak MiB after the plain analyses, peak MiB after the one with ``maps``, or with a
    plain analysis and ``prefetch_maps(mode=maps)`` when ``after``)."""
    code = _CHILD.format(frames=frames, size=size, maps=maps, after=after)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got["before"] / 1024, got["after"] / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rows = ["| analysis | peak RSS before (MiB) | peak RSS after (MiB) | growth (MiB) |",
            "|---|---|---|---|"]
    for maps, later in ((None, False), ("paper", False), ("evidence", False), ("paper", True),
                        ("evidence", True)):
        before, after = _peak(maps, later, args.frames, args.size)
        label = ("analyze" if maps is None else f'analyze, then prefetch_maps(mode="{maps}")'
                 if later else f'analyze(maps="{maps}")')
        rows.append(f"| {label} | {before:.0f} | {after:.0f} | {after - before:.0f} |")
    text = (f"## Maps in the analysis: peak memory, r3d_18 {args.frames}x{args.size}x"
            f"{args.size}\n\nMachine: {machine()}. Each row a fresh process: two plain "
            "analyses (the peak before), then the one of the row; maximum resident set size "
            "(getrusage).\n\n" + "\n".join(rows) + "\n")
    print(text)
    if not args.no_write:
        _write_section(RESULTS, "## Maps in the analysis:", text)


if __name__ == "__main__":
    main()
