"""Faithfulness metrics of one saliency map (``T x H x W``, non-negative, at the clip's
resolution).

- :func:`energy_in_mask`: the share of the map's mass inside the evidence.
- :func:`pointing_game`: per frame with evidence, whether the map's peak lies in it.
- :func:`deletion` / :func:`insertion`: the class probability as the most salient voxels are
  replaced by a blurred copy of the clip (deletion: lower area is better) or restored into the
  blurred clip (insertion: higher is better) — no mask needed.
- :func:`spearman`: rank correlation of two maps (class sensitivity, randomisation).

Example:
    >>> import torch
    >>> from fxcfp.eval.metrics import energy_in_mask, pointing_game, spearman
    >>> mask = torch.zeros(2, 4, 4, dtype=torch.bool); mask[:, 1:3, 1:3] = True
    >>> energy_in_mask(mask.float(), mask), pointing_game(mask.float(), mask)
    (1.0, 1.0)
    >>> round(spearman(torch.arange(8.0), torch.arange(8.0)), 6)
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, stats
from torch import nn

from .._errors import InvalidArgumentError
from ._model import batched, probabilities

__all__ = ["Curve", "DEFAULT_FRACTIONS", "energy_in_mask", "pointing_game", "deletion",
           "insertion", "spearman", "blurred"]

# denser where the most salient voxels go: that is where maps differ
DEFAULT_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)


def _check(call: str, saliency: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    if tuple(saliency.shape) != tuple(mask.shape):
        raise InvalidArgumentError(
            f"{call}: the map ({tuple(saliency.shape)}) and the mask ({tuple(mask.shape)}) must "
            "have one shape; upsample the map to the clip's T x H x W first "
            "(fxcfp.eval.saliency_maps does)")
    values = saliency.detach().double().cpu().numpy()
    if (values < 0).any():
        raise InvalidArgumentError(f"{call}: the map has negative values; pass a non-negative "
                                   "map (relu or min-max scale it)")
    return values, mask.detach().cpu().numpy().astype(bool)


def energy_in_mask(saliency: torch.Tensor, mask: torch.Tensor) -> float:
    """``sum(map * mask) / sum(map)``: 1 when all of the map lies in the evidence, the mask's
    volume share for a flat map, and 0 for a blank map (a blank map shows no evidence)."""
    values, inside = _check("fxcfp.eval.energy_in_mask", saliency, mask)
    total = values.sum()
    return float(values[inside].sum() / total) if total > 0 else 0.0


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor, *, tolerance: int = 0) -> float:
    """Share of the frames with evidence where the map's maximum lies in it (within
    ``tolerance`` pixels). A frame where the map is flat points nowhere: a miss.

    Args:
        saliency: ``T x H x W`` map (any ``T x ...``).
        mask: ``T x ...`` evidence of the same shape.
        tolerance: pixels the mask is grown by before the hit test.

    Returns:
        Hits over frames with evidence (NaN if no frame has any).
    """
    values, inside = _check("fxcfp.eval.pointing_game", saliency, mask)
    hits = frames = 0
    for frame, evidence in zip(values, inside):
        if not evidence.any():
            continue
        frames += 1
        if frame.max() <= frame.min():
            continue
        if tolerance > 0:
            # grown by a square: a peak within ``tolerance`` pixels in any direction counts
            evidence = ndimage.binary_dilation(evidence, structure=np.ones((3,) * evidence.ndim),
                                               iterations=tolerance)
        hits += bool(evidence[frame == frame.max()].any())
    return hits / frames if frames else math.nan


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps of one shape (ties take their mean rank); NaN when
    either map is constant, where no ranking exists."""
    if tuple(a.shape) != tuple(b.shape):
        raise InvalidArgumentError(f"fxcfp.eval.spearman: maps of shapes {tuple(a.shape)} and "
                                   f"{tuple(b.shape)}; compare maps of one layer")
    x = a.detach().double().cpu().numpy().ravel()
    y = b.detach().double().cpu().numpy().ravel()
    if x.size < 2 or x.min() == x.max() or y.min() == y.max():
        return math.nan
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    # Pearson of the ranks: Spearman's definition with mean ranks for ties
    return float(rx @ ry / np.sqrt((rx @ rx) * (ry @ ry)))


@dataclass(frozen=True)
class Curve:
    """A deletion or insertion curve.

    Attributes:
        fractions: share of the voxels removed (deletion) or restored (insertion).
        probabilities: the class probability at each fraction.
        auc: area under the curve over ``[0, 1]`` (trapezoids).
    """

    fractions: tuple[float, ...]
    probabilities: tuple[float, ...]
    auc: float


def blurred(clip: torch.Tensor, *, sigma: float | Sequence[float] | None = None) -> torch.Tensor:
    """The clip blurred per channel over time and space: what a deleted voxel is filled with.

    Default sigma: 1 frame in time and 1/16 of the larger side in space — the clip's coarse
    colour survives, its shapes and motion do not.
    """
    shape = tuple(clip.shape[-3:]) if clip.dim() >= 4 else tuple(clip.shape[-2:])
    if sigma is None:
        sigma = ((1.0,) if len(shape) == 3 else ()) + (max(shape[-2:]) / 16,) * 2
    sigma = (sigma,) * len(shape) if isinstance(sigma, (int, float)) else tuple(sigma)
    values = clip.detach().double().cpu().numpy()
    lead = values.ndim - len(shape)
    out = ndimage.gaussian_filter(values, sigma=(0,) * lead + tuple(sigma), mode="nearest")
    return torch.from_numpy(out).to(dtype=clip.dtype, device=clip.device)


