"""Upsampling of feature maps to the clip's resolution (SPEC "Upsampling", the paper's eq. 4)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["upsample", "temporal_profile"]


def upsample(feature_map: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize a ``t x h x w`` map (any rank) to ``size`` with a cubic spline, clip the spline's
    overshoot to the map's own range, and min-max scale the result to ``[0, 1]``.

    A constant map gives all zeros, never NaN. A map without the clip's dimensions (the input of
    a linear layer has no space or time left) carries no location and also gives zeros.
    """
    values = feature_map.detach().to(torch.float64).cpu().numpy()
    if values.ndim != len(size) or values.size == 0:
        return torch.zeros(size, dtype=torch.float32)
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return torch.zeros(size, dtype=torch.float32)
    factors = [out / inp for out, inp in zip(size, values.shape)]
    resized = ndimage.zoom(values, factors, order=3, mode="nearest", grid_mode=False)
    resized = _fit(resized, size)
    resized = np.clip(resized, low, high)  # a cubic spline overshoots near sharp peaks
    low, high = float(resized.min()), float(resized.max())
    if not high > low:
        return torch.zeros(size, dtype=torch.float32)
    resized = (resized - low) / (high - low)
    return torch.from_numpy(resized.astype(np.float32))


def _fit(values: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """zoom rounds output sizes; crop or edge-pad to exactly ``size``."""
    if values.shape == tuple(size):
        return values
    values = values[tuple(slice(0, s) for s in size)]
    pads = [(0, s - v) for s, v in zip(size, values.shape)]
    return np.pad(values, pads, mode="edge")


def temporal_profile(upsampled: torch.Tensor) -> torch.Tensor:
    """Mass per frame of an upsampled ``T x ...`` map, summing to 1 (zeros for an empty map)."""
    if upsampled.dim() == 0:
        return torch.zeros(1)
    mass = upsampled.reshape(upsampled.shape[0], -1).sum(1).to(torch.float64)
    total = float(mass.sum())
    if total <= 0:
        return torch.zeros(upsampled.shape[0], dtype=torch.float32)
    return (mass / total).to(torch.float32)
