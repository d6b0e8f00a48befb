"""A clip as a model reads it and as a person sees it: the :class:`Clip` record, the
normalisation presets, and the one normaliser and de-normaliser between the two.

Reading files is :mod:`fxcfp.video`'s (PyAV decoding, images); drawing is :mod:`fxcfp.render`'s,
whose :func:`~fxcfp.render.to_frames` de-normalises with :func:`denormalize_array` below.

Example:
    >>> import numpy as np
    >>> from fxcfp.clip import NORMALIZATION, denormalize, normalize
    >>> frames = np.full((2, 4, 4, 3), 200, np.uint8)
    >>> mean, std = NORMALIZATION["kinetics"]
    >>> tensor = normalize(frames, mean, std)
    >>> tensor.shape, bool((denormalize(tensor, mean, std) == frames).all())
    (torch.Size([3, 2, 4, 4]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._errors import VideoError

__all__ = ["NORMALIZATION", "Clip", "denormalize", "denormalize_array", "normalize",
           "resolve_normalization"]

_Triple = tuple[float, float, float]

NORMALIZATION: dict[str, tuple[_Triple, _Triple]] = {
    # torchvision's image classifiers.
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # torchvision's video classifiers (r3d_18, mc3_18, r2plus1d_18, s3d, ...), Kinetics-400 stats.
    "kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
    # PyTorchVideo's model zoo (slow_r50, x3d_*, slowfast_*).
    "pytorchvideo": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
    # EfficientNet-Lite (fxcfp.zoo.efficientnet_lite): the checkpoint expects TensorFlow's input
    # scaling, (x - 127) / 128 on 0..255, i.e. [-1, 1], not the ImageNet mean/std. Evidence: on
    # natural images the stem's output variance matches the running variance of `_bn0` within
    # ~0.8x under this scaling but is ~3.9x too large under ImageNet's, whose std (~0.226) is
    # half as wide.
    "efficientnet_lite": ((0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
}


@dataclass(frozen=True, eq=False)
class Clip:
    """A clip ready for a model, with the frames a person would see.

    ``eq=False`` because the fields are arrays: equality and hashing are by identity.

    Attributes:
        tensor: ``3 x T x H x W`` float32, normalised with ``mean`` and ``std``; add the batch
            dim (:attr:`batch`) before calling a model.
        frames: ``T x H x W x 3`` uint8 RGB of the same crop, read-only.
        mean: Per-channel mean subtracted from RGB values in ``[0, 1]``.
        std: Per-channel std the centred values were divided by.
        fps: Frame rate of the source video (``0.0`` for an image).
        source: The file read, or ``"<array>"`` for an in-memory image.
        frame_indices: Which frames of the decoded video were used, counted from 0.
    """

    tensor: torch.Tensor
    frames: np.ndarray
    mean: _Triple
    std: _Triple
    fps: float
    source: str
    frame_indices: tuple[int, ...]

    @property
    def batch(self) -> torch.Tensor:
        """``tensor`` with a batch dim of one: ``1 x 3 x T x H x W``."""
        return self.tensor.unsqueeze(0)


def resolve_normalization(
    normalization: str | Sequence[Any], call: str
) -> tuple[_Triple, _Triple]:
    """A preset name of :data:`NORMALIZATION` or a ``(mean, std)`` pair as two RGB triples.

    Raises:
        VideoError: An unknown preset, or a pair that is not two triples with positive stds;
            the message starts with ``call``.
    """
    if isinstance(normalization, str):
        if normalization not in NORMALIZATION:
            raise VideoError(
                f"{call}: unknown normalization {normalization!r}; the presets are "
                f"{', '.join(sorted(NORMALIZATION))}, or pass a (mean, std) pair of RGB triples."
            )
        return NORMALIZATION[normalization]
    try:
        mean_in, std_in = tuple(normalization)
        mean = tuple(float(v) for v in mean_in)
        std = tuple(float(v) for v in std_in)
    except (TypeError, ValueError) as err:
        raise VideoError(
            f"{call}: normalization must be a preset name or a (mean, std) pair of RGB triples, "
            f"got {normalization!r}."
        ) from err
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise VideoError(
            f"{call}: normalization needs 3 means and 3 positive stds, got mean={mean}, std={std}."
        )
    return (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])


def normalize(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``T x H x W x 3`` uint8 frames (or ``N x T x H x W x 3``, a batch) as the float32 tensor a
    model reads, ``3 x T x H x W`` (``N x 3 x T x H x W``): ``(frames / 255 - mean) / std`` per
    channel."""
    x = torch.from_numpy(frames)
    lead = x.dim() - 4  # 0 for a clip, 1 for a batch
    x = x.permute(*range(lead), lead + 3, lead, lead + 1, lead + 2).float().div_(255.0)
    shape = (3, 1, 1, 1)
    x = (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
    return x.contiguous()


def denormalize_array(
    values: np.ndarray, mean: np.ndarray, std: np.ndarray, *, value_range: float = 1.0
) -> np.ndarray:
    """The inverse of :func:`normalize` without checks: ``C x T x H x W`` float32 values and
    ``C`` means and stds give ``T x H x W x C`` uint8, ``values * std + mean`` scaled from
    ``[0, value_range]`` to ``[0, 255]``, rounded and clipped (an edited clip still displays).
    """
    pixels = (values * std[:, None, None, None] + mean[:, None, None, None]) * (
        255.0 / float(value_range)
    )
    # float32 throughout: the tensor normalize() made gives its frames back exactly
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 3, 0)


def denormalize(
    tensor: torch.Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Undo the normalisation of a ``3 x T x H x W`` clip tensor: ``T x H x W x 3`` uint8.

    Values are rounded and clipped to ``[0, 255]``, so a tensor from :func:`fxcfp.video.read_clip`
    gives its ``frames`` back exactly, and an edited tensor (an adversarial or blended one) still
    displays.

    Args:
        tensor: The normalised clip, channels first.
        mean: The per-channel mean used to normalise (``clip.mean``).
        std: The per-channel std used to normalise (``clip.std``).

    Returns:
        The frames, channels last.

    Raises:
        VideoError: ``tensor`` is not ``3 x T x H x W`` or ``mean``/``std`` are not RGB triples.

    Example:
        >>> import torch
        >>> denormalize(torch.zeros(3, 1, 2, 2), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))[0, 0, 0]
        array([128, 128, 128], dtype=uint8)
    """
    x = torch.as_tensor(tensor).detach().to("cpu", torch.float32)
    if x.dim() != 4 or x.shape[0] != 3:
        raise VideoError(
            f"denormalize: expected a 3 x T x H x W clip tensor, got shape {tuple(x.shape)}. "
            "Hint: drop the batch dim, e.g. denormalize(batch[0], ...)."
        )
    if len(mean) != 3 or len(std) != 3:
        raise VideoError(f"denormalize: mean and std must be RGB triples, got {mean!r}, {std!r}.")
    frames = denormalize_array(x.numpy(), np.asarray(mean, np.float32),
                               np.asarray(std, np.float32))
    return np.ascontiguousarray(frames)
