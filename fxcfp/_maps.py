"""Upsampling of feature maps to the clip's resolution (SPEC "Upsampling", the paper's eq. 4)."""

from __future__ import annotations

import functools

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
    resized = values
    for axis, out in enumerate(size):
        # the spline is a tensor product: one small matrix per axis does the whole zoom
        resized = np.moveaxis(np.tensordot(_spline_matrix(values.shape[axis], out), resized,
                                           axes=([1], [axis])), 0, axis)
    resized = np.clip(resized, low, high)  # a cubic spline overshoots near sharp peaks
    low, high = float(resized.min()), float(resized.max())
    if not high > low:
        return torch.zeros(size, dtype=torch.float32)
    resized = (resized - low) / (high - low)
    return torch.from_numpy(np.ascontiguousarray(resized, dtype=np.float32))


@functools.lru_cache(maxsize=64)
def _spline_matrix(length: int, out: int) -> np.ndarray:
    """``out x length`` matrix of ``scipy.ndimage.zoom(order=3)`` along one axis.

    Cubic-spline zooming is linear, so zooming each unit vector gives one column; applying the
    matrix per axis reproduces ``zoom`` of the whole map (a test checks it) at a fraction of
    its cost on ``16 x 160 x 160`` maps.
    """
    if length == out:
        return np.eye(out)
    columns = [ndimage.zoom(np.eye(length)[i], out / length, order=3, mode="nearest",
                            grid_mode=False) for i in range(length)]
    matrix = np.stack(columns, axis=1)
    if matrix.shape[0] != out:  # zoom rounds the output length; keep exactly ``out`` rows
        matrix = np.pad(matrix[:out], ((0, max(0, out - matrix.shape[0])), (0, 0)), mode="edge")
    return matrix


def temporal_profile(upsampled: torch.Tensor) -> torch.Tensor:
    """Mass per frame of an upsampled ``T x ...`` map, summing to 1 (zeros for an empty map)."""
    if upsampled.dim() == 0:
        return torch.zeros(1)
    mass = upsampled.reshape(upsampled.shape[0], -1).sum(1).to(torch.float64)
    total = float(mass.sum())
    if total <= 0:
        return torch.zeros(upsampled.shape[0], dtype=torch.float32)
    return (mass / total).to(torch.float32)
