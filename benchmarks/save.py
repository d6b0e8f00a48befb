"""Saved pyramids: size and time of ``Pyramid.save`` / ``fxcfp.load_pyramid`` against GraphML
and the edge lists, for the default full-depth pyramid of r3d_18 on 16x112x112.

Load time is the median of 7 loads (CPU time of this thread); ``summary()`` after a load
includes recounting the edges. Run: ``python benchmarks/save.py`` (``--no-graphml`` skips the
slow GraphML row).
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

import fxcfp

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine


def _timed(function) -> float:
    started = time.thread_time()
    function()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-graphml", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18().eval()
    clip = torch.randn(3, 16, 112, 112, generator=torch.Generator().manual_seed(0))
    pyramid = fxcfp.analyze(model, clip)
    folder = Path(tempfile.mkdtemp())
    rows = ["| file | size | write | read |", "|---|---|---|---|"]
    path = folder / "pyramid.fxcfp"
    write = _timed(lambda: pyramid.save(path))
    loads = [_timed(lambda: fxcfp.load_pyramid(path)) for _ in range(7)]
    loaded = fxcfp.load_pyramid(path)
    summary = _timed(loaded.summary)
    assert loaded.summary() == pyramid.summary() and loaded.layers == pyramid.layers
    rows.append(f"| Pyramid.save (.fxcfp) | {os.path.getsize(path) / 1e6:.2f} MB | {write:.2f} s "
                f"| load {statistics.median(loads) * 1e3:.0f} ms (+ summary() "
                f"{summary * 1e3:.0f} ms) |")
    with_maps = folder / "maps.fxcfp"
    write = _timed(lambda: pyramid.save(with_maps, maps="paper"))
    loads = [_timed(lambda: fxcfp.load_pyramid(with_maps)) for _ in range(3)]
    rows.append(f"| Pyramid.save(maps='paper') | {os.path.getsize(with_maps) / 1e6:.2f} MB | "
                f"{write:.2f} s | load {statistics.median(loads) * 1e3:.0f} ms |")
    payload = pickle.dumps(pyramid)
    rows.append(f"| pickle.dumps (with the clip) | {len(payload) / 1e6:.2f} MB | | "
                f"loads {_timed(lambda: pickle.loads(payload)) * 1e3:.0f} ms |")
    for suffix in (".npz", ".parquet"):
        edges = folder / f"edges{suffix}"
        write = _timed(lambda e=edges: pyramid.to_edge_list(e))
        rows.append(f"| to_edge_list({suffix}) | {os.path.getsize(edges) / 1e6:.2f} MB | "
                    f"{write:.2f} s | |")
    if not args.no_graphml:
        graphml = folder / "pyramid.graphml"
        write = _timed(lambda: pyramid.to_graphml(graphml))
        rows.append(f"| to_graphml | {os.path.getsize(graphml) / 1e6:.2f} MB | {write:.2f} s "
                    "| |")
    text = ("## Save: saved pyramids against GraphML\n\n"
            f"Machine: {machine()}. r3d_18 (random weights), 16x112x112, threshold 0.6, full "
            f"depth, no top-k: {pyramid.num_kernels} kernels, {pyramid.num_edges:,} edges. CPU "
            "time of the calling thread.\n\n" + "\n".join(rows) + "\n")
    print(text)
    _write_section(RESULTS, "## Save:", text)


if __name__ == "__main__":
    main()
