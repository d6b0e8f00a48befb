"""Explaining a whole dataset: decode workers, batched analysis, a resumable manifest, and the
per-class aggregates, on one process or many (``torchrun``).

Layout of ``out``:

* ``run.json``: the model and options; a rerun must use the same ones.
* ``manifest/rank-NNNNN.jsonl``: one JSON line per finished clip (``done`` or ``skipped``),
  appended after its pyramid is written and synced, so a killed run loses no finished clip and
  a rerun repeats none. Files and lines are written by one writer thread, in the order the clips
  were analysed, while the next batch is analysed.
* ``pyramids/<name>.fxcfp``: one saved pyramid per clip (:func:`fxcfp.load_pyramid`).
* ``aggregate/``: written by rank 0 from every rank's tallies: ``kernel_class.parquet``,
  ``class_overlap.parquet``, ``classes.parquet``, ``classes/*.graphml`` and ``report.html``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .._analyzer import Analyzer
from .._files import dump_json
from .._io import load_pyramid, pyramid_state, write_state
from ..cli._spec import LoadedModel
from ._aggregate import Tally, write_aggregates
from ._items import DatasetError, Item, list_items

__all__ = ["DatasetOptions", "DatasetResult", "run_dataset"]

_FORMAT = "fxcfp-dataset"
_VERSION = 1


@dataclass(frozen=True)
class DatasetOptions:
    """How clips are read and analysed; a rerun into the same folder must keep them.

    Attributes:
        frames, size, start, normalization: as :func:`fxcfp.video.read_clip` takes them.
        threshold, max_depth, top_k: as :func:`fxcfp.analyze` takes them.
        share: a class pyramid keeps the kernels selected in at least this share of the
            class's clips.
        maps: map mode(s) whose layer maps each saved pyramid carries (``None``: none).
        use_labels: explain each clip's label (``False``: its top class).
    """

    frames: int
    size: int
    start: float | None
    normalization: str
    threshold: float
    max_depth: int | None
    top_k: int | None
    share: float = 0.5
    maps: str | None = None
    use_labels: bool = True


@dataclass(frozen=True)
class DatasetResult:
    """What a run did.

    Attributes:
        out: the output folder.
        clips: clips in the dataset.
        analysed: clips analysed by this run (all ranks).
        resumed: clips an earlier run had finished, skipped now.
        skipped: clips that could not be decoded (this run and earlier ones).
        seconds: wall time of the decode-and-analyse loop (the slowest rank).
        clips_per_second: ``analysed / seconds``.
        steady_clips_per_second: the same after each rank's first batch (its decode workers'
            start and the pipeline's fill left out): the rate a long run keeps.
        report: the aggregate report, ``None`` on a rank other than 0 or without any pyramid.
    """

    out: Path
    clips: int
    analysed: int
    resumed: int
    skipped: int
    seconds: float
    clips_per_second: float
    report: Path | None
    steady_clips_per_second: float = 0.0


# --- one process or many -------------------------------------------------------------------------


@dataclass(frozen=True)
class _World:
    rank: int
    size: int
    local_rank: int
    started: bool  # we initialised the process group, so we destroy it


def _world() -> _World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return _World(0, 1, 0, False)
    import torch.distributed as dist

    started = False
    if not dist.is_initialized():
        # gloo on CPU; NCCL where every rank has its GPU
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            # NCCL's object collectives stage on the current device: each rank on its own
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        started = True
    return _World(dist.get_rank(), dist.get_world_size(),
                  int(os.environ.get("LOCAL_RANK", "0")), started)


def _barrier(world: _World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def _gather(world: _World, value: Any) -> list[Any]:
    if world.size == 1:
        return [value]
    import torch.distributed as dist

    found: list[Any] = [None] * world.size
    dist.all_gather_object(found, value)
    return found


class _Shard(DistributedSampler):
    """:class:`DistributedSampler` without its padding: a clip is analysed by one rank only."""

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)  # type: ignore[arg-type]
        positions = range(self.rank, self.total_size, self.num_replicas)
        return (index for position, index in zip(positions, super().__iter__())
                if position < size)

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]


# --- decoding --------------------------------------------------------------------------------------


class _Decode(Dataset):
    """Reads clips in the DataLoader's workers; a clip that fails comes back as its error."""

    def __init__(self, items: list[Item], options: DatasetOptions) -> None:
        self.items = items
        self.options = options

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        from ..video import read_clip

        item, o = self.items[index], self.options
        try:
            clip = read_clip(item.path, frames=o.frames, size=o.size, start=o.start,
                             normalization=o.normalization)
        except Exception as err:  # noqa: BLE001 - one bad clip is logged and skipped, never the run
            return index, None, " ".join(f"{type(err).__name__}: {err}".split())
        return index, clip.tensor, None


