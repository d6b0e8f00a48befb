"""Evidence maps: the pyramid's selected channels weighted by ``dy/dA * A`` (fxcfp/_evidence.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import fxcfp
from tests.models import assert_unchanged, snapshot


class Block(nn.Module):
    """Convs with in-place ReLUs (as torchvision's), a residual add and a pooled classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 6, 3, padding=1)
        self.act_a = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(6, 6, 3, padding=1)
        self.act_b = nn.ReLU(inplace=True)
        self.c = nn.Conv3d(6, 5, 3, stride=2, padding=1)
        self.act_c = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        a = self.act_a(self.a(x))
        b = self.act_b(self.b(a) + a)
        c = self.act_c(self.c(b))
        return self.fc(torch.flatten(self.pool(c), 1))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Block().eval()


def _reference(model: Block, clip: torch.Tensor, score: str) -> dict[str, torch.Tensor]:
    """``dy/dA * A`` at every map tensor, by plain autograd on the model's own forward."""
    x = clip[None].clone().requires_grad_(True)
    a = torch.relu(model.a(x))
    b = torch.relu(model.b(a) + a)
    c = torch.relu(model.c(b))
    logits = model.fc(c.mean((2, 3, 4)))
    y = eval(score, {"y": logits[0]})
    grads = torch.autograd.grad(y, [x, a, b, c])
    return {name: (g * v)[0].detach()
            for name, g, v in zip(["a", "b", "c", "fc"], grads, [x, a, b, c])}


def _counts(pyramid: fxcfp.Pyramid, layer: str, kernel: int | None = None) -> torch.Tensor:
    """How often each input channel was selected by the layer's kernels (or by one kernel)."""
    index = pyramid._plan.layer_index(layer)
    passing = pyramid._passing(index)
    channels = passing.channel if kernel is None else passing.channel[passing.kernel == kernel]
    return torch.from_numpy(np.bincount(channels, minlength=pyramid._plan.layers[index].in_channels))


@pytest.mark.parametrize("contrast", [None, 2])
def test_evidence_maps_are_the_selected_channels_weighted_by_gradient_times_input(contrast):
    model = _model()
    clip = torch.randn(3, 4, 8, 8)
    options = {} if contrast is None else {"contrast": contrast}
    pyramid = fxcfp.analyze(model, clip, 1, threshold=0.3, **options)
    reference = _reference(model, clip, "y[1]" if contrast is None else "y[1] - y[2]")
    for level in pyramid.layers:
        counts = _counts(pyramid, level.name).to(torch.float32)
        expected = torch.tensordot(counts, reference[level.name], dims=1).clamp_min(0)
        got = pyramid.layer_map(level.name, mode="evidence")
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6), level.name
        kernel = level.kernels[0]
        mine = _counts(pyramid, level.name, kernel).to(torch.float32)
        expected = (torch.tensordot(mine, reference[level.name], dims=1) / mine.sum()).clamp_min(0)
        got = pyramid.kernel_map(level.name, kernel, mode="evidence")
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6), level.name


def test_evidence_maps_cost_one_backward_for_every_map(monkeypatch):
    import fxcfp._pyramid as module

    calls = []
    real = module.record_evidence
    monkeypatch.setattr(module, "record_evidence",
                        lambda *args: calls.append(1) or real(*args))
    pyramid = fxcfp.analyze(_model(), torch.randn(3, 4, 8, 8), 0, threshold=0.3)
    for level in pyramid.layers:
        pyramid.layer_map(level.name, mode="evidence", upsample=True)
        pyramid.kernel_map(level.name, level.kernels[0], mode="evidence")
    assert len(calls) == 1


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(stats.spearmanr(x.flatten().numpy(), y.flatten().numpy())[0])


def test_evidence_maps_change_with_the_class():
    model = _model()
    clip = torch.randn(3, 4, 8, 8)
    one, two = fxcfp.analyze(model, clip, 0), fxcfp.analyze(model, clip, 3)
    assert not torch.allclose(one.layer_map("a", mode="evidence"),
                              two.layer_map("a", mode="evidence"))
    assert _spearman(one.layer_map("b", mode="evidence"),
                     two.layer_map("b", mode="evidence")) < 0.9


def test_evidence_maps_change_when_the_classifier_is_reinitialised():
    model = _model()
    clip = torch.randn(3, 4, 8, 8)
    randomised = copy.deepcopy(model)
    torch.manual_seed(7)
    randomised.fc.reset_parameters()
    before, after = fxcfp.analyze(model, clip, 1), fxcfp.analyze(randomised, clip, 1)
    for layer in ("a", "b"):
        assert not torch.allclose(before.layer_map(layer, mode="evidence"),
                                  after.layer_map(layer, mode="evidence"))


def test_evidence_maps_leave_the_model_and_clip_unchanged_also_a_frozen_one():
    model = _model()
    for p in model.fc.parameters():
        p.requires_grad_(False)
    model.train()
    clip = torch.randn(3, 4, 8, 8)
    clip_before = clip.clone()
    snap = snapshot(model)
    pyramid = fxcfp.analyze(model, clip, threshold=0.3)
    heat = pyramid.layer_map("a", mode="evidence", upsample=True)
    assert float(heat.max()) == 1.0
    assert_unchanged(model, snap)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(clip, clip_before) and not clip.requires_grad
    # the paper's maps are SPEC's, whatever was computed before: layer a reads the clip
    expected = torch.tensordot(_counts(pyramid, "a").float(), clip, dims=1)
    assert torch.allclose(pyramid.layer_map("a"), expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["Evidence", "grad", 1, None])
def test_unknown_map_modes_are_refused(mode):
    pyramid = fxcfp.analyze(_model(), torch.randn(3, 4, 8, 8), threshold=0.3)
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"Pyramid.layer_map: mode=.* is not a map mode; use mode='paper'"):
        pyramid.layer_map("a", mode=mode)
    with pytest.raises(fxcfp.InvalidArgumentError, match="Pyramid.kernel_map: mode="):
        pyramid.kernel_map("a", 0, mode=mode)