def _order(saliency: np.ndarray, seed: int) -> np.ndarray:
    """Voxels from the most salient down; ties in a fixed random order, so a map with large flat
    regions is not read in raster order."""
    ties = np.random.default_rng(seed).permutation(saliency.size)
    return np.lexsort((ties, -saliency.ravel()))


def _check_fractions(call: str, fractions: Sequence[float]) -> tuple[float, ...]:
    fractions = tuple(float(f) for f in fractions)
    if not fractions or any(not 0.0 <= f <= 1.0 for f in fractions) or list(fractions) != sorted(
            fractions):
        raise InvalidArgumentError(f"{call}: fractions must rise within [0, 1], got {fractions}")
    return fractions


def curves(call: str, model: nn.Module, clip: torch.Tensor, cls: int,
           saliencies: Sequence[torch.Tensor], *, fractions: Sequence[float],
           baseline: torch.Tensor | None, insert: bool, seed: int, batch: int) -> list[Curve]:
    """Deletion (or insertion) curves of many maps of one clip: the perturbed clips of every map
    go through the model in shared batches, and the two ends (nothing and everything changed),
    the same for every map, are run once."""
    inputs = batched(call, model, clip)
    size = tuple(inputs.shape[2:])
    for saliency in saliencies:
        if tuple(saliency.shape) != size:
            raise InvalidArgumentError(
                f"{call}: the map has shape {tuple(saliency.shape)}, the clip's positions are "
                f"{size}; upsample the map to the clip (fxcfp.eval.saliency_maps does)")
    fractions = _check_fractions(call, fractions)
    fill = blurred(inputs) if baseline is None else batched(call, model, baseline)
    start, end = (fill, inputs) if insert else (inputs, fill)
    voxels = int(np.prod(size))
    counts = [int(round(f * voxels)) for f in fractions]
    ends = probabilities(model, torch.cat([start, end]), cls, batch=batch).numpy()
    orders = [torch.from_numpy(_order(s.detach().double().cpu().numpy(), seed)).to(inputs.device)
              for s in saliencies]
    jobs = [(m, k) for m in range(len(saliencies)) for k, count in enumerate(counts)
            if 0 < count < voxels]
    found: dict[tuple[int, int], float] = {}
    for first in range(0, len(jobs), batch):
        chunk = jobs[first: first + batch]
        perturbed = []
        for m, k in chunk:
            changed = torch.zeros(voxels, dtype=torch.bool, device=inputs.device)
            changed[orders[m][: counts[k]]] = True
            perturbed.append(torch.where(changed.reshape(size), end[0], start[0]))
        p = probabilities(model, torch.stack(perturbed), cls, batch=batch).numpy()
        found.update(zip(chunk, p.tolist()))
    out = []
    for m in range(len(saliencies)):
        p = np.array([ends[0] if count == 0 else ends[1] if count == voxels else found[(m, k)]
                      for k, count in enumerate(counts)])
        auc = float(np.trapezoid(p, fractions)) if len(fractions) > 1 else float(p[0])
        out.append(Curve(fractions, tuple(float(v) for v in p), auc))
    return out


def deletion(model: nn.Module, clip: torch.Tensor, cls: int, saliency: torch.Tensor, *,
             fractions: Sequence[float] = DEFAULT_FRACTIONS, baseline: torch.Tensor | None = None,
             seed: int = 0, batch: int = 8) -> Curve:
    """Deletion curve (Petsiuk et al., 2018): the probability of ``cls`` as the most salient
    voxels (all channels of each) are replaced by ``baseline``. Lower AUC is better.

    Args:
        model: any classifier of ``1 x C x T x H x W`` clips; it is not changed.
        clip: ``C x T x H x W``.
        cls: the class whose probability is tracked.
        saliency: ``T x H x W`` map at the clip's resolution.
        fractions: shares of the voxels removed, rising within ``[0, 1]``.
        baseline: what removed voxels become (default :func:`blurred` clip).
        seed: the order of tied voxels.
        batch: perturbed clips per forward pass.
    """
    return curves("fxcfp.eval.deletion", model, clip, cls, [saliency], fractions=fractions,
                  baseline=baseline, insert=False, seed=seed, batch=batch)[0]


def insertion(model: nn.Module, clip: torch.Tensor, cls: int, saliency: torch.Tensor, *,
              fractions: Sequence[float] = DEFAULT_FRACTIONS, baseline: torch.Tensor | None = None,
              seed: int = 0, batch: int = 8) -> Curve:
    """Insertion curve: the probability of ``cls`` as the most salient voxels are restored into
    ``baseline`` (default the blurred clip). Higher AUC is better. Arguments as
    :func:`deletion`."""
    return curves("fxcfp.eval.insertion", model, clip, cls, [saliency], fractions=fractions,
                  baseline=baseline, insert=True, seed=seed, batch=batch)[0]