def _collate(batch: list[Any]) -> list[Any]:
    return batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # each worker decodes one clip; threads would only contend


# --- the manifest ----------------------------------------------------------------------------------


def _read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every finished clip of every rank's manifest; a torn last line (a killed write) is not a
    finished clip."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("rank-*.jsonl")):
        for line in path.read_bytes().split(b"\n"):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and "key" in record:
                found[record["key"]] = record
    return found


class _Manifest:
    """This rank's manifest: one line per clip, written in one call and synced."""

    def __init__(self, folder: Path, rank: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"rank-{rank:05d}.jsonl"
        if self.path.exists():
            data = self.path.read_bytes()
            if data and not data.endswith(b"\n"):  # a write cut short: drop the torn line
                with open(self.path, "r+b") as file:
                    file.truncate(data.rfind(b"\n") + 1)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record, allow_nan=False) + "\n").encode("utf-8"))
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class _Writer:
    """Writes saved pyramids and manifest lines on one thread, in the order they were handed
    over, so compression and syncing overlap the next batch's analysis.

    A clip's line follows its synced file, as without the thread. The first failure (a full
    disk) stops the writes: later jobs are dropped (their clips are not finished, a rerun does
    them) and the error is raised in the analysing thread at its next :meth:`put` or at
    :meth:`close`.
    """

    def __init__(self, manifest: _Manifest, depth: int) -> None:
        self.manifest = manifest
        # bounded: analysis never runs more than `depth` clips ahead of the disk
        self.jobs: queue.Queue[tuple[Path | None, Any, dict[str, Any]] | None] = queue.Queue(
            maxsize=max(1, depth))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="fxcfp-dataset-writer",
                                       daemon=True)
        self.thread.start()

    def put(self, path: Path | None, state: Any, record: dict[str, Any]) -> None:
        """Queue one clip: its pyramid ``state`` for ``path`` (``None``: a skipped clip, only
        the line), then its manifest ``record``."""
        self._raise()
        self.jobs.put((path, state, record))

    def close(self) -> None:
        """Finish every queued write; raise the first failure."""
        if self.thread.is_alive():
            self.jobs.put(None)
            self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _loop(self) -> None:
        failed = False
        while (job := self.jobs.get()) is not None:
            if failed:
                continue  # drain, so that put() never blocks on a stopped writer
            path, state, record = job
            try:
                if path is not None:
                    write_state(path, *state)
                self.manifest.append(record)
            except BaseException as err:  # noqa: BLE001 - handed to the analysing thread
                self.error, failed = err, True


def _check_run(out: Path, describe: dict[str, Any]) -> bool:
    """Compare with the run an earlier call left in ``out``; ``True`` when there is none."""
    path = out / "run.json"
    if not path.exists():
        return True
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"explain-dataset: cannot read '{path}' ({err}); remove it or use "
                           "another --out") from None
    if earlier.get("format") != _FORMAT or earlier.get("version") != _VERSION:
        raise DatasetError(f"explain-dataset: '{out}' holds another kind of run; use another "
                           "--out")
    differ = [k for k in describe if earlier.get(k) != describe[k]]
    if differ:
        key = differ[0]
        raise DatasetError(
            f"explain-dataset: '{out}' holds a run with other settings ({key}: "
            f"{earlier.get(key)!r} there, {describe[key]!r} now); rerun with the same model and "
            "options to resume it, or use another --out")
    return False


# --- the run -------------------------------------------------------------------------------------


def _batched_inputs(loaded: LoadedModel, clips: torch.Tensor) -> Any:
    if loaded.slowfast_alpha is None:
        return clips
    slow = torch.from_numpy(loaded.slow_frames(clips.shape[2])).to(clips.device)
    return [clips.index_select(2, slow), clips]


def _weights_checksum(model: torch.nn.Module) -> float:
    # the same spec gives the same weights on every rank and every rerun: checked, not hoped
    return float(sum(p.detach().double().sum().item() for p in model.parameters()))


