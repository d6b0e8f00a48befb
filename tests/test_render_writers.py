"""PNG, GIF and MP4 files decode back to what was written."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageSequence

from fxcfp._errors import InvalidArgumentError
from fxcfp.render import gif_bytes, png_bytes, save_frames_png, save_gif, save_mp4, save_png


def _moving_square(t: int = 6, h: int = 24, w: int = 32) -> np.ndarray:
    """Frames that differ from one another (GIF merges identical neighbours)."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 2] = 60
    for i in range(t):
        frames[i, 4:12, 2 + 4 * i : 10 + 4 * i] = (250, 200, 20)
    return frames


def test_png_round_trips_exactly(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = save_png(image, tmp_path / "sub" / "still.png")
    assert np.array_equal(np.asarray(Image.open(path)), image)
    assert png_bytes(image).startswith(b"\x89PNG\r\n\x1a\n")


def test_save_frames_png_writes_one_file_per_frame(tmp_path: Path) -> None:
    frames = _moving_square(5)
    paths = save_frames_png(frames, tmp_path / "level", prefix="overlay")
    assert [p.name for p in paths] == [f"overlay_{i:03d}.png" for i in range(5)]
    assert all(
        np.array_equal(np.asarray(Image.open(p)), f) for p, f in zip(paths, frames, strict=True)
    )


def test_gif_decodes_with_every_frame_and_loops(tmp_path: Path) -> None:
    frames = _moving_square(6, 24, 32)
    path = save_gif(frames, tmp_path / "anim.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (32, 24)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 100
        decoded = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    # a handful of colours survive the shared palette exactly
    assert all(np.array_equal(d, f) for d, f in zip(decoded, frames, strict=True))
    assert gif_bytes(frames)[:6] == b"GIF89a"


def test_gif_of_many_colours_stays_close(tmp_path: Path) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(gif_bytes(frames))) as gif:
        assert gif.n_frames == 4
        first = np.asarray(gif.convert("RGB")).astype(int)
    assert np.abs(first - frames[0]).mean() < 20


@pytest.mark.parametrize(("h", "w"), [(24, 32), (21, 31)])
def test_mp4_decodes_with_every_frame(tmp_path: Path, h: int, w: int) -> None:
    frames = _moving_square(7, h, w)
    path = save_mp4(frames, tmp_path / "anim.mp4", fps=8)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    # odd sizes are padded to even ones for yuv420p
    assert len(decoded) == 7 and decoded[0].shape == (h + h % 2, w + w % 2, 3)
    error = np.abs(decoded[3][:h, :w].astype(int) - frames[3]).mean()
    assert error < 12


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda p: save_gif(_moving_square(), p / "a.gif", fps=0), r"fps must lie in \(0, 100\]"),
        (lambda p: save_mp4(_moving_square(), p / "a.mp4", fps=-1), "fps must lie in"),
        (lambda p: save_frames_png(_moving_square(), p, prefix="a/b"), "path separators"),
        (lambda p: png_bytes(_moving_square()), "one H x W x 3 image"),
        (lambda p: save_gif(np.zeros((0, 4, 4, 3), np.uint8), p / "a.gif"), "empty frames"),
    ],
)
def test_bad_writer_arguments_say_what_to_fix(tmp_path: Path, call, words) -> None:
    with pytest.raises(InvalidArgumentError, match=words):
        call(tmp_path)
