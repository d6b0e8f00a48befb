"""Metrics on hand-made maps give known values."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
from scipy import stats
from torch import nn

import fxcfp
import fxcfp.eval
import fxcfp.eval.metrics as metrics
from fxcfp.eval import (
    _compare,
    baselines,
    bootstrap,
    deletion,
    energy_in_mask,
    insertion,
    pointing_game,
    spearman,
)


def _mask() -> torch.Tensor:
    mask = torch.zeros(4, 8, 8, dtype=torch.bool)
    mask[:, 2:5, 3:6] = True
    return mask


def test_energy_of_the_mask_is_one_and_outside_it_zero():
    mask = _mask()
    assert energy_in_mask(mask.float(), mask) == 1.0
    assert energy_in_mask((~mask).float(), mask) == 0.0
    flat = torch.ones(mask.shape)
    assert energy_in_mask(flat, mask) == pytest.approx(mask.float().mean().item())
    assert energy_in_mask(torch.zeros(mask.shape), mask) == 0.0  # a blank map shows nothing
    half = mask.float() + 0.0
    half[0, 0, 0] = 9.0  # 9 outside, 36 inside
    assert energy_in_mask(half, mask) == pytest.approx(36 / 45)


def test_energy_refuses_negative_maps_and_other_shapes():
    mask = _mask()
    with pytest.raises(fxcfp.InvalidArgumentError, match="negative values"):
        energy_in_mask(-mask.float(), mask)
    with pytest.raises(fxcfp.InvalidArgumentError, match="upsample the map"):
        energy_in_mask(torch.ones(2, 4, 4), mask)


def test_pointing_game_counts_frames_whose_peak_is_in_the_evidence():
    mask = _mask()
    saliency = torch.zeros(mask.shape)
    saliency[0, 3, 4] = 1.0  # hit
    saliency[1, 0, 0] = 1.0  # miss
    saliency[2, 6, 7] = 1.0  # miss: 2 rows and 2 columns away
    # frame 3 stays flat: it points nowhere
    assert pointing_game(saliency, mask) == 0.25
    assert pointing_game(saliency, mask, tolerance=1) == 0.25
    assert pointing_game(saliency, mask, tolerance=2) == 0.5
    assert pointing_game(mask.float(), mask) == 1.0
    empty = torch.zeros_like(mask)
    assert math.isnan(pointing_game(saliency, empty))


def test_spearman_of_a_map_with_itself_is_one():
    a = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, a ** 3 + 5) == pytest.approx(1.0)  # ranks only
    assert math.isnan(spearman(a, torch.zeros_like(a)))
    # with ties (a rounded map), as scipy defines it
    b = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(1)).mul(4).round()
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic)
    with pytest.raises(fxcfp.InvalidArgumentError, match="maps of one layer"):
        spearman(a, a[0])


class _Region(nn.Module):
    """Two logits: the mean of channel 0 inside a fixed region, and zero: the class probability
    is sigmoid of that mean, so deleting the region's voxels (to zeros) drops it to 0.5."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] * self.region).sum((1, 2, 3)) / self.region.sum()
        return torch.stack([score, torch.zeros_like(score)], 1)


def test_deletion_of_the_evidence_drops_the_probability_first():
    mask = _mask()
    model = _Region(mask)
    clip = torch.full((2, *mask.shape), 3.0)
    zeros = torch.zeros_like(clip)
    right = deletion(model, clip, 0, mask.float(), baseline=zeros)
    wrong = deletion(model, clip, 0, (~mask).float(), baseline=zeros)
    assert right.probabilities[0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert right.probabilities[-1] == pytest.approx(0.5)
    assert wrong.probabilities[-1] == pytest.approx(0.5)
    assert right.auc < wrong.auc
    # the mask is 36 of 256 voxels: past 15% of the voxels the evidence is gone
    share = mask.float().mean().item()
    gone = [p for f, p in zip(right.fractions, right.probabilities) if f >= share + 0.01]
    assert gone and all(p == pytest.approx(0.5) for p in gone)
    assert insertion(model, clip, 0, mask.float(), baseline=zeros).auc > insertion(
        model, clip, 0, (~mask).float(), baseline=zeros).auc


def test_deletion_fills_from_a_blurred_clip_by_default():
    clip = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    soft = metrics.blurred(clip)
    assert soft.shape == clip.shape
    assert soft.std() < clip.std() / 2  # the noise is gone
    assert soft.mean().item() == pytest.approx(clip.mean().item(), abs=0.05)


def test_deletion_checks_its_arguments():
    mask = _mask()
    model = _Region(mask)
    clip = torch.ones(2, *mask.shape)
    with pytest.raises(fxcfp.InvalidArgumentError, match="fractions must rise"):
        deletion(model, clip, 0, mask.float(), fractions=(0.5, 0.2))
    with pytest.raises(fxcfp.InvalidArgumentError, match="upsample the map"):
        deletion(model, clip, 0, torch.ones(2, 2, 2))


def test_bootstrap_interval_holds_the_mean_and_skips_undefined_values():
    mean, low, high, n = bootstrap([0.2, 0.4, math.nan, 0.6, 0.8])
    assert n == 4 and mean == pytest.approx(0.5)
    assert 0.2 <= low < mean < high <= 0.8
    assert bootstrap([0.3] * 5)[1:3] == pytest.approx((0.3, 0.3))
    assert math.isnan(bootstrap([math.nan])[0])


def test_doctests():
    for module in (metrics, fxcfp.eval, baselines, _compare):
        assert doctest.testmod(module).failed == 0