def run_dataset(loaded: LoadedModel, source: str | os.PathLike[str], out: str | os.PathLike[str],
                options: DatasetOptions, *, batch_size: int = 4, workers: int = 2,
                device: torch.device | None = None, progress: bool = False,
                resolve: Callable[[str, str], int] | None = None) -> DatasetResult:
    """Explain every clip of ``source`` into ``out`` (see the module docstring).

    Args:
        loaded: the model and its class names.
        source: a folder of videos or a CSV of ``path,label``.
        out: the output folder; a rerun into it resumes.
        options: reading and analysis options.
        batch_size: clips per forward pass.
        workers: decode processes of the DataLoader (0: decode in this process).
        device: where to analyse (default: the model's device).
        progress: print progress with clips/s to stderr.
        resolve: label text -> class index (default: by index or class name).
    """
    world = _world()
    try:
        return _run(world, loaded, Path(source), Path(out), options, batch_size, workers,
                    device, progress, resolve)
    finally:
        if world.started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(world: _World, loaded: LoadedModel, source: Path, out: Path, options: DatasetOptions,
         batch_size: int, workers: int, device: torch.device | None, progress: bool,
         resolve: Callable[[str, str], int] | None) -> DatasetResult:
    model = loaded.model
    analyzer = Analyzer(model)
    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    # one clip of zeros: the number of classes, and the trace done before the clock starts
    probe = torch.zeros(1, 3, options.frames, options.size, options.size, device=device)
    probe_inputs = _batched_inputs(loaded, probe)
    num_classes = int(analyzer.analyze_batch(probe_inputs, threshold=options.threshold,
                                             max_depth=0)[0].logits.numel())
    if resolve is None:
        resolve = _default_resolver(loaded.labels, num_classes)
    items = list_items(source, resolve, use_labels=options.use_labels)
    describe = {"format": _FORMAT, "version": _VERSION, "model": loaded.name,
                "weights": _weights_checksum(model), "options": asdict(options)}
    fresh = _check_run(out, describe)
    finished = _read_manifest(out / "manifest")
    _barrier(world)  # every rank has read the manifests before any rank writes
    if world.rank == 0 and fresh:
        out.mkdir(parents=True, exist_ok=True)
        dump_json(describe, out / "run.json")
    (out / "pyramids").mkdir(parents=True, exist_ok=True)
    pending = [item for item in items if item.key not in finished]
    manifest = _Manifest(out / "manifest", world.rank)
    writer = _Writer(manifest, depth=2 * batch_size)
    dataset = _Decode(pending, options)
    sampler = _Shard(dataset, num_replicas=world.size, rank=world.rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=_collate, worker_init_fn=_worker_init,
                        pin_memory=device.type == "cuda",
                        prefetch_factor=2 if workers > 0 else None)
    tally: Tally | None = None
    analysed = skipped = 0
    total = len(sampler)
    prefix = f"fxcfp: rank {world.rank}: " if world.size > 1 else "fxcfp: "
    started = last = time.perf_counter()
    first: tuple[float, int] | None = None  # when the first batch was done, and its clips
    try:
        for batch in loader:
            good = [(i, clip) for i, clip, error in batch if error is None]
            for i, _, error in batch:
                if error is not None:
                    item = pending[i]
                    print(f"{prefix}skipped {item.key}: {error}", file=sys.stderr, flush=True)
                    writer.put(None, None, {"key": item.key, "status": "skipped",
                                            "error": error})
                    skipped += 1
            if good:
                clips = torch.stack([clip for _, clip in good]).to(device, non_blocking=True)
                pyramids = analyzer.analyze_batch(
                    _batched_inputs(loaded, clips), [pending[i].label for i, _ in good],
                    threshold=options.threshold, max_depth=options.max_depth,
                    top_k=options.top_k)
                for (i, _), pyramid in zip(good, pyramids):
                    item = pending[i]
                    file = f"pyramids/{item.name}.fxcfp"
                    # the state here (maps run the model), the compression and disk on the writer
                    state = pyramid_state(pyramid, maps=options.maps)
                    if tally is None:
                        tally = Tally.like(pyramid)
                    tally.add(pyramid)
                    writer.put(out / file, state, {
                        "key": item.key, "status": "done", "file": file, "label": item.label,
                        "target": pyramid.target, "probability": pyramid.probability})
                    analysed += 1
            now = time.perf_counter()
            if first is None:
                first = (now, analysed)
            if progress and (now - last > 2 or analysed + skipped == total):
                last = now
                rate = analysed / max(now - started, 1e-9)
                print(f"{prefix}{analysed + skipped}/{total} clips, {rate:.2f} clips/s, "
                      f"{skipped} skipped", file=sys.stderr, flush=True)
        writer.close()
    finally:
        try:
            writer.close()  # an error of the loop: what was analysed is still written
        finally:
            manifest.close()
    ended = time.perf_counter()
    seconds = ended - started
    # the rate after the first batch; a rank with a single batch has none
    steady = ((analysed - first[1]) / max(ended - first[0], 1e-9)
              if first is not None and analysed > first[1] else None)
    # clips finished by earlier runs are tallied from their files, each by one rank
    for key, record in finished.items():
        if record.get("status") != "done" or zlib.crc32(key.encode()) % world.size != world.rank:
            continue
        pyramid = load_pyramid(out / record["file"])
        if tally is None:
            tally = Tally.like(pyramid)
        tally.add(pyramid)
    stats = _gather(world, (tally, analysed, skipped, seconds, steady))
    earlier_skips = sum(r.get("status") == "skipped" for r in finished.values())
    all_analysed = sum(s[1] for s in stats)
    slowest = max(s[3] for s in stats)
    report = None
    if world.rank == 0:
        merged: Tally | None = None
        for shard, *_ in stats:
            if shard is None:
                continue
            if merged is None:
                merged = shard
            else:
                merged.merge(shard)
        if merged is not None:
            report = _write_outputs(merged, out / "aggregate", options, loaded.labels)
    _barrier(world)
    rates = [s[4] for s in stats]
    return DatasetResult(out=out, clips=len(items), analysed=all_analysed,
                         resumed=len(finished), skipped=sum(s[2] for s in stats) + earlier_skips,
                         seconds=slowest, clips_per_second=all_analysed / max(slowest, 1e-9),
                         report=report,
                         steady_clips_per_second=(sum(rates) if None not in rates else 0.0))


