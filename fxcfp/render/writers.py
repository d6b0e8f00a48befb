"""Frames to files: PNG stills, looping GIFs (Pillow) and H.264 MP4s (PyAV).

The ``*_bytes`` helpers return the encoded file instead of writing it, for embedding in HTML.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render.frames import check_frames

__all__ = ["save_png", "png_bytes", "save_frames_png", "save_gif", "gif_bytes", "save_mp4"]

# zlib level 1 writes heat-map frames ~5x faster than Pillow's default 6, for ~15% more bytes
_PNG_LEVEL = 1
# x264's "veryfast" keeps near-"medium" quality on a few small frames at a fraction of the time;
# one thread: a 16-frame 112 x 112 clip gives x264's frame threads nothing to share, and the
# levels are already encoded side by side in render's thread pool (-25% CPU, the same bytes)
_X264_OPTIONS = {"preset": "veryfast", "crf": "18", "threads": "1"}


def save_png(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write one ``H x W x 3`` ``uint8`` image as PNG and return its path.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "black.png"
        >>> save_png(np.zeros((4, 6, 3), np.uint8), out).name
        'black.png'
    """
    path = _prepare(path)
    path.write_bytes(png_bytes(image))
    return path


def png_bytes(image: np.ndarray) -> bytes:
    """Encode one ``H x W x 3`` ``uint8`` image as PNG."""
    pixels = _one_image(image, "png_bytes(image=...)")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=_PNG_LEVEL)
    return buffer.getvalue()


def save_frames_png(
    frames: np.ndarray, directory: str | os.PathLike[str], prefix: str = "frame"
) -> list[Path]:
    """Write each frame as ``<directory>/<prefix>_000.png``, ``..._001.png``, ...

    Args:
        frames: ``T x H x W x 3`` ``uint8`` frames.
        directory: Folder to write into; created when missing.
        prefix: File name stem before the frame number.

    Returns:
        The paths written, in frame order.
    """
    pixels = check_frames(frames, where="save_frames_png(frames=...)")
    if not prefix or os.sep in prefix or (os.altsep and os.altsep in prefix):
        raise InvalidArgumentError(
            f"save_frames_png(prefix={prefix!r}): the prefix must be a non-empty file name stem "
            "without path separators."
        )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(len(pixels) - 1)))
    paths = []
    for index, frame in enumerate(pixels):
        path = folder / f"{prefix}_{index:0{digits}d}.png"
        Image.fromarray(frame).save(path, format="PNG", compress_level=_PNG_LEVEL)
        paths.append(path)
    return paths


def save_gif(frames: np.ndarray, path: str | os.PathLike[str], *, fps: float = 8) -> Path:
    """Write frames as a GIF that loops forever and return its path.

    See :func:`gif_bytes` for how frames are encoded.
    """
    data = gif_bytes(frames, fps=fps)
    path = _prepare(path)
    path.write_bytes(data)
    return path


def gif_bytes(frames: np.ndarray, *, fps: float = 8) -> bytes:
    """Encode ``T x H x W x 3`` ``uint8`` frames as a GIF that loops forever.

    All frames share one 256-colour palette, found once over the whole clip (fast octree), which
    is both an order of magnitude faster than a palette per frame and free of palette flicker.
    GIF times frames in hundredths of a second, so ``fps`` is rounded to that grid. Like every
    Pillow GIF, consecutive identical frames are stored once with their durations added.

    Raises:
        InvalidArgumentError: ``fps`` is not positive, or the frames have the wrong shape.
    """
    pixels = check_frames(frames, where="gif_bytes(frames=...)")
    duration = _frame_ms(fps, "gif_bytes")
    count, height, width, _ = pixels.shape
    stacked = Image.fromarray(np.ascontiguousarray(pixels).reshape(count * height, width, 3))
    indexed = stacked.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette = indexed.getpalette()
    assert palette is not None  # quantize returns a "P" image, which has one
    indices = np.asarray(indexed)
    images = []
    for t in range(count):
        image = Image.fromarray(indices[t * height : (t + 1) * height])
        image.putpalette(palette)
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration,
        loop=0,
        optimize=False,
    )
    return buffer.getvalue()


def save_mp4(frames: np.ndarray, path: str | os.PathLike[str], *, fps: float = 8) -> Path:
    """Write frames as an H.264 (yuv420p) MP4 that browsers and players open, and return its path.

    yuv420p halves the chroma resolution, so odd widths or heights are padded by one pixel,
    repeating the edge.

    Raises:
        InvalidArgumentError: ``fps`` is not positive, or the frames have the wrong shape.
    """
    import av  # the render extra; imported here so PNG/GIF work without it

    pixels = check_frames(frames, where="save_mp4(frames=...)")
    _frame_ms(fps, "save_mp4")
    pad_h, pad_w = pixels.shape[1] % 2, pixels.shape[2] % 2
    if pad_h or pad_w:
        pixels = np.pad(pixels, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = _prepare(path)
    rate = _fps_fraction(fps)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width = pixels.shape[2]
        stream.height = pixels.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(_X264_OPTIONS)
        for frame in pixels:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def _one_image(image: object, where: str) -> np.ndarray:
    if isinstance(image, np.ndarray) and image.ndim == 2:
        image = image[..., None]
    pixels = check_frames(image, where=where)
    if pixels.shape[0] != 1:
        raise InvalidArgumentError(
            f"{where} takes one H x W x 3 image, got {pixels.shape[0]} frames. "
            "Hint: save_frames_png writes one PNG per frame."
        )
    return pixels[0]


def _frame_ms(fps: object, where: str) -> int:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"{where}(fps=...) takes a number, got {type(fps).__name__}.")
    if not 0 < float(fps) <= 100:
        raise InvalidArgumentError(f"{where}(fps={fps!r}): fps must lie in (0, 100].")
    # GIF stores delays in hundredths of a second
    return max(10, int(round(100.0 / float(fps))) * 10)


def _fps_fraction(fps: float) -> Fraction:
    # PyAV wants a rational frame rate; 29.97 and friends come out as 30000/1001
    return Fraction(float(fps)).limit_denominator(1001)


def _prepare(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path takes a str or os.PathLike, got {type(path).__name__}.")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
