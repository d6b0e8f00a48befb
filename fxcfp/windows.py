"""Long videos: slide the model's clip window over the whole video and explain every window.

The video is decoded once, as a stream (only one window's frames are held), cut into windows
of the model's clip length (``stride`` frames apart; by default they do not overlap), and the
windows are explained in groups with one batched analysis each. Per window the result keeps the
explained class, its probability and, per pyramid level, the temporal profile (the layer map's
mass per frame): which seconds of the video carry the evidence, at which level.

Example:
    >>> import torchvision
    >>> from fxcfp.data import sample_video
    >>> from fxcfp.windows import explain_windows
    >>> model = torchvision.models.video.r3d_18()
    >>> video = explain_windows(model, sample_video(), frames=8, size=56, stride=56)
    >>> [round(w.start_s, 2) for w in video.windows]  # 4 s at 29.97 fps, a window every 56 frames
    [0.0, 1.87, 3.74]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._defaults import THRESHOLD
from ._errors import InvalidArgumentError
from ._pyramid import MapMode, Pyramid

__all__ = ["Window", "WindowedVideo", "explain_windows", "spread_levels"]


@dataclass(frozen=True, eq=False)
class Window:
    """One window of the video and its explanation.

    Attributes:
        index: its position, from 0.
        first_frame: the video frame it starts at (counted from 0).
        frames: its frame indices in the video.
        start_s: time of its first frame, in seconds.
        end_s: time just after its last frame.
        target: the class explained.
        probability: its softmax probability.
        top: ``(class, probability)`` of the 5 best classes.
        profiles: per level (layer name), the temporal profile over the window's frames
            (sums to 1; zeros where the level has no location, e.g. a classifier's input).
    """

    index: int
    first_frame: int
    frames: tuple[int, ...]
    start_s: float
    end_s: float
    target: int
    probability: float
    top: tuple[tuple[int, float], ...]
    profiles: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class WindowedVideo:
    """Every window of a video, explained.

    Attributes:
        source: the video file.
        fps: its frame rate (``0`` when it does not say; times are then frame indices).
        frame_count: frames decoded.
        window: frames per window (the clip length).
        stride: frames from one window's start to the next.
        levels: the levels profiled, from the class down to the stem.
        windows: the windows, in order.
    """

    source: str
    fps: float
    frame_count: int
    window: int
    stride: int
    levels: tuple[str, ...]
    windows: tuple[Window, ...]

    def timeline(self, *, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The evidence over the video's time: ``(levels x frames)`` where each window adds its
        profile (scaled so a flat profile is 1) to the frames it covers, averaged where windows
        overlap; and the time in seconds of each frame. ``bins`` groups frames into that many
        columns (means)."""
        count = max((w.frames[-1] + 1 for w in self.windows), default=0)
        total = np.zeros((len(self.levels), count))
        cover = np.zeros(count)
        for w in self.windows:
            frames = np.asarray(w.frames)
            cover[frames] += 1
            for row, level in enumerate(self.levels):
                profile = w.profiles.get(level)
                if profile is not None:
                    total[row, frames] += profile * len(frames)
        values = np.divide(total, cover, out=np.zeros_like(total), where=cover > 0)
        times = np.arange(count) / self.fps if self.fps > 0 else np.arange(count, dtype=float)
        if bins is not None and 0 < bins < count:
            edges = np.linspace(0, count, bins + 1).round().astype(int)
            values = np.stack([values[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])],
                              axis=1)
            times = np.asarray([times[a] for a in edges[:-1]])
        return values, times

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of every window (what ``fxcfp explain --windows`` writes)."""
        return {
            "source": self.source, "fps": self.fps, "frame_count": self.frame_count,
            "window": self.window, "stride": self.stride, "levels": list(self.levels),
            "windows": [{
                "index": w.index, "first_frame": w.first_frame, "start_s": w.start_s,
                "end_s": w.end_s, "target": w.target, "probability": w.probability,
                "top": [list(t) for t in w.top],
                "profiles": {k: v.tolist() for k, v in w.profiles.items()},
            } for w in self.windows],
        }


def spread_levels(pyramid: Pyramid, count: int | None) -> tuple[str, ...]:
    """``count`` levels with maps, spread evenly from the class to the stem (all: ``None``)."""
    names = [level.name for level in pyramid.layers
             if pyramid._passing(pyramid._plan.layer_index(level.name)).kernel.size]
    if count is None or count >= len(names):
        return tuple(names)
    picks = np.linspace(0, len(names) - 1, count).round().astype(int)
    return tuple(names[i] for i in dict.fromkeys(picks.tolist()))


def _frames(path: Path, size: int, call: str) -> Iterator[np.ndarray]:
    """Every frame of the video, resized and centre-cropped as :func:`read_clip` does."""
    from .video import _iter_frames, _resize_crop

    chunk: list[np.ndarray] = []
    for _, _, frame in _iter_frames(path, call):
        chunk.append(frame.to_ndarray(format="rgb24"))
        if len(chunk) == 16:  # resize a few frames at a time: one interpolate call each
            yield from _resize_crop(np.stack(chunk), size, None)
            chunk = []
    if chunk:
        yield from _resize_crop(np.stack(chunk), size, None)


def _windows(frames: Iterator[np.ndarray], length: int, stride: int
             ) -> Iterator[tuple[int, np.ndarray]]:
    """``(first frame, length x H x W x 3)`` windows ``stride`` frames apart; a tail shorter
    than a window is left out."""
    buffer: list[np.ndarray] = []  # buffer[0] is frame `start`
    start = 0
    for index, frame in enumerate(frames):
        if index < start:
            continue  # a gap between windows (stride > length)
        buffer.append(frame)
        if len(buffer) == length:
            yield start, np.stack(buffer)
            start += stride
            del buffer[:stride]


def explain_windows(
    model: torch.nn.Module,
    video: str | os.PathLike[str],
    *,
    frames: int = 16,
    size: int = 112,
    stride: int | None = None,
    normalization: str | tuple[Sequence[float], Sequence[float]] = "kinetics",
    cls: int | None = None,
    threshold: float = THRESHOLD,
    max_depth: int | None = None,
    top_k: int | None = None,
    batch_size: int = 4,
    levels: int | None = 8,
    mode: MapMode = "paper",
    contrast: int | str | None = None,
    inputs: Callable[[torch.Tensor], Any] | None = None,
    on_window: Callable[[Window, Pyramid, np.ndarray], None] | None = None,
) -> WindowedVideo:
    """Explain every ``frames``-frame window of a whole video.

    Args:
        model: the classifier (never changed).
        video: the video file.
        frames: frames per window: the model's clip length.
        size: side of the square crop.
        stride: frames between window starts (default ``frames``: no overlap, no gap).
        normalization: as :func:`fxcfp.video.read_clip` takes it.
        cls: the class to explain in every window (default: each window's top class).
        threshold, max_depth, top_k: as :func:`fxcfp.analyze` takes them.
        batch_size: windows per batched analysis.
        levels: levels profiled, spread from the class to the stem (``None``: all).
        mode: the map mode the profiles are taken from (:meth:`fxcfp.Pyramid.layer_map`).
        contrast: explain "why the class and not this one" (:func:`fxcfp.analyze`).
        inputs: turns a batch ``N x 3 x T x H x W`` into the model's input (SlowFast's two
            pathways); default: the batch itself.
        on_window: called with each window, its pyramid and its uint8 frames (e.g. to draw the
            most confident window).

    Returns:
        The :class:`WindowedVideo`.

    Raises:
        VideoError: the file cannot be decoded, or is shorter than one window.
        InvalidArgumentError: a bad ``frames``, ``stride`` or ``batch_size``.
    """
    from ._analyzer import _cached_analyzer
    from .clip import normalize, resolve_normalization
    from .video import VideoError, _check_file, _stream_info

    call = "fxcfp.windows.explain_windows"
    for name, value in (("frames", frames), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{call}: {name} must be an integer >= 1, got {value!r}")
    stride = frames if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise InvalidArgumentError(
            f"{call}: stride must be a number of frames >= 1 (default: frames={frames}), got "
            f"{stride!r}")
    mean, std = resolve_normalization(normalization, call)
    path = _check_file(video, call, "a video")
    fps, _ = _stream_info(path, call)
    analyzer = _cached_analyzer(model, call)
    to_inputs = inputs or (lambda batch: batch)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    found: list[Window] = []
    chosen: tuple[str, ...] | None = None
    count = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal count
        for frame in _frames(path, size, call):
            count += 1
            yield frame

    def flush(group: list[tuple[int, np.ndarray]]) -> None:
        nonlocal chosen
        batch = normalize(np.stack([g[1] for g in group]), mean, std).to(device)
        pyramids = analyzer.analyze_batch(to_inputs(batch), cls, threshold=threshold,
                                          max_depth=max_depth, top_k=top_k, contrast=contrast)
        for (first, window_frames), pyramid in zip(group, pyramids):
            if chosen is None:
                chosen = spread_levels(pyramid, levels)
            mapped = [n for n in chosen if _has_map(pyramid, n)]
            pyramid.prefetch_maps(mapped, mode=mode)
            profiles = {n: pyramid.temporal_profile(n, mode=mode).numpy() for n in mapped}
            probabilities = torch.softmax(pyramid.logits.double(), 0)
            top = torch.topk(probabilities, min(5, probabilities.numel()))
            indices = tuple(range(first, first + frames))
            window = Window(
                index=len(found), first_frame=first, frames=indices,
                start_s=first / fps if fps > 0 else float(first),
                end_s=(first + frames) / fps if fps > 0 else float(first + frames),
                target=pyramid.target, probability=pyramid.probability,
                top=tuple(zip(top.indices.tolist(), top.values.tolist())), profiles=profiles)
            found.append(window)
            if on_window is not None:
                on_window(window, pyramid, window_frames)

    group: list[tuple[int, np.ndarray]] = []
    for item in _windows(counted(), frames, stride):
        group.append(item)
        if len(group) == batch_size:
            flush(group)
            group = []
    if group:
        flush(group)
    if not found:
        raise VideoError(
            f"{call}: '{path}' has {count} frame{'s' if count != 1 else ''}, fewer than one "
            f"window of frames={frames}. Hint: pass fewer frames, or explain it with "
            "fxcfp explain without --windows")
    return WindowedVideo(source=str(path), fps=fps, frame_count=count, window=frames,
                         stride=stride, levels=chosen or (), windows=tuple(found))


def _has_map(pyramid: Pyramid, layer: str) -> bool:
    try:
        index = pyramid._plan.layer_index(layer)
    except KeyError:
        return False
    return pyramid._passing(index).kernel.size > 0


def command(args: Any, loaded: Any, video: Path, out: Path, target: int | None,
            started: float, contrast: int | str | None = None) -> int:
    """``fxcfp explain VIDEO --windows``: the timeline report, ``windows.json`` and the most
    confident window's pyramid (``pyramid.fxcfp``, GraphML)."""
    import time

    from ._files import dump_json
    from .dataset._run import _batched_inputs
    from .render.timeline import write_timeline_report

    best: dict[str, Any] = {}

    def keep_best(window: Window, pyramid: Pyramid, _: np.ndarray) -> None:
        if not best or window.probability > best["window"].probability:
            best.update(window=window, pyramid=pyramid)

    result = explain_windows(
        loaded.model, video, frames=args.frames if args.frames is not None else loaded.frames,
        size=args.size if args.size is not None else loaded.size, stride=args.stride,
        normalization=args.normalization or loaded.normalization, cls=target,
        threshold=args.threshold, max_depth=args.depth, top_k=args.top_k,
        batch_size=args.batch, levels=args.levels, mode=getattr(args, "maps", "paper"),
        contrast=contrast, inputs=lambda batch: _batched_inputs(loaded, batch), on_window=keep_best)
    labels = loaded.labels
    pyramid = best["pyramid"]
    out.mkdir(parents=True, exist_ok=True)
    dump_json(result.to_json(), out / "windows.json")
    pyramid.save(out / "pyramid.fxcfp")
    pyramid.to_graphml(out / "pyramid.graphml")
    report = write_timeline_report(result, out, labels=labels, summary=pyramid.summary())

    def name(index: int) -> str:
        return labels[index] if labels and 0 <= index < len(labels) else f"class {index}"

    lines = [f"model      {loaded.name}",
             f"video      {video.name}, {result.frame_count} frames, {len(result.windows)} "
             f"windows of {result.window} frames, stride {result.stride}"]
    for w in result.windows:
        lines.append(f"{w.start_s:8.2f}-{w.end_s:<8.2f} {name(w.target)} {w.probability:.3f}")
    lines += ["", f"wrote      report.html (timeline), windows.json, the most confident window's "
              f"pyramid.fxcfp and pyramid.graphml (window {best['window'].index}) to {out} in "
              f"{time.perf_counter() - started:.1f} s", f"report     {report}"]
    print("\n".join(lines))
    return 0
