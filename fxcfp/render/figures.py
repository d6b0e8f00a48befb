"""Still figures: a contact sheet of every level over time, and the pyramid itself (Figure 1)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render.frames import check_frames

__all__ = ["contact_sheet", "pyramid_figure"]

_BACKGROUND = (255, 255, 255)
_INK = (32, 36, 48)
_MUTED = (110, 116, 130)
_PYRAMID_FILL = (214, 224, 240)
_PYRAMID_EDGE = (150, 165, 195)
_PAD = 8  # margin around everything, px
_GAP = 2  # between two tiles of the contact sheet, px
# text height in px: legible at 100% zoom (Pillow's bundled font; 16 px gives capitals ~11 px
# tall, 13 px -- the old size -- read as ~6 px once a README showed the figure at half width)
_FONT_SIZE = 16
_LINE_GAP = 5  # between two lines of text, px
# layer names of deep networks get long; the middle is the least telling part
_MAX_LABEL = 44
# the pyramid figure: the base tile's width is chosen so that the whole figure is about
# _PYRAMID_HEIGHT px tall, within [_MIN_BASE, _MAX_BASE]; the apex tile is _APEX_SCALE of it
_PYRAMID_HEIGHT = 1400
_MIN_BASE, _MAX_BASE = 160, 260
_APEX_SCALE = 0.35
_MIN_TILE_W, _MIN_TILE_H = 24, 16
_LINK = 14  # height of the trapezoid joining two levels, px
_CAP = 26  # height of the triangle over the apex, px
_LABEL_OFFSET = 3 * _PAD  # from a tile's right edge to its label


def contact_sheet(rows: Sequence[tuple[str, np.ndarray]], *, columns: int = 8,
                  title: str | None = None) -> np.ndarray:
    """Lay out pyramid levels as rows of frames: one row per level, frames left to right.

    Args:
        rows: ``(label, frames)`` pairs, top row first (the pyramid from the class down);
            ``frames`` are ``T x H x W x 3`` ``uint8``. Rows whose frames differ in size from
            the first row are resized to it.
        columns: How many frames to show per row, evenly spaced over the clip (fewer if the
            longest row has fewer frames).
        title: Lines drawn above the sheet (the class and the map mode, say); ``None``: none.

    Returns:
        The sheet as one ``H x W x 3`` ``uint8`` image, labels on the left.

    Example:
        >>> import numpy as np
        >>> sheet = contact_sheet([("layer4", np.zeros((16, 8, 8, 3), np.uint8))], columns=4)
        >>> sheet.ndim, sheet.shape[2]
        (3, 3)
    """
    checked = _check_rows(rows, "contact_sheet")
    title_lines = _title_lines(title, "contact_sheet")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)):
        raise InvalidTypeError(f"contact_sheet(columns=...) takes an int, got {columns!r}.")
    if columns < 1:
        raise InvalidArgumentError(f"contact_sheet(columns={columns}) must be at least 1.")
    tile_h, tile_w = checked[0][1].shape[1:3]
    lengths = {len(frames) for _, frames in checked}
    count = min(int(columns), max(lengths))
    font = _font()
    labels = [_shorten(label) for label, _ in checked]
    gutter = max(_text_width(label, font) for label in labels) + 2 * _PAD
    # frame numbers only mean the same thing down a column when every row has the same length;
    # an image model's rows have one frame, which needs no number
    numbered = len(lengths) == 1 and count > 1
    header = _FONT_SIZE + 2 * _PAD if numbered else _PAD
    banner = len(title_lines) * (_FONT_SIZE + _LINE_GAP) + (_PAD if title_lines else 0)
    header += banner
    width = gutter + count * (tile_w + _GAP) - _GAP + _PAD
    height = header + len(checked) * (tile_h + _GAP) - _GAP + _PAD
    sheet = np.full((height, width, 3), _BACKGROUND, dtype=np.uint8)
    for row, (_, frames) in enumerate(checked):
        picks = np.rint(np.linspace(0, len(frames) - 1, count)).astype(int)
        tiles = _resize(frames[picks], tile_h, tile_w)
        top = header + row * (tile_h + _GAP)
        for column, tile in enumerate(tiles):
            left = gutter + column * (tile_w + _GAP)
            sheet[top : top + tile_h, left : left + tile_w] = tile
    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(labels):
        middle = header + row * (tile_h + _GAP) + tile_h // 2
        draw.text((_PAD, middle), label, fill=_INK, font=font, anchor="lm")
    for line, text in enumerate(title_lines):
        draw.text((_PAD, _PAD // 2 + line * (_FONT_SIZE + _LINE_GAP)), text, fill=_INK,
                  font=font)
    if numbered:
        picks = np.rint(np.linspace(0, lengths.pop() - 1, count)).astype(int)
        for column, frame_index in enumerate(picks):
            centre = gutter + column * (tile_w + _GAP) + tile_w // 2
            draw.text(
                (centre, banner + (header - banner) // 2), f"t={frame_index}", fill=_MUTED,
                font=font, anchor="mm"
            )
    return np.asarray(canvas)


def pyramid_figure(
    levels: Sequence[tuple[str, np.ndarray]], *, title: str | None = None
) -> np.ndarray:
    """Draw the Class Feature Pyramid: one level per layer, the class-near layer on top.

    Each level shows its map over one frame (:func:`fxcfp.render.render_pyramid` draws every
    level on the same frame and says which in the title). Levels widen from top to bottom and are joined by
    trapezoids, so the figure reads as the paper's pyramid (Figure 1): the few class-specific
    kernels near the prediction at the apex, the many general ones near the input at the base.

    Args:
        levels: ``(label, image)`` pairs, top level first (deepest in the network, closest to the
            class); each image is ``H x W x 3`` ``uint8``. Labels may span several lines.
        title: Drawn above the apex (the class and the map mode, say; lines split on
            ``"\\n"``); ``None`` for none.

    Returns:
        The figure as one ``H x W x 3`` ``uint8`` image.

    Example:
        >>> import numpy as np
        >>> levels = [(f"layer{i}", np.zeros((8, 8, 3), np.uint8)) for i in (4, 3, 2)]
        >>> pyramid_figure(levels, title="class 7").shape[2]
        3
    """
    checked = _check_rows(levels, "pyramid_figure", single=True)
    title_lines = _title_lines(title, "pyramid_figure")
    count = len(checked)
    aspect = checked[-1][1].shape[0] / checked[-1][1].shape[1]
    # the apex level is a third of the base; widths grow linearly down the pyramid
    scales = [1.0] if count == 1 else [
        _APEX_SCALE + (1 - _APEX_SCALE) * i / (count - 1) for i in range(count)]
    base = int(min(_MAX_BASE, max(_MIN_BASE, _PYRAMID_HEIGHT / (aspect * sum(scales)))))
    widths = [max(_MIN_TILE_W, int(round(base * s))) for s in scales]
    heights = [max(_MIN_TILE_H, int(round(w * aspect))) for w in widths]
    font = _font()
    # the first line (a layer name) is cut to fit; the lines below it are drawn whole
    labels = []
    for label, _ in checked:
        lines = label.splitlines() or [""]
        labels.append("\n".join([_shorten(lines[0]), *lines[1:]]))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(int(probe.multiline_textbbox((0, 0), label, font=font)[2]) for label in labels)
    link = _LINK
    apex = 0 if not title_lines else (len(title_lines) * (_FONT_SIZE + _LINE_GAP) + 2 * _PAD
                                      + _CAP - 2)
    # the title may be wider than the pyramid and its labels
    title_w = max((_text_width(line, font) for line in title_lines), default=0)
    width = max(2 * _PAD + base + _LABEL_OFFSET + label_w + _PAD, title_w + 2 * _PAD)
    height = _PAD + apex + sum(heights) + link * (count - 1) + _PAD
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    centre = 2 * _PAD + base // 2
    label_x = 2 * _PAD + base + _LABEL_OFFSET
    top = _PAD + apex
    if title_lines:
        half = widths[0] // 2
        draw.polygon(
            [(centre, top - _CAP), (centre - half, top - 2), (centre + half, top - 2)],
            fill=_PYRAMID_FILL,
            outline=_PYRAMID_EDGE,
        )
        # left-aligned at the margin: a long title never runs off a narrow pyramid
        for line, text in enumerate(title_lines):
            draw.text((_PAD, _PAD + line * (_FONT_SIZE + _LINE_GAP)), text, fill=_INK,
                      font=font)
    for index, ((_, image), label) in enumerate(zip(checked, labels, strict=True)):
        w, h = widths[index], heights[index]
        left = centre - w // 2
        if index > 0:
            # the trapezoid that joins this level to the narrower one above it
            above = widths[index - 1]
            draw.polygon(
                [
                    (centre - above // 2, top - link),
                    (centre + above // 2, top - link),
                    (left + w, top),
                    (left, top),
                ],
                fill=_PYRAMID_FILL,
                outline=_PYRAMID_EDGE,
            )
        tile = _resize(image[None], h, w)[0]
        canvas.paste(Image.fromarray(tile), (left, top))
        draw.rectangle([left - 1, top - 1, left + w, top + h], outline=_PYRAMID_EDGE)
        middle = top + h // 2
        draw.line([(left + w + 3, middle), (label_x - 4, middle)], fill=_PYRAMID_EDGE, width=1)
        draw.multiline_text((label_x, middle), label, fill=_INK, font=font, anchor="lm",
                            spacing=_LINE_GAP)
        top += h + link
    return np.asarray(canvas)


def _check_rows(rows: object, where: str, *, single: bool = False) -> list[tuple[str, np.ndarray]]:
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise InvalidTypeError(
            f"{where} takes a list of (label, image) pairs, got {type(rows).__name__}."
        )
    if not rows:
        raise InvalidArgumentError(f"{where} needs at least one level, got an empty list.")
    checked = []
    for position, row in enumerate(rows):
        if not (isinstance(row, (tuple, list)) and len(row) == 2 and isinstance(row[0], str)):
            raise InvalidTypeError(
                f"{where}: entry {position} must be a (label: str, image) pair, got {row!r:.80}."
            )
        label, pixels = row
        if single and not (isinstance(pixels, np.ndarray) and pixels.ndim == 3):
            raise InvalidArgumentError(
                f"{where}: the image of level {label!r} must be H x W x 3, got "
                f"{getattr(pixels, 'shape', type(pixels).__name__)}."
            )
        frames = check_frames(pixels, where=f"{where} (level {label!r})")
        checked.append((label, frames[0] if single else frames))
    return checked


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """``frames`` (``N x h x w x 3``) resized to ``height x width``; a no-op when they match."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack(
        [
            np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))
            for frame in frames
        ]
    )


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: the same text on every machine, no font files to find
    return ImageFont.load_default(size=_FONT_SIZE)


def _text_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _title_lines(title: str | None, where: str) -> list[str]:
    if title is None:
        return []
    if not isinstance(title, str):
        raise InvalidTypeError(f"{where}(title=...) takes a str, got {type(title).__name__}.")
    return title.splitlines()


def _shorten(text: str) -> str:
    if len(text) <= _MAX_LABEL:
        return text
    keep = (_MAX_LABEL - 1) // 2
    return f"{text[:keep]}…{text[-keep:]}"