def _write_outputs(tally: Tally, folder: Path, options: DatasetOptions,
                   labels: tuple[str, ...] | None) -> Path:
    drawn = write_aggregates(tally, folder, share=options.share, labels=labels)
    from ..render.dataset_report import write_dataset_report

    return write_dataset_report(drawn, tally, folder)


def _default_resolver(labels: tuple[str, ...] | None, num_classes: int
                      ) -> Callable[[str, str], int]:
    names = {" ".join(n.replace("_", " ").lower().split()): i
             for i, n in enumerate(labels or ())}

    def resolve(text: str, where: str) -> int:
        key = " ".join(text.replace("_", " ").lower().split())
        if key in names:
            return names[key]
        if text.lstrip("+-").isdigit() and 0 <= int(text) < num_classes:
            return int(text)
        known = (f"its classes are named, e.g. {', '.join(repr(n) for n in labels[:3])}"
                 if labels else f"it has {num_classes} classes, 0..{num_classes - 1}")
        raise DatasetError(
            f"explain-dataset: the label {text!r} of {where} is not a class of the model "
            f"({known}). Hint: fix the label, or pass --no-labels to explain each clip's top "
            "class")
    return resolve


def explain_dataset(model: torch.nn.Module, source: str | os.PathLike[str],
                    out: str | os.PathLike[str], *, labels: tuple[str, ...] | None = None,
                    frames: int = 16, size: int = 112, start: float | None = None,
                    normalization: str = "kinetics", threshold: float = 0.6,
                    max_depth: int | None = None, top_k: int | None = 3, share: float = 0.5,
                    maps: str | None = None, use_labels: bool = True, batch_size: int = 4,
                    workers: int = 2, progress: bool = False) -> DatasetResult:
    """Explain every clip of a folder of videos (labels from class sub-folders) or of a CSV of
    ``path,label`` into ``out``: one saved pyramid per clip, a resumable manifest, and the
    per-class aggregates with their report (see :mod:`fxcfp.dataset`). Under ``torchrun`` each
    rank takes its shard and rank 0 merges.

    Args:
        model: the classifier; it is never changed.
        source: the folder or CSV.
        out: the output folder; calling again with it resumes.
        labels: class names in output order (labels may then be names).
        frames, size, start, normalization: how clips are read (:func:`fxcfp.video.read_clip`).
        threshold, max_depth, top_k: as :func:`fxcfp.analyze` takes them (``top_k`` 3 keeps
            the class pyramids' edge tallies small, as the command line does).
        share: the share of a class's clips a kernel needs to be in its class pyramid.
        maps: map mode whose layer maps every saved pyramid carries.
        use_labels: ``False`` explains each clip's top class.
        batch_size: clips per forward pass.
        workers: decode processes.
        progress: print progress with clips/s.

    Returns:
        What the run did, with its throughput.
    """
    loaded = LoadedModel(model=model, name=type(model).__name__, kind="import",
                         normalization=normalization, labels=labels, frames=frames, size=size,
                         trained=None)
    options = DatasetOptions(frames=frames, size=size, start=start,
                             normalization=normalization, threshold=threshold,
                             max_depth=max_depth, top_k=top_k, share=share, maps=maps,
                             use_labels=use_labels)
    return run_dataset(loaded, source, out, options, batch_size=batch_size, workers=workers,
                       progress=progress)
