from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from fxcfp._errors import FxcfpError
from fxcfp.data import sample_video
from fxcfp.video import NORMALIZATION, Clip, VideoError, denormalize, read_clip, read_image

# carphone_pristine.mp4: 120 frames of 176 x 144 at 30000/1001 fps.
_FRAMES = 120


@pytest.fixture(scope="module")
def carphone() -> Path:
    return sample_video("carphone_pristine")


def _value_range(clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(clip.mean).view(3, 1, 1, 1)
    std = torch.tensor(clip.std).view(3, 1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def test_read_clip_spreads_frames_over_the_whole_video(carphone: Path) -> None:
    clip = read_clip(carphone)
    assert clip.tensor.shape == (3, 16, 112, 112) and clip.tensor.dtype == torch.float32
    assert clip.frames.shape == (16, 112, 112, 3) and clip.frames.dtype == np.uint8
    assert clip.frame_indices[0] == 0 and clip.frame_indices[-1] == _FRAMES - 1
    assert set(np.diff(clip.frame_indices).tolist()) <= {7, 8}
    assert clip.fps == pytest.approx(30000 / 1001)
    assert clip.source == str(carphone)
    assert (clip.mean, clip.std) == NORMALIZATION["kinetics"]
    low, high = _value_range(clip)
    assert torch.all(clip.tensor >= low - 1e-6) and torch.all(clip.tensor <= high + 1e-6)
    assert clip.tensor.std() > 0.3  # a real picture, not a constant
    assert clip.batch.shape == (1, 3, 16, 112, 112)
    assert not clip.frames.flags.writeable


def test_read_clip_takes_consecutive_frames_from_start(carphone: Path) -> None:
    clip = read_clip(carphone, frames=4, size=64, start=1.0, normalization="imagenet")
    assert clip.frame_indices == (30, 31, 32, 33)  # 1.0 s at 29.97 fps is frame 30 (1.001 s)
    assert clip.tensor.shape == (3, 4, 64, 64) and clip.frames.shape == (4, 64, 64, 3)
    assert (clip.mean, clip.std) == NORMALIZATION["imagenet"]
    low, high = _value_range(clip)
    assert torch.all(clip.tensor >= low - 1e-6) and torch.all(clip.tensor <= high + 1e-6)


def test_both_samplings_decode_the_same_pixels(carphone: Path) -> None:
    spread = read_clip(carphone, frames=3, size=32)
    assert spread.frame_indices == (0, 60, 119)
    consecutive = read_clip(carphone, frames=1, size=32, start=60 * 1001 / 30000)
    assert consecutive.frame_indices == (60,)
    np.testing.assert_array_equal(consecutive.frames[0], spread.frames[1])


def test_resize_then_centre_crop(carphone: Path) -> None:
    clip = read_clip(carphone, frames=2, size=64, resize=80)
    assert clip.frames.shape == (2, 64, 64, 3)
    # An image whose short side already is `size` is only cropped: the pixels are the centre's.
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    cropped = read_image(image, size=40)
    np.testing.assert_array_equal(cropped.frames[0], image[:, 10:50])


@pytest.mark.parametrize("normalization", [*NORMALIZATION, ((0.1, 0.2, 0.3), (0.5, 0.6, 0.7))])
def test_denormalize_inverts_normalization(carphone: Path, normalization) -> None:
    clip = read_clip(carphone, frames=2, size=32, normalization=normalization)
    np.testing.assert_array_equal(denormalize(clip.tensor, clip.mean, clip.std), clip.frames)


def test_denormalize_clips_out_of_range_values() -> None:
    tensor = torch.tensor([-10.0, 0.0, 10.0]).view(3, 1, 1, 1).expand(3, 2, 1, 1)
    frames = denormalize(tensor, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert frames.shape == (2, 1, 1, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0].tolist() == [0, 128, 255]


def test_read_image_from_arrays_and_files(tmp_path: Path) -> None:
    chelsea = skimage.data.chelsea()
    clip = read_image(chelsea)
    assert clip.tensor.shape == (3, 1, 224, 224) and clip.frames.shape == (1, 224, 224, 3)
    assert (clip.fps, clip.frame_indices, clip.source) == (0.0, (0,), "<array>")
    assert (clip.mean, clip.std) == NORMALIZATION["imagenet"]
    path = tmp_path / "chelsea.png"
    Image.fromarray(chelsea).save(path)
    from_file = read_image(path)
    assert from_file.source == str(path)
    np.testing.assert_array_equal(from_file.frames, clip.frames)
    np.testing.assert_array_equal(read_image(chelsea / 255.0).frames, clip.frames)
    grey = read_image(chelsea[:, :, 0], size=16)
    assert np.all(grey.frames[..., 0] == grey.frames[..., 2])


def test_video_error_is_a_value_error_and_an_fxcfp_error() -> None:
    assert issubclass(VideoError, ValueError) and issubclass(VideoError, FxcfpError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        VideoError, match=r"read_clip: no such file: '.*nothere\.mp4'.*sample_video"
    ):
        read_clip(tmp_path / "nothere.mp4")
    with pytest.raises(VideoError, match="read_image: no such file"):
        read_image(tmp_path / "nothere.png")
    with pytest.raises(VideoError, match="is not a file"):
        read_clip(tmp_path)


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"certainly not a video " * 64)
    with pytest.raises(VideoError, match=r"cannot decode '.*notes\.mp4' as a video.*FFmpeg"):
        read_clip(path)
    with pytest.raises(VideoError, match=r"cannot read '.*notes\.mp4' as an image"):
        read_image(path)


def test_too_few_frames(carphone: Path) -> None:
    with pytest.raises(VideoError, match="has only 120 frames, fewer than frames=200.*frames<=120"):
        read_clip(carphone, frames=200, size=16)
    with pytest.raises(VideoError, match=r"has only 2 frames from start=3\.95s.*\(120 in all\)"):
        read_clip(carphone, frames=4, size=16, start=3.95)


def test_start_past_the_end(carphone: Path) -> None:
    with pytest.raises(
        VideoError, match=r"start=5\.0s is past the end of .*last frame is at 3\.97"
    ):
        read_clip(carphone, size=16, start=5.0)
    with pytest.raises(VideoError, match="start must be a time in seconds >= 0"):
        read_clip(carphone, start=-1.0)


@pytest.mark.parametrize("frames", [0, -3, 2.5, True])
def test_frames_must_be_positive(carphone: Path, frames) -> None:
    with pytest.raises(VideoError, match="frames must be an integer >= 1"):
        read_clip(carphone, frames=frames)


def test_size_must_be_at_least_8(carphone: Path) -> None:
    with pytest.raises(VideoError, match=r"read_clip: size must be an integer >= 8.*got 4"):
        read_clip(carphone, size=4)
    with pytest.raises(VideoError, match=r"read_image: size must be an integer >= 8"):
        read_image(np.zeros((32, 32, 3), np.uint8), size=7)
    with pytest.raises(VideoError, match="resize .* must be an integer >= size=64"):
        read_clip(carphone, size=64, resize=32)


def test_unknown_normalization_lists_the_presets(carphone: Path) -> None:
    with pytest.raises(
        VideoError, match="unknown normalization 'imagenet21k'.*imagenet, kinetics, pytorchvideo"
    ):
        read_clip(carphone, normalization="imagenet21k")
    with pytest.raises(VideoError, match="needs 3 means and 3 positive stds"):
        read_clip(carphone, normalization=((0.5, 0.5, 0.5), (0.5, 0.0, 0.5)))


def test_bad_arrays_and_tensors() -> None:
    with pytest.raises(VideoError, match=r"must be H x W x 3.*got shape \(3, 32, 32\)"):
        read_image(np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(VideoError, match="uint8 in \\[0, 255\\] or float in \\[0, 1\\]"):
        read_image(np.full((32, 32, 3), 300, np.int32))
    with pytest.raises(
        VideoError, match=r"denormalize: expected a 3 x T x H x W.*\(1, 3, 2, 8, 8\)"
    ):
        denormalize(torch.zeros(1, 3, 2, 8, 8), (0.5,) * 3, (0.5,) * 3)
