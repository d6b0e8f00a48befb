"""Reading a clip (or an image) into the tensor a model reads and the frames a person sees.

:func:`read_clip` decodes a video with PyAV, samples frames, resizes the short side, centre-crops a
square and normalises; the :class:`~fxcfp.clip.Clip` it returns keeps the uint8 frames of the same
crop, so a heat map computed on ``clip.tensor`` lies exactly over ``clip.frames``. The record, the
presets and the (de-)normaliser live in :mod:`fxcfp.clip` and are re-exported here.

Example:
    >>> from fxcfp.data import sample_video
    >>> from fxcfp.video import read_clip
    >>> clip = read_clip(sample_video(), frames=8, size=112)
    >>> clip.tensor.shape, clip.frames.shape
    (torch.Size([3, 8, 112, 112]), (8, 112, 112, 3))
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from fxcfp._errors import FxcfpError, VideoError
from fxcfp.clip import (
    NORMALIZATION,
    Clip,
    denormalize,
    normalize,
    resolve_normalization,
)

if TYPE_CHECKING:
    import av

__all__ = ["NORMALIZATION", "Clip", "VideoError", "denormalize", "read_clip", "read_image"]

_MIN_SIZE = 8


def _import_av(call: str) -> Any:
    try:
        import av
    except ImportError as err:
        raise FxcfpError(
            f"{call}: reading videos needs PyAV. Hint: pip install av (or pip install 'fxcfp[render]')."
        ) from err
    return av


_INTERPOLATION = ("bilinear", "bicubic")


def _is_side(value: object, size: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= size


def _check_size(size: object, resize: object, call: str, interpolation: object = "bilinear") -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < _MIN_SIZE:
        raise VideoError(
            f"{call}: size must be an integer >= {_MIN_SIZE} (the side of the square crop), "
            f"got {size!r}."
        )
    pair = (isinstance(resize, (tuple, list)) and len(resize) == 2
            and all(_is_side(v, size) for v in resize))
    if resize is not None and not (_is_side(resize, size) or pair):
        raise VideoError(
            f"{call}: resize (the short side before the crop) must be an integer >= size={size}, "
            f"an exact (height, width) pair of such integers, or None, got {resize!r}."
        )
    if interpolation not in _INTERPOLATION:
        raise VideoError(
            f"{call}: interpolation must be one of {', '.join(_INTERPOLATION)}, got "
            f"{interpolation!r}."
        )


def _resize_crop(
    frames: np.ndarray,
    size: int,
    resize: int | tuple[int, int] | None,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Resize ``T x H x W x 3`` uint8, then crop the centre ``size x size``.

    ``resize`` is the short side (default ``size``), or an exact ``(height, width)`` as
    torchvision's video transforms resize (r3d_18: 128 x 171, whatever the video's aspect).
    """
    height, width = frames.shape[1:3]
    if isinstance(resize, (tuple, list)):
        new_h, new_w = int(resize[0]), int(resize[1])
    else:
        short = size if resize is None else resize
        scale = short / min(height, width)
        new_h, new_w = max(short, round(height * scale)), max(short, round(width * scale))
    if (new_h, new_w) != (height, width):
        x = torch.tensor(frames).permute(0, 3, 1, 2).float()  # a copy: the array may be read-only
        # antialias: downscaling a 720p frame to 112 without it aliases fine texture
        x = F.interpolate(
            x, size=(new_h, new_w), mode=interpolation, align_corners=False, antialias=True
        )
        frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    top, left = (new_h - size) // 2, (new_w - size) // 2
    # a copy: the clip's frames must not share memory with the caller's array
    return np.array(frames[:, top : top + size, left : left + size], order="C", copy=True)


