"""The pixels a person sees: frames recovered from a normalised clip, and their checks.

Every picture fxcfp draws is a heat map over ``T x H x W x 3`` ``uint8`` frames. Callers either
hand those frames over (the original pixels, same crop as the clip) or hand over the clip the
model saw together with the ``mean`` and ``std`` it was normalised with; :func:`to_frames` undoes
that normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError, InvalidInputError, InvalidTypeError
from fxcfp.clip import denormalize_array

if TYPE_CHECKING:
    from fxcfp.render._common import PyramidLike

__all__ = ["to_frames"]


def to_frames(
    clip: torch.Tensor | np.ndarray,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    *,
    value_range: float = 1.0,
) -> np.ndarray:
    """Turn a normalised ``C x T x H x W`` clip back into ``T x H x W x 3`` ``uint8`` frames.

    The clip is de-normalised as ``clip * std + mean`` (per channel), scaled from
    ``[0, value_range]`` to ``[0, 255]``, rounded and clipped, so an edited clip (blended,
    adversarial) still displays.

    Args:
        clip: ``C x T x H x W`` (or ``1 x C x T x H x W``) tensor or array, or one ``C x H x W``
            image; ``C`` of 1 or 3. A single channel is shown as grey.
        mean: The per-channel mean the clip was normalised with (one float or ``C`` floats);
            ``None`` for no shift.
        std: The per-channel standard deviation (one float or ``C`` floats); ``None`` for no
            scaling.
        value_range: What the de-normalised clip's white is: 1.0 for the torchvision
            convention (``mean``/``std`` of pixels in ``[0, 1]``), 255.0 for 0-255 clips.

    Returns:
        ``T x H x W x 3`` ``uint8`` frames.

    Raises:
        InvalidInputError: The clip has the wrong rank, channel count or non-finite values.
        InvalidArgumentError: ``mean``/``std`` do not match the channels, or ``std`` has a zero.

    Example:
        >>> import torch
        >>> clip = (torch.rand(3, 4, 8, 8) - 0.45) / 0.225
        >>> to_frames(clip, mean=[0.45] * 3, std=[0.225] * 3).shape
        (4, 8, 8, 3)
    """
    if isinstance(clip, torch.Tensor):
        array = clip.detach().to("cpu", torch.float32).numpy()
    elif isinstance(clip, np.ndarray):
        array = clip.astype(np.float32, copy=False)
    else:
        raise InvalidTypeError(
            f"to_frames(clip=...) takes a torch.Tensor or numpy array, got {type(clip).__name__}."
        )
    if array.ndim == 5 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3:
        # an image (the input of a 2D model): one frame
        array = array[:, None]
    if array.ndim != 4:
        raise InvalidInputError(
            f"to_frames(clip=...) needs a C x T x H x W clip (a batch of one, or a C x H x W "
            f"image), got shape {tuple(array.shape)}."
        )
    if (
        isinstance(value_range, bool)
        or not isinstance(value_range, (int, float))
        or not (value_range > 0)
    ):
        raise InvalidArgumentError(
            f"to_frames(value_range={value_range!r}) must be a positive number (1.0 or 255.0)."
        )
    channels = array.shape[0]
    if channels not in (1, 3):
        raise InvalidInputError(
            f"to_frames(clip=...) can show 1 (grey) or 3 (RGB) channels, the clip has {channels}. "
            "Hint: pass the original pixels as frames=... instead."
        )
    if not np.isfinite(array).all():
        raise InvalidInputError("to_frames(clip=...) got a clip with NaN or infinite values.")
    std_c = _per_channel(std, channels, "std", default=1.0)
    if np.any(std_c == 0):
        raise InvalidArgumentError("to_frames(std=...) has a zero; normalisation divides by std.")
    mean_c = _per_channel(mean, channels, "mean", default=0.0)
    frames = denormalize_array(array, mean_c, std_c, value_range=float(value_range))
    if channels == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


def _per_channel(
    value: Sequence[float] | float | None, channels: int, name: str, *, default: float
) -> np.ndarray:
    """``value`` as a float array of ``channels`` entries (a scalar is broadcast)."""
    if value is None:
        return np.full(channels, default, dtype=np.float32)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if array.size == 1:
        return np.full(channels, float(array[0]), dtype=np.float32)
    if array.size != channels:
        raise InvalidArgumentError(
            f"to_frames({name}=...) has {array.size} values but the clip has {channels} channels."
        )
    return array


def check_frames(frames: object, *, where: str) -> np.ndarray:
    """Validate ``frames`` as ``uint8`` ``T x H x W x 3`` (``H x W x 3`` is one frame).

    A trailing channel of 1 is shown as grey. ``where`` names the public call in the messages.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise InvalidTypeError(
            f"{where} takes frames as a numpy array, got {type(frames).__name__}."
        )
    if frames.dtype != np.uint8:
        raise InvalidTypeError(
            f"{where} needs uint8 frames (0-255), got dtype {frames.dtype}. "
            "Hint: fxcfp.render.to_frames(clip, mean, std) converts a normalised clip."
        )
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise InvalidArgumentError(
            f"{where} needs frames of shape T x H x W x 3 (or H x W x 3), got "
            f"{tuple(frames.shape)}."
        )
    if 0 in frames.shape:
        raise InvalidArgumentError(f"{where} got empty frames of shape {tuple(frames.shape)}.")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


