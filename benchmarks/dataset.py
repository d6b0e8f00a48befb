"""Dataset throughput: ``fxcfp explain-dataset`` clips/s on 1 and 2 processes (torchrun, gloo)
against decode-only throughput of the same DataLoader on the same clips (the ceiling).

Two models: a tiny 3D CNN (analysis costs next to nothing, so the run is decode-bound and should
reach the ceiling) and r3d_18 at 16x112x112 (on a CPU the analysis is the bottleneck). Clips/s is
counted over each run's decode-and-analyse loop (wall time of the slowest rank: throughput is a
wall-clock measure), not the start-up, and again after each rank's first batch (steady state:
the decode workers' start and the pipeline's fill left out, for the ceiling alike). Rows
alternate between the configurations, each run ``--rounds`` times, medians reported; the load
average (``os.getloadavg``) before and after is printed beside them. GPU rows are added when
CUDA is available. Run: ``python benchmarks/dataset.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine


class Tiny(nn.Module):
    """Two small 3D convolutions and a classifier: analysis is almost free."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, stride=(1, 4, 4), padding=1)
        self.conv2 = nn.Conv3d(8, 16, 3, stride=(1, 2, 2), padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3, 4)))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return Tiny().eval()


def write_clips(folder: Path, count: int, frames: int, width: int, height: int) -> None:
    import av

    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / f"{i % 2}" / f"clip{i:03d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            continue
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
                image[:, (4 * t) % width:] //= 2
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def decode_only(source: str, frames: int, size: int, workers: int, batch: int) -> None:
    """The ceiling: the explain-dataset DataLoader (same sampler, workers, batches), no model."""
    from torch.utils.data import DataLoader

    from fxcfp.dataset._items import list_items
    from fxcfp.dataset._run import (
        DatasetOptions,
        _barrier,
        _collate,
        _Decode,
        _gather,
        _Shard,
        _worker_init,
        _world,
    )

    world = _world()
    items = list_items(source, lambda text, where: 0, use_labels=False)
    options = DatasetOptions(frames=frames, size=size, start=None, normalization="kinetics",
                             threshold=0.6, max_depth=None, top_k=3)
    dataset = _Decode(items, options)
    sampler = _Shard(dataset, num_replicas=world.size, rank=world.rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        collate_fn=_collate, worker_init_fn=_worker_init,
                        prefetch_factor=2 if workers > 0 else None)
    _barrier(world)
    started = time.perf_counter()
    count = 0
    first: tuple[float, int] | None = None
    for batch_ in loader:
        count += sum(error is None for _, _, error in batch_)
        if first is None:
            first = (time.perf_counter(), count)
    ended = time.perf_counter()
    seconds = ended - started
    # as explain-dataset counts it: the rate after this rank's first batch
    steady = ((count - first[1]) / (ended - first[0]) if first is not None and count > first[1]
              else None)
    stats = _gather(world, (count, seconds, steady))
    if world.rank == 0:
        total, slowest = sum(s[0] for s in stats), max(s[1] for s in stats)
        rates = [s[2] for s in stats]
        after = (f" ({sum(rates):.2f} clips/s after the first batch)" if None not in rates
                 else "")
        print(f"speed      {total / slowest:.2f} clips/s over {slowest:.1f} s{after}")
    if world.started:
        import torch.distributed as dist

        dist.destroy_process_group()


def _run(command: list[str], procs: int) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{HERE}", OMP_NUM_THREADS="1",
               GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    env.pop("WORLD_SIZE", None)
    prefix = [sys.executable]
    if procs > 1:
        prefix += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                   str(procs)]
    result = subprocess.run(prefix + command, cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr[-3000:]}")
    found = re.search(r"speed\s+([\d.]+) clips/s over [\d.]+ s(?: \(([\d.]+) clips/s after)?",
                      result.stdout)
    if found is None:
        raise RuntimeError(f"no speed line in:\n{result.stdout}")
    # no steady rate where a rank had a single batch
    return float(found.group(1)), float(found.group(2)) if found.group(2) else math.nan