def _make_clip(
    frames: np.ndarray,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    *,
    fps: float,
    source: str,
    frame_indices: tuple[int, ...],
) -> Clip:
    # The tensor is computed from the uint8 frames, so denormalize(tensor) gives frames back.
    tensor = normalize(frames, mean, std)
    frames.setflags(write=False)
    return Clip(
        tensor=tensor,
        frames=frames,
        mean=mean,
        std=std,
        fps=fps,
        source=source,
        frame_indices=frame_indices,
    )


def _check_file(path: str | os.PathLike[str], call: str, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoError(
            f"{call}: no such file: '{path}'. Hint: check the path; fxcfp.data.sample_video() "
            "gives a bundled clip."
        )
    if not path.is_file():
        raise VideoError(f"{call}: '{path}' is not a file. Hint: pass the path of {what}.")
    return path


def _open_video(path: Path, call: str) -> tuple[Any, Any]:
    av = _import_av(call)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(
            f"{call}: cannot decode '{path}' as a video ({err.__class__.__name__}). Hint: pass a "
            "video file FFmpeg can read (mp4, avi, mkv, webm, ...)."
        ) from err
    if not container.streams.video:
        container.close()
        raise VideoError(
            f"{call}: '{path}' has no video stream. Hint: pass a video file, not audio or data."
        )
    stream = container.streams.video[0]
    # Frame-level threads decode several frames at once; the order we receive them is unchanged.
    stream.thread_type = "AUTO"
    return container, stream


def _iter_frames(path: Path, call: str
                 ) -> Generator[tuple[int, float | None, av.VideoFrame], None, None]:
    """Decode every frame in order: ``(index, presentation time in seconds or None, frame)``."""
    av = _import_av(call)
    container, stream = _open_video(path, call)
    try:
        for index, frame in enumerate(container.decode(stream)):
            yield index, frame.time, frame
    except av.error.FFmpegError as err:
        raise VideoError(
            f"{call}: '{path}' stopped decoding ({err.__class__.__name__}: {err}). Hint: the "
            "file may be truncated; re-encode it, e.g. ffmpeg -i in.mp4 out.mp4."
        ) from err
    finally:
        container.close()


def _stream_info(path: Path, call: str) -> tuple[float, int]:
    """Frame rate and the frame count the container announces (0 when it does not say)."""
    container, stream = _open_video(path, call)
    try:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return (float(rate) if rate else 0.0), int(stream.frames or 0)
    finally:
        container.close()


def _uniform_indices(count: int, frames: int) -> tuple[int, ...]:
    # Evenly spread and including the first and last frame; distinct because count >= frames.
    return tuple(int(i) for i in np.linspace(0, count - 1, frames).round().astype(np.int64))


def _collect(path: Path, wanted: set[int], call: str) -> tuple[dict[int, np.ndarray], int]:
    """Decode the whole video once; the RGB arrays of the ``wanted`` indices and the frame count."""
    picked: dict[int, np.ndarray] = {}
    count = 0
    for index, _, frame in _iter_frames(path, call):
        if index in wanted:
            picked[index] = frame.to_ndarray(format="rgb24")
        count = index + 1
    return picked, count


def _read_uniform(
    path: Path, frames: int, announced: int, call: str
) -> tuple[list[np.ndarray], tuple[int, ...]]:
    count = announced
    if count == 0:
        _, count = _collect(path, set(), call)
    # The announced count can be wrong (edit lists, variable frame rate): a second pass fixes it.
    for _ in range(2):
        if count < frames:
            raise VideoError(
                f"{call}: '{path}' has only {count} frame{'s' if count != 1 else ''}, fewer than "
                f"frames={frames}. Hint: ask for frames<={count}."
            )
        indices = _uniform_indices(count, frames)
        picked, decoded = _collect(path, set(indices), call)
        if decoded == count:
            return [picked[i] for i in indices], indices
        count = decoded
    raise VideoError(  # pragma: no cover - needs a file whose frame count changes between passes
        f"{call}: '{path}' decodes to a different number of frames on each pass. Hint: re-encode "
        "it, e.g. ffmpeg -i in.mp4 out.mp4."
    )


def _read_from(
    path: Path, frames: int, start: float, fps: float, call: str
) -> tuple[list[np.ndarray], tuple[int, ...]]:
    period = 1.0 / fps if fps > 0 else 0.0
    first_time: float | None = None
    last_time = 0.0
    picked: list[np.ndarray] = []
    indices: list[int] = []
    count = 0
    # closing: stopping early must still close the container the generator holds open
    with closing(_iter_frames(path, call)) as decoded:
        for index, time, frame in decoded:
            count = index + 1
            # Times count from the first frame, which need not be 0 in the container's clock.
            time = index * period if time is None else time
            first_time = time if first_time is None else first_time
            last_time = time - first_time
            if not picked and last_time < start - period / 2:
                continue  # before the frame nearest to `start`
            picked.append(frame.to_ndarray(format="rgb24"))
            indices.append(index)
            if len(picked) == frames:
                return picked, tuple(indices)
    if not picked:
        raise VideoError(
            f"{call}: start={start}s is past the end of '{path}' (its last frame is at "
            f"{last_time:.3f}s). Hint: use a start in [0, {last_time:.3f}]."
        )
    raise VideoError(
        f"{call}: '{path}' has only {len(picked)} frame{'s' if len(picked) != 1 else ''} from "
        f"start={start}s to its end ({count} in all), fewer than frames={frames}. Hint: use an "
        "earlier start or fewer frames."
    )


def read_clip(
    path: str | os.PathLike[str],
    *,
    frames: int = 16,
    size: int = 112,
    start: float | None = None,
    normalization: str | tuple[Sequence[float], Sequence[float]] = "kinetics",
    resize: int | tuple[int, int] | None = None,
    interpolation: str = "bilinear",
) -> Clip:
    """Decode a video into a :class:`Clip` of ``frames`` square frames.

    Frames are taken either spread evenly over the whole video (``start=None``: the first, the
    last and evenly spaced ones between) or consecutively from the frame nearest to ``start``
    seconds. Each frame's short side is resized to ``resize`` (default ``size``, so the crop keeps
    the whole short side) with antialiased bilinear filtering, then a ``size x size`` square is cut
    from the centre. The whole video is decoded (twice when sampling evenly, to count its frames),
    which is quick for clips of seconds, not for films.

    Args:
        path: The video file.
        frames: How many frames ``T`` to take, at least 1.
        size: Side of the square crop, at least 8.
        start: Seconds from the first frame where consecutive sampling begins; ``None`` samples
            evenly over the whole video.
        normalization: A preset of :data:`NORMALIZATION` (``"kinetics"`` suits torchvision's video
            models) or a ``(mean, std)`` pair of RGB triples for values in ``[0, 1]``.
        resize: Short side before the crop (``>= size``), or an exact ``(height, width)``:
            ``resize=(128, 171), size=112`` is what torchvision's ``R3D_18_Weights.transforms()``
            does.
        interpolation: ``"bilinear"`` (torchvision's presets) or ``"bicubic"`` (most of timm's),
            antialiased either way.

    Returns:
        The clip: ``tensor`` ``3 x T x size x size`` and the uint8 ``frames`` of the same crop.

    Raises:
        VideoError: Missing or undecodable file, too few frames, ``start`` past the end, or a bad
            option; the message says which and how to fix it.

    Example:
        >>> from fxcfp.data import sample_video
        >>> clip = read_clip(sample_video(), frames=4, size=64, start=1.0)
        >>> clip.frame_indices
        (30, 31, 32, 33)
    """
    call = "read_clip"
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise VideoError(f"{call}: frames must be an integer >= 1, got {frames!r}.")
    _check_size(size, resize, call, interpolation)
    mean, std = resolve_normalization(normalization, call)
    if start is not None:
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not start >= 0:
            raise VideoError(
                f"{call}: start must be a time in seconds >= 0 or None (even sampling), got "
                f"{start!r}."
            )
    path = _check_file(path, call, "a video")
    fps, announced = _stream_info(path, call)
    if start is None:
        decoded, indices = _read_uniform(path, frames, announced, call)
    else:
        decoded, indices = _read_from(path, frames, float(start), fps, call)
    # Frames of one stream share a size, so they stack and resize together.
    cropped = _resize_crop(np.stack(decoded), size, resize, interpolation)
    return _make_clip(cropped, mean, std, fps=fps, source=str(path), frame_indices=indices)


def _image_array(image: object, call: str) -> tuple[np.ndarray, str]:
    """An ``H x W x 3`` uint8 array and a source name from a path, a PIL image or an array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = _check_file(image, call, "an image")
        try:
            with Image.open(path) as opened:
                return np.array(opened.convert("RGB")), str(path)
        except (UnidentifiedImageError, OSError) as err:
            raise VideoError(
                f"{call}: cannot read '{path}' as an image ({err.__class__.__name__}). Hint: pass "
                "a PNG or JPEG file, or an H x W x 3 uint8 array."
            ) from err
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB")), "<array>"
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)  # grey: the same value in R, G and B
    elif array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]  # alpha says nothing a classifier reads
    if array.ndim != 3 or array.shape[2] != 3:
        raise VideoError(
            f"{call}: an image array must be H x W x 3 (or H x W grey), got shape "
            f"{array.shape}. Hint: move the channels last, e.g. array.transpose(1, 2, 0)."
        )
    if array.dtype == np.uint8:
        return array, "<array>"
    if (
        np.issubdtype(array.dtype, np.floating)
        and array.size
        and 0 <= array.min() <= array.max() <= 1
    ):
        return (array * 255).round().astype(np.uint8), "<array>"
    raise VideoError(
        f"{call}: an image array must be uint8 in [0, 255] or float in [0, 1], got "
        f"{array.dtype}. Hint: convert it, e.g. array.astype(np.uint8)."
    )


def read_image(
    image: str | os.PathLike[str] | np.ndarray,
    *,
    size: int = 224,
    normalization: str | tuple[Sequence[float], Sequence[float]] = "imagenet",
    resize: int | tuple[int, int] | None = None,
    interpolation: str = "bilinear",
) -> Clip:
    """Read an image into a one-frame :class:`Clip` (``tensor`` ``3 x 1 x size x size``).

    The same resize and centre crop as :func:`read_clip`. For a 2D model take
    ``clip.tensor[:, 0]``.

    Args:
        image: An image file, a PIL image, or an ``H x W x 3`` (or ``H x W``) array, uint8 or
            float in ``[0, 1]``.
        size: Side of the square crop, at least 8.
        normalization: A preset of :data:`NORMALIZATION` or a ``(mean, std)`` pair.
        resize: Short side before the crop (``>= size``), or an exact ``(height, width)``;
            ``resize=256, size=224`` is the usual ImageNet evaluation.
        interpolation: ``"bilinear"`` or ``"bicubic"``, antialiased.

    Returns:
        The one-frame clip, with ``fps = 0.0`` and ``frame_indices = (0,)``.

    Raises:
        VideoError: Missing or unreadable file, an array of the wrong shape or dtype, or a bad
            option.

    Example:
        >>> import numpy as np
        >>> read_image(np.zeros((300, 400, 3), np.uint8), size=224).tensor.shape
        torch.Size([3, 1, 224, 224])
    """
    call = "read_image"
    _check_size(size, resize, call, interpolation)
    mean, std = resolve_normalization(normalization, call)
    array, source = _image_array(image, call)
    cropped = _resize_crop(np.ascontiguousarray(array)[None], size, resize, interpolation)
    return _make_clip(cropped, mean, std, fps=0.0, source=source, frame_indices=(0,))
