"""Heat maps over frames (overlay, colorize) and frames recovered from a clip (to_frames)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from fxcfp._errors import FxcfpError, InvalidArgumentError, InvalidInputError, InvalidTypeError
from fxcfp.render import colorize, overlay, to_frames


def _cmap_rgb(name: str, value: float) -> np.ndarray:
    """The colour matplotlib gives ``value``, as uint8 RGB."""
    return np.rint(np.array(matplotlib.colormaps[name](value)[:3]) * 255).astype(np.uint8)


def _frames(t: int = 4, h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_constant_map_gives_the_plain_blended_colour() -> None:
    frames = np.full((3, 4, 5, 3), 200, dtype=np.uint8)
    out = overlay(frames, np.zeros((3, 4, 5), np.float32), alpha=0.5, cmap="jet")
    expected = np.rint((200.0 + _cmap_rgb("jet", 0.0)) / 2).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5, 3)
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert (out == out[0, 0, 0]).all()


def test_alpha_zero_gives_the_frames_back_and_one_the_colours() -> None:
    frames = _frames()
    heat = np.random.default_rng(1).random((4, 6, 5))
    assert np.array_equal(overlay(frames, heat, alpha=0.0), frames)
    assert np.array_equal(overlay(frames, heat, alpha=1.0), colorize(heat))


def test_peak_shows_the_colormaps_top_colour() -> None:
    heat = np.zeros((2, 7, 7), np.float32)
    heat[1, 3, 4] = 1.0
    for cmap in ("jet", "viridis"):
        out = overlay(np.zeros((2, 7, 7, 3), np.uint8), heat, alpha=1.0, cmap=cmap)
        assert np.array_equal(out[1, 3, 4], _cmap_rgb(cmap, 1.0))
        assert np.array_equal(out[0, 0, 0], _cmap_rgb(cmap, 0.0))


def test_overlay_agrees_with_a_float_reference() -> None:
    frames = _frames(5, 9, 11, seed=2)
    heat = np.random.default_rng(3).random((5, 9, 11))
    table = matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255
    colour = np.rint(table[np.rint(heat * 255).astype(int)])
    for alpha in (0.1, 0.37, 0.5, 0.9):
        reference = (1 - alpha) * frames + alpha * colour
        out = overlay(frames, heat, alpha=alpha, cmap="inferno")
        assert np.abs(out - reference).max() <= 1.0


def test_single_frames_broadcast_over_time() -> None:
    frames = _frames(4)
    out = overlay(frames, np.full((6, 5), 0.5), alpha=0.5)
    assert out.shape == (4, 6, 5, 3)
    one_frame = overlay(frames[:1], np.random.default_rng(0).random((4, 6, 5)))
    assert one_frame.shape == (4, 6, 5, 3)
    image = overlay(frames[0], np.full((6, 5), 0.5))
    assert image.shape == (6, 5, 3)
    torch_heat = overlay(frames, torch.rand(4, 6, 5))
    assert torch_heat.shape == (4, 6, 5, 3)


def test_grey_frames_are_shown_in_colour() -> None:
    grey = np.full((2, 3, 3, 1), 80, np.uint8)
    assert overlay(grey, np.zeros((2, 3, 3)), alpha=0.0).shape == (2, 3, 3, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"alpha": 1.5}, InvalidArgumentError, r"alpha must lie in \[0, 1\]"),
        ({"alpha": -0.1}, InvalidArgumentError, r"alpha must lie in \[0, 1\]"),
        ({"alpha": "half"}, InvalidTypeError, "alpha=...\\) takes a number"),
        ({"cmap": "no-such-map"}, InvalidArgumentError, "unknown colormap cmap='no-such-map'"),
        ({"heat": np.zeros((4, 5, 5))}, InvalidArgumentError, "does not match frames"),
        ({"heat": np.zeros((3, 6, 5))}, InvalidArgumentError, "same T"),
        ({"heat": np.full((4, 6, 5), 2.0)}, InvalidArgumentError, r"heat must lie in \[0, 1\]"),
        ({"heat": np.full((4, 6, 5), np.nan)}, InvalidArgumentError, "NaN"),
        ({"heat": np.zeros((1, 4, 6, 5))}, InvalidArgumentError, "T x H x W"),
        ({"frames": np.zeros((4, 6, 5, 3))}, InvalidTypeError, "uint8 frames"),
        ({"frames": np.zeros((4, 6, 5, 4), np.uint8)}, InvalidArgumentError, "T x H x W x 3"),
    ],
)
def test_bad_overlay_arguments_say_what_to_fix(kwargs, error, words) -> None:
    arguments = {"frames": _frames(), "heat": np.zeros((4, 6, 5))} | kwargs
    frames, heat = arguments.pop("frames"), arguments.pop("heat")
    with pytest.raises(error, match=words) as caught:
        overlay(frames, heat, **arguments)
    assert isinstance(caught.value, FxcfpError)


def test_to_frames_undoes_normalisation() -> None:
    frames = _frames(3, 8, 8)
    mean, std = [0.43, 0.39, 0.37], [0.23, 0.22, 0.21]
    pixels = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
    clip = (pixels - torch.tensor(mean)[:, None, None, None]) / torch.tensor(std)[
        :, None, None, None
    ]
    assert np.abs(to_frames(clip, mean, std).astype(int) - frames).max() <= 1
    assert np.abs(to_frames(clip[None], mean, std).astype(int) - frames).max() <= 1
    # a clip on the 0-255 scale, and one image
    assert np.array_equal(to_frames(pixels * 255, value_range=255), frames)
    assert np.array_equal(to_frames(pixels[:, 0]), frames[:1])


def test_to_frames_shows_one_channel_as_grey() -> None:
    grey = to_frames(torch.full((1, 2, 4, 4), 0.5))
    assert grey.shape == (2, 4, 4, 3)
    assert (grey == 128).all()


@pytest.mark.parametrize(
    ("clip", "kwargs", "error", "words"),
    [
        (torch.zeros(2, 2, 4, 4), {}, InvalidInputError, r"1 \(grey\) or 3 \(RGB\) channels"),
        (torch.zeros(4, 4), {}, InvalidInputError, "C x T x H x W"),
        (torch.zeros(3, 4, 4), {"value_range": 0}, InvalidArgumentError, "positive number"),
        (torch.full((3, 2, 4, 4), float("nan")), {}, InvalidInputError, "NaN"),
        (torch.zeros(3, 2, 4, 4), {"mean": [0.5, 0.5]}, InvalidArgumentError, "has 2 values"),
        (torch.zeros(3, 2, 4, 4), {"std": 0.0}, InvalidArgumentError, "std=...\\) has a zero"),
        ([[0.0]], {}, InvalidTypeError, "torch.Tensor or numpy array"),
    ],
)
def test_bad_clips_say_what_to_fix(clip, kwargs, error, words) -> None:
    with pytest.raises(error, match=words):
        to_frames(clip, **kwargs)
