"""Upsampling of feature maps to the clip's resolution (SPEC "Upsampling", the paper's eq. 4),
and the mass per frame of an upsampled map (the temporal profile every picture and
:meth:`fxcfp.Pyramid.temporal_profile` report)."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch

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
    for axis in _cheapest_order(values.shape, size):
        length, out = values.shape[axis], size[axis]
        if length * out > _MATRIX_LIMIT:
            # a long axis (audio, a long clip): zoom it directly, O(length + out)
            resized = _zoom_axis(resized, axis, out)
            continue
        # the spline is a tensor product: one small matrix per axis does the whole zoom
        resized = _apply_matrix(_spline_matrix(length, out), resized, axis)
    resized = np.clip(resized, low, high)  # a cubic spline overshoots near sharp peaks
    low, high = float(resized.min()), float(resized.max())
    if not high > low:
        return torch.zeros(size, dtype=torch.float32)
    resized -= low
    resized *= 1.0 / (high - low)
    return torch.from_numpy(np.ascontiguousarray(resized, dtype=np.float32))


# above this many entries (length x out) an axis is zoomed directly, not by a matrix
_MATRIX_LIMIT = 1 << 20


def _cheapest_order(shape: tuple[int, ...], size: tuple[int, ...]) -> tuple[int, ...]:
    """The axes that change size, in the order that multiplies least.

    Zooming an axis costs its output length times the map's current size, so the order
    matters: a ``2 x 7 x 7`` map zoomed to ``16 x 112 x 112`` time first costs ~8x more than
    time last. A map has a few axes; every order is tried.
    """
    axes = [axis for axis, (length, out) in enumerate(zip(shape, size, strict=True))
            if length != out]

    def cost(order: tuple[int, ...]) -> int:
        current, total = list(shape), 0
        for axis in order:
            total += math.prod(current) * size[axis]
            current[axis] = size[axis]
        return total

    return min(itertools.permutations(axes), key=cost, default=())


def _apply_matrix(matrix: np.ndarray, values: np.ndarray, axis: int) -> np.ndarray:
    """``matrix`` (``out x length``) applied along ``axis`` of ``values``.

    ``np.einsum`` without ``optimize`` runs its own single-threaded loop rather than a BLAS
    call: these products are a few million multiply-adds, where BLAS threads only wait on each
    other (10-20x the CPU time on a busy 2-core machine).
    """
    letters = "abcdefghijklmnopqrstuvwxy"[: values.ndim]
    inner = letters[axis]
    result = letters.replace(inner, "z")
    return np.einsum(f"z{inner},{letters}->{result}", matrix, values)


def _fit(array: np.ndarray, axis: int, out: int) -> np.ndarray:
    """Exactly ``out`` entries along ``axis`` (zoom rounds the output length)."""
    have = array.shape[axis]
    if have == out:
        return array
    array = np.take(array, np.arange(min(have, out)), axis=axis)
    if have < out:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, out - have)
        array = np.pad(array, widths, mode="edge")
    return array


def _zoom_axis(array: np.ndarray, axis: int, out: int) -> np.ndarray:
    """``scipy.ndimage.zoom(order=3)`` along one axis: the other axes are folded into rows,
    which a zoom factor of 1 leaves exactly as they are."""
    from scipy import ndimage  # on first use: its import is 0.3 s, a map's first call pays it

    moved = np.moveaxis(array, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    zoomed = ndimage.zoom(rows, (1.0, out / rows.shape[1]), order=3, mode="nearest",
                          grid_mode=False)
    zoomed = _fit(zoomed, 1, out)
    return np.moveaxis(zoomed.reshape(*moved.shape[:-1], out), -1, axis)


@functools.lru_cache(maxsize=64)
def _spline_matrix(length: int, out: int) -> np.ndarray:
    """``out x length`` matrix of ``scipy.ndimage.zoom(order=3)`` along one axis.

    Cubic-spline zooming is linear, so zooming the identity along one axis gives the matrix
    (one column per unit vector) in one call, ``O(length x out)``; applying it per axis
    reproduces ``zoom`` of the whole map (a test checks it) at a fraction of its cost on
    ``16 x 160 x 160`` maps.
    """
    if length == out:
        return np.eye(out)
    from scipy import ndimage

    matrix = ndimage.zoom(np.eye(length), (out / length, 1.0), order=3, mode="nearest",
                          grid_mode=False)
    return _fit(matrix, 0, out)


def temporal_profile(upsampled: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Mass per frame of an upsampled map, summing to 1 (zeros for an empty map).

    A ``T x H x W`` map (any rank from 3 up) has one entry per frame, its first axis. An
    ``H x W`` map is an image model's: one frame, so one entry (not one per row). A 1-D map
    (a signal) is all time: one entry per sample.

    Example:
        >>> import torch
        >>> temporal_profile(torch.tensor([[[0.0]], [[1.0]], [[3.0]]])).tolist()
        [0.0, 0.25, 0.75]
        >>> temporal_profile(torch.ones(224, 224)).tolist()
        [1.0]
    """
    heat = (upsampled.detach().to("cpu").numpy() if isinstance(upsampled, torch.Tensor)
            else np.asarray(upsampled))
    if heat.ndim == 0:
        return torch.zeros(1)
    frames = 1 if heat.ndim == 2 else heat.shape[0]
    # numpy's sum runs on this thread: torch's spreads a 200k-entry sum over threads that spend
    # more CPU time waiting for each other than adding
    mass = heat.reshape(frames, -1).sum(axis=1, dtype=np.float64)
    total = float(mass.sum())
    if total <= 0:
        return torch.zeros(frames, dtype=torch.float32)
    return torch.from_numpy((mass / total).astype(np.float32))
