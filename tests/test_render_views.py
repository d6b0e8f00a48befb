"""render_pyramid: every level drawn over the right frames and written in every format."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from fake_pyramid import FakePyramid, frames_for  # tests/ is on sys.path under pytest
from PIL import Image

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render import RenderResult, overlay, pyramid_figure, render_pyramid
from fxcfp.render._common import figure_title, level_caption


def test_every_level_is_written_in_every_format(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=3, shapes=((6, 16, 20),))
    frames = frames_for((6, 16, 20))
    result = render_pyramid(pyramid, tmp_path / "out", frames=frames, alpha=0.6, cmap="viridis")
    assert isinstance(result, RenderResult)
    assert [level.layer for level in result.levels] == [layer.name for layer in pyramid.layers]
    assert all(path.is_file() for path in result.files)
    for layer, level in zip(pyramid.layers, result.levels, strict=True):
        expected = overlay(
            frames, pyramid.layer_map(layer.name, upsample=True), alpha=0.6, cmap="viridis"
        )
        assert len(level.frames) == 6
        assert np.array_equal(np.asarray(Image.open(level.frames[2])), expected[2])
        with Image.open(level.gif) as gif:
            assert gif.n_frames == 6 and gif.size == (20, 16)
        with av.open(str(level.mp4)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 6
        heat = pyramid.layer_map(layer.name, upsample=True).sum(dim=(1, 2))
        assert level.peak_frame == int(heat.argmax())
    with Image.open(result.contact_sheet) as sheet, Image.open(result.pyramid) as figure:
        assert sheet.width > 6 and figure.height > 3 * 16


def test_formats_and_max_levels_limit_what_is_written(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=4)
    result = render_pyramid(
        pyramid, tmp_path, frames=frames_for((8, 32, 32)), formats=("gif",), max_levels=2
    )
    assert len(result.levels) == 2
    assert all(level.frames == () and level.mp4 is None for level in result.levels)
    # spread from the class (first) to the deepest level (last)
    assert sorted(p.name for p in (tmp_path / "levels").iterdir()) == [
        f"{i:02d}_{pyramid.layers[i].name}.gif" for i in (0, 3)
    ]


def test_a_normalised_clip_is_drawn_like_its_frames(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, shapes=((4, 8, 8),))
    frames = frames_for((4, 8, 8))
    mean, std = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]
    clip = (torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225
    from_clip = render_pyramid(
        pyramid, tmp_path / "a", clip=clip, mean=mean, std=std, formats=("png",)
    )
    from_frames = render_pyramid(pyramid, tmp_path / "b", frames=frames, formats=("png",))
    for a, b in zip(from_clip.levels[0].frames, from_frames.levels[0].frames, strict=True):
        diff = np.asarray(Image.open(a)).astype(int) - np.asarray(Image.open(b))
        assert np.abs(diff).max() <= 1


def test_levels_are_drawn_over_their_own_inputs_frames(tmp_path: Path) -> None:
    # a two-input model: a fast pathway of 8 frames and a slow one of 4 smaller frames
    pyramid = FakePyramid(levels=4, shapes=((8, 16, 16), (4, 8, 8)))
    fast, slow = frames_for((8, 16, 16), seed=0), frames_for((4, 8, 8), seed=99)
    result = render_pyramid(pyramid, tmp_path, frames=[fast, slow], alpha=0.0, formats=("png",))
    assert [level.pathway for level in result.levels] == [0, 1, 0, 1]
    for level in result.levels:
        shown = np.stack([np.asarray(Image.open(p)) for p in level.frames])
        assert np.array_equal(shown, (fast, slow)[level.pathway])


def test_one_set_of_frames_serves_every_input(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, shapes=((8, 16, 16), (4, 8, 8)))
    result = render_pyramid(pyramid, tmp_path, frames=frames_for((8, 16, 16)), formats=("png",))
    # the slow pathway's 4 x 8 x 8 map is resampled to the frames it is drawn over
    assert len(result.levels[1].frames) == 8
    with Image.open(result.levels[1].frames[0]) as frame:
        assert frame.size == (16, 16)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({}, InvalidArgumentError, r"needs the pixels to draw over: pass either frames=\.\.\."),
        (
            {"frames": frames_for((8, 32, 32)), "clip": torch.zeros(3, 8, 32, 32)},
            InvalidArgumentError,
            "not both",
        ),
        (
            {"frames": frames_for((8, 32, 32)), "mean": [0.5] * 3},
            InvalidArgumentError,
            "do not apply to frames",
        ),
        (
            {"frames": frames_for((8, 32, 32)), "formats": ("png", "webm")},
            InvalidArgumentError,
            r"unknown format\(s\) \['webm'\]",
        ),
        (
            {"frames": frames_for((8, 32, 32)), "max_levels": 0},
            InvalidArgumentError,
            r"max_levels=0\) must be at least 1",
        ),
        (
            {"frames": frames_for((8, 32, 32)), "alpha": 2},
            InvalidArgumentError,
            r"render_pyramid\(alpha=2\)",
        ),
    ],
)
def test_bad_render_arguments_say_what_to_fix(tmp_path: Path, kwargs, error, words) -> None:
    with pytest.raises(error, match=words):
        render_pyramid(FakePyramid(levels=2), tmp_path, **kwargs)


def test_multi_input_pyramids_need_frames_for_every_input(tmp_path: Path) -> None:
    shapes = ((8, 16, 16), (4, 8, 8), (2, 8, 8))
    pyramid = FakePyramid(levels=3, shapes=shapes)
    two = [frames_for(shapes[0]), frames_for(shapes[1])]
    with pytest.raises(
        InvalidArgumentError, match="levels on 3 model inputs but frames/clips for 2"
    ):
        render_pyramid(pyramid, tmp_path, frames=two)


def test_something_that_is_not_a_pyramid_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidTypeError, match="takes an fxcfp Pyramid"):
        render_pyramid(object(), tmp_path, frames=frames_for((8, 32, 32)))


def test_levels_at_max_depth_are_skipped_and_the_root_is_drawn_plain(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=3, classifier=True, unexpanded=1)
    result = render_pyramid(pyramid, tmp_path, frames=frames_for((8, 32, 32)), formats=("gif",))
    assert [level.layer for level in result.levels] == [x.name for x in pyramid.layers[:-1]]
    assert result.skipped == (pyramid.layers[-1].name,)
    # the classifier's map has no location: a constant map, no mass, the middle frame shown
    root = result.levels[0]
    assert root.profile == (0.0,) * 8 and root.peak_frame == 4
    assert all(abs(sum(level.profile) - 1) < 1e-6 for level in result.levels[1:])


def test_a_pyramid_with_nothing_to_draw_says_why(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, unexpanded=2)
    with pytest.raises(InvalidArgumentError, match="raise max_depth"):
        render_pyramid(pyramid, tmp_path, frames=frames_for((8, 32, 32)))


def test_a_2d_models_maps_are_drawn_over_its_image(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, image=True, shapes=((1, 24, 24),))
    image = frames_for((1, 24, 24))
    result = render_pyramid(
        pyramid, tmp_path, clip=torch.from_numpy(image[0]).permute(2, 0, 1) / 255
    )
    level = result.levels[1]
    assert len(level.frames) == 1 and level.profile == (1.0,)
    expected = overlay(image[0], pyramid.layer_map(level.layer, upsample=True).numpy())
    assert np.array_equal(np.asarray(Image.open(level.frames[0])), expected)
    with Image.open(level.gif) as gif:
        assert gif.n_frames == 1


def _figure_from(result: RenderResult, pyramid: FakePyramid, note: str | None) -> np.ndarray:
    """pyramid.png rebuilt from each level's overlay on the one frame ``result.frame`` names."""
    index = {layer.name: i for i, layer in enumerate(pyramid.layers)}
    layer_of = {layer.name: layer for layer in pyramid.layers}
    levels = [(f"{level.layer}\n{level_caption(index[level.layer], layer_of[level.layer])}",
               level.drawn[result.frame[level.pathway]]) for level in result.levels]
    title = figure_title(pyramid, "evidence") + (f"\n{note}" if note else "")
    return pyramid_figure(levels, title=title)


def test_the_pyramid_figure_shows_every_level_on_one_named_frame(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=4, shapes=((8, 24, 24),))
    result = render_pyramid(pyramid, tmp_path, frames=frames_for((8, 24, 24)), formats=())
    together = np.sum([level.profile for level in result.levels], axis=0)
    assert result.frame == (int(np.argmax(together)),)
    # the fake's blobs brighten over time: the levels peak together on the last frame
    assert result.frame == (7,)
    figure = np.asarray(Image.open(result.pyramid))
    note = "all levels on frame t=7 of t=0..7 (where their maps together peak)"
    assert np.array_equal(figure, _figure_from(result, pyramid, note))


def test_an_image_models_pyramid_figure_names_no_frame(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=3, shapes=((1, 24, 24),), image=True)
    result = render_pyramid(pyramid, tmp_path, frames=frames_for((1, 24, 24)), formats=())
    assert result.frame == (0,)
    assert all(level.profile == (1.0,) for level in result.levels)
    figure = np.asarray(Image.open(result.pyramid))
    assert np.array_equal(figure, _figure_from(result, pyramid, None))
