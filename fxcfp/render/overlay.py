"""Heat maps drawn over frames: a matplotlib colormap, alpha-blended in integer arithmetic."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render._common import check_alpha, check_cmap, lookup_table
from fxcfp.render.frames import check_frames

__all__ = ["overlay", "colorize"]

# values further outside [0, 1] than this are a caller's mistake, not float rounding
_RANGE_SLACK = 1e-4


def overlay(
    frames: np.ndarray,
    heat: np.ndarray | torch.Tensor,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Draw a heat map over frames.

    ``heat`` is coloured with a matplotlib colormap and blended as
    ``(1 - alpha) * frames + alpha * colour``. The whole clip is coloured at once through a
    256-entry lookup table, so a 16-frame clip costs a few milliseconds.

    Args:
        frames: ``T x H x W x 3`` ``uint8`` frames (``H x W x 3`` for one frame).
        heat: ``T x H x W`` map with values in ``[0, 1]`` (``H x W`` for one frame). Either side
            may have one frame, which is then repeated over the other's frames.
        alpha: Weight of the colour, in ``[0, 1]``: 0 gives the frames back, 1 the colour alone.
        cmap: Name of a matplotlib colormap (``"jet"``, ``"viridis"``, ...).

    Returns:
        ``T x H x W x 3`` ``uint8``; ``H x W x 3`` when both inputs were single frames.

    Raises:
        InvalidArgumentError: ``alpha`` outside ``[0, 1]``, an unknown ``cmap``, shapes that do
            not match, or ``heat`` outside ``[0, 1]``.
        InvalidTypeError: ``frames`` is not a ``uint8`` array.

    Example:
        >>> import numpy as np
        >>> frames = np.zeros((4, 8, 8, 3), np.uint8)
        >>> heat = np.linspace(0, 1, 4 * 8 * 8).reshape(4, 8, 8)
        >>> overlay(frames, heat, alpha=0.6).shape
        (4, 8, 8, 3)
    """
    alpha = check_alpha(alpha, "overlay")
    single = np.ndim(frames) == 3 and np.ndim(heat) == 2
    pixels = check_frames(frames, where="overlay(frames=...)")
    colour = _colour(heat, cmap)
    if colour.shape[1:3] != pixels.shape[1:3] or (
        colour.shape[0] != pixels.shape[0] and 1 not in (colour.shape[0], pixels.shape[0])
    ):
        raise InvalidArgumentError(
            f"overlay: heat of shape {colour.shape[:3]} (T x H x W) does not match frames of shape "
            f"{pixels.shape[:3]}; they need the same H x W and the same T (or T = 1 on one side)."
        )
    # integer blend with weights out of 256, so that alpha = 0 and alpha = 1 are exact
    weight = round(alpha * 256)
    blended = pixels.astype(np.uint16) * np.uint16(256 - weight)
    blended = blended + colour.astype(np.uint16) * np.uint16(weight)
    blended += 128
    blended >>= 8
    out = blended.astype(np.uint8)
    return out[0] if single else out


def colorize(heat: np.ndarray | torch.Tensor, *, cmap: str = "jet") -> np.ndarray:
    """Colour a ``[0, 1]`` map (any shape) with a matplotlib colormap: ``uint8``, shape ``+ (3,)``.

    A map of ``T x H x W`` gives ``T x H x W x 3``; an ``H x W`` map is treated as one frame and
    gives ``1 x H x W x 3``.

    Raises:
        InvalidArgumentError: An unknown ``cmap``, an empty map, NaN, or values outside ``[0, 1]``.
    """
    return np.ascontiguousarray(_colour(heat, cmap))


def _colour(heat: object, cmap: object) -> np.ndarray:
    """:func:`colorize` as a (possibly strided) view, to skip a copy when blending."""
    packed = _packed_table(check_cmap(cmap))
    values = _check_heat(heat)
    if values.ndim == 2:
        values = values[None]
    # round to the nearest of the 256 table entries; clip absorbs float slack at the ends
    scaled = values * np.float32(255.0)
    scaled += np.float32(0.5)
    np.clip(scaled, 0, 255, out=scaled)
    index = np.ascontiguousarray(scaled.astype(np.uint8))  # any strides the caller had
    # one 4-byte gather per pixel is ~4x faster than gathering 3 separate bytes
    return packed[index].view(np.uint8).reshape(index.shape + (4,))[..., :3]


@lru_cache(maxsize=32)
def _packed_table(cmap: str) -> np.ndarray:
    """The lookup table with each RGB entry padded to 4 bytes and viewed as one ``uint32``."""
    padded = np.zeros((256, 4), dtype=np.uint8)
    padded[:, :3] = lookup_table(cmap)
    packed = padded.view(np.uint32).reshape(256)
    packed.flags.writeable = False
    return packed


def _check_heat(heat: object) -> np.ndarray:
    if isinstance(heat, torch.Tensor):
        heat = heat.detach().to("cpu", torch.float32).numpy()
    if not isinstance(heat, np.ndarray):
        raise InvalidTypeError(
            f"heat takes a numpy array or torch.Tensor, got {type(heat).__name__}."
        )
    if heat.ndim not in (2, 3):
        raise InvalidArgumentError(
            f"heat must be T x H x W (or H x W), got shape {tuple(heat.shape)}."
        )
    if heat.size == 0:
        raise InvalidArgumentError(f"heat is empty (shape {tuple(heat.shape)}).")
    values = heat.astype(np.float32, copy=False)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InvalidArgumentError("heat has NaN or infinite values.")
    if low < -_RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
        raise InvalidArgumentError(
            f"heat must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]. Hint: the pyramid's "
            "maps with upsample=True are already scaled; otherwise min-max scale the map first."
        )
    return values