def _f(value: float, spec: str = ".2f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 96: the fixed costs of a run (worker start, the pipeline's fill and drain) weigh little
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--r3d-clips", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--decode-only", metavar="DIR")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--models", nargs="+", default=["tiny CNN", "r3d_18"],
                        choices=["tiny CNN", "r3d_18"])
    args = parser.parse_args()
    if args.decode_only:
        decode_only(args.decode_only, args.frames, args.size, args.workers, args.batch)
        return
    cache = Path(tempfile.gettempdir()) / "fxcfp-bench-dataset"
    # clips of 2 s at 25 fps, 320x240: decoding is real work, as in a validation set
    write_clips(cache / "videos", args.clips, 50, 320, 240)
    small = cache / "videos-r3d"
    small.mkdir(parents=True, exist_ok=True)
    for path in sorted((cache / "videos").rglob("*.mp4"))[: args.r3d_clips]:
        target = small / path.relative_to(cache / "videos")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(path)
    common = ["--frames", str(args.frames), "--size", str(args.size), "--workers",
              str(args.workers), "--batch", str(args.batch)]
    configs = {name: config for name, config in {
        "tiny CNN": (cache / "videos", "dataset:tiny"),
        "r3d_18": (small, "torchvision:r3d_18"),
    }.items() if name in args.models}
    speeds: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    load_before = os.getloadavg()
    for round_ in range(args.rounds):
        for name, (folder, model) in configs.items():
            for procs in (1, 2):
                decode = [str(HERE / "dataset.py"), "--decode-only", str(folder), *common]
                speeds.setdefault((name, "decode", procs), []).append(_run(decode, procs))
                with tempfile.TemporaryDirectory() as out:
                    explain = ["-m", "fxcfp", "explain-dataset", str(folder), "--out", out,
                               "--model", model, "--quiet", "--no-labels", *common]
                    speeds.setdefault((name, "explain", procs), []).append(
                        _run(explain, procs))
                print(round_, name, procs, {k: v[-1] for k, v in speeds.items()
                                            if k[0] == name and k[2] == procs}, flush=True)
    load_after = os.getloadavg()
    # medians of each figure, and of the per-round ratios (a ratio holds on a noisy machine)
    median = {key: tuple(statistics.median(v[i] for v in values) for i in (0, 1))
              for key, values in speeds.items()}

    def ratio(name: str, procs: int, i: int) -> float:
        pairs = zip(speeds[(name, "explain", procs)], speeds[(name, "decode", procs)])
        return statistics.median(e[i] / d[i] for e, d in pairs)

    rows = ["| model | processes | decode only (ceiling): run / steady | explain-dataset: run / "
            "steady | explain / decode: run / steady | explain, 2 / 1 processes |",
            "|---|---|---|---|---|---|"]
    for name, (folder, _) in configs.items():
        clips = len(list(folder.rglob("*.mp4")))
        for procs in (1, 2):
            d, e = median[(name, "decode", procs)], median[(name, "explain", procs)]
            scale = (f"{e[0] / median[(name, 'explain', 1)][0]:.2f}x" if procs == 2 else "")
            rows.append(f"| {name} ({clips} clips) | {procs} | {d[0]:.2f} / {_f(d[1])} clips/s | "
                        f"{e[0]:.2f} / {_f(e[1])} clips/s | {ratio(name, procs, 0):.0%} / "
                        f"{_f(ratio(name, procs, 1), '.0%')} | {scale} |")
    gpu = ("A GPU was available: the analysis ran on it." if torch.cuda.is_available() else
           "No GPU was available in this run, so there are no GPU rows.")
    text = ("## Dataset: explain-dataset throughput against decode-only\n\n"
            f"Machine: {machine()}. {args.clips} clips of 2 s (50 frames, 320x240 MPEG-4), read "
            f"as {args.frames} frames of {args.size}x{args.size}; {args.workers} decode worker(s) "
            f"per process, batches of {args.batch}, top-k 3, threshold 0.6, full depth; "
            f"medians of {args.rounds} rounds (ratios: medians of the rounds' ratios); clips/s "
            "over the loop's wall time (slowest rank), and steady: after each rank's first "
            f"batch. Load average (1, 5, 15 min) before: {_load(load_before)}, after: "
            f"{_load(load_after)}. {gpu}\n\n" + "\n".join(rows) + "\n\n"
            "Which stage is the bottleneck: where explain / decode is near 100% it is decoding "
            "(the ceiling's own work; the analysis and, on the writer thread, the saving hide "
            "behind it), far below it the analysis. On a machine loaded by other work the "
            "figures move from round to round; the ratios of one round hold better.\n")
    print(text)
    _write_section(RESULTS, "## Dataset:", text)


if __name__ == "__main__":
    main()
