"""The contact sheet and the pyramid figure: sizes, tiles where they belong, the pyramid's shape."""

from __future__ import annotations

import numpy as np
import pytest

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render import contact_sheet, pyramid_figure

# colours that neither the white background nor the grey/blue lines and text use
_COLOURS = [(250, 0, 0), (0, 200, 0), (0, 0, 250), (250, 0, 250)]


def _solid(colour: tuple[int, int, int], t: int, h: int, w: int) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (t, h, w, 3)).copy()


def _count(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((image == np.array(colour, np.uint8)).all(axis=-1).sum())


def test_contact_sheet_holds_every_sampled_tile() -> None:
    rows = [(f"layer{i}.conv", _solid(c, 16, 20, 30)) for i, c in enumerate(_COLOURS[:3])]
    sheet = contact_sheet(rows, columns=4)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[0] >= 3 * 20 and sheet.shape[1] >= 4 * 30
    for _, frames in rows:
        assert _count(sheet, tuple(frames[0, 0, 0])) == 4 * 20 * 30


def test_contact_sheet_samples_frames_evenly_from_first_to_last() -> None:
    frames = np.zeros((9, 4, 4, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(9)[:, None, None] * 20 + 10
    sheet = contact_sheet([("conv", frames)], columns=3)
    # tile pixels are pure red; the (grey) text has equal channels
    tiles = sheet[(sheet[..., 1] == 0) & (sheet[..., 2] == 0)]
    reds = {int(v) for v in np.unique(tiles[:, 0])}
    assert reds == {10, 90, 170}


def test_contact_sheet_takes_fewer_columns_than_frames_and_mixed_sizes() -> None:
    rows = [("a", _solid(_COLOURS[0], 2, 10, 10)), ("b", _solid(_COLOURS[1], 3, 20, 20))]
    sheet = contact_sheet(rows, columns=8)
    # three columns (the longest row); the second row is resized to the first row's tiles
    assert _count(sheet, _COLOURS[0]) == 3 * 10 * 10
    assert _count(sheet, _COLOURS[1]) == 3 * 10 * 10


def test_pyramid_figure_widens_from_the_top_level_down() -> None:
    levels = [
        (f"level {i}\n{i + 1} kernels", _solid(c, 1, 24, 24)[0]) for i, c in enumerate(_COLOURS)
    ]
    figure = pyramid_figure(levels, title="class 3")
    assert figure.dtype == np.uint8 and figure.ndim == 3 and figure.shape[2] == 3
    widths, tops = [], []
    for colour in _COLOURS:
        mask = (figure == np.array(colour, np.uint8)).all(axis=-1)
        rows, cols = np.nonzero(mask)
        widths.append(cols.max() - cols.min() + 1)
        tops.append(rows.min())
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert tops == sorted(tops)


def test_pyramid_figure_of_one_level() -> None:
    figure = pyramid_figure([("only", _solid(_COLOURS[0], 1, 30, 40)[0])])
    assert _count(figure, _COLOURS[0]) > 0


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: contact_sheet([]), InvalidArgumentError, "at least one level"),
        (lambda: pyramid_figure([]), InvalidArgumentError, "at least one level"),
        (
            lambda: contact_sheet([("a", np.zeros((2, 4, 4, 3), np.uint8))], columns=0),
            InvalidArgumentError,
            r"columns=0\) must be at least 1",
        ),
        (
            lambda: contact_sheet([np.zeros((2, 4, 4, 3), np.uint8)]),
            InvalidTypeError,
            r"\(label: str, image\) pair",
        ),
        (
            lambda: pyramid_figure([("a", np.zeros((2, 4, 4, 3), np.uint8))]),
            InvalidArgumentError,
            "must be H x W x 3",
        ),
        (
            lambda: contact_sheet([("a", np.zeros((2, 4, 4, 3), np.float32))]),
            InvalidTypeError,
            "uint8 frames",
        ),
    ],
)
def test_bad_figure_arguments_say_what_to_fix(call, error, words) -> None:
    with pytest.raises(error, match=words):
        call()


def _ink_rows(image: np.ndarray, columns: slice) -> np.ndarray:
    """The rows of ``image`` where the given columns hold text (ink darker than light grey)."""
    return np.flatnonzero((image[:, columns].max(axis=-1) < 200).any(axis=1))


def test_labels_are_legible_at_full_size():
    # a capital's ink spans at least 11 px (the old 13 px font: 9 px, read as ~6 px in the docs)
    sheet = contact_sheet([("HH", np.full((4, 40, 40, 3), 255, np.uint8))], columns=2)
    rows = _ink_rows(sheet, slice(0, 30))
    assert rows.size and rows.max() - rows.min() + 1 >= 11
    figure = pyramid_figure([("HH", np.full((40, 40, 3), 255, np.uint8))])
    rows = _ink_rows(figure, slice(figure.shape[1] - 40, figure.shape[1]))
    assert rows.size and rows.max() - rows.min() + 1 >= 11


def test_an_image_models_contact_sheet_has_no_frame_numbers():
    white = np.full((2, 16, 16, 3), 255, np.uint8)
    one = contact_sheet([("a", white[:1])], columns=2)
    two = contact_sheet([("a", white)], columns=2)
    # the header row of "t=..." numbers is left out for one frame
    assert one.shape[0] < two.shape[0]
    assert _ink_rows(one, slice(one.shape[1] - 24, one.shape[1])).size == 0
    assert _ink_rows(two, slice(two.shape[1] - 24, two.shape[1])).size > 0