def resolve_frames(
    pyramid: PyramidLike,
    *,
    frames: np.ndarray | Sequence[np.ndarray] | None,
    clip: torch.Tensor | Sequence[torch.Tensor] | None,
    mean: Sequence[float] | Sequence[Sequence[float]] | None,
    std: Sequence[float] | Sequence[Sequence[float]] | None,
    where: str,
) -> list[np.ndarray]:
    """The frames of every model input the pyramid's levels belong to, as ``uint8`` arrays."""
    needed = 1 + max((int(layer.pathway) for layer in pyramid.layers), default=0)
    if (frames is None) == (clip is None):
        raise InvalidArgumentError(
            f"{where} needs the pixels to draw over: pass either frames=... (T x H x W x 3 uint8) "
            "or clip=... with mean=... and std=..., not both."
        )
    if frames is not None:
        if mean is not None or std is not None:
            raise InvalidArgumentError(
                f"{where}: mean/std undo a clip's normalisation; they do not apply to frames=..."
            )
        given = [frames] if isinstance(frames, np.ndarray) else list(frames)
        pixels = [check_frames(f, where=f"{where}(frames=...)") for f in given]
    else:
        assert clip is not None  # the check above: frames is None, so clip was given
        clips = [clip] if isinstance(clip, (torch.Tensor, np.ndarray)) else list(clip)
        means, stds = _per_input(mean, len(clips)), _per_input(std, len(clips))
        pixels = [to_frames(c, m, s) for c, m, s in zip(clips, means, stds, strict=True)]
    if len(pixels) == 1:
        # one set of frames serves every pathway (each map is resampled to it)
        return pixels * needed
    if len(pixels) < needed:
        raise InvalidArgumentError(
            f"{where}: the pyramid has levels on {needed} model inputs but frames/clips for "
            f"{len(pixels)} were given; pass a list with one entry per input."
        )
    return pixels


def _per_input(value: Any, count: int) -> list[Any]:
    """Split mean/std given per input (a list of sequences) from one shared for all inputs."""
    if value is None or isinstance(value, (int, float, torch.Tensor, np.ndarray)):
        return [value] * count
    items = list(value)
    if items and all(isinstance(v, (Sequence, torch.Tensor, np.ndarray)) for v in items):
        if len(items) != count:
            raise InvalidArgumentError(
                f"mean/std were given for {len(items)} inputs but {count} clips were passed."
            )
        return items
    return [items] * count
