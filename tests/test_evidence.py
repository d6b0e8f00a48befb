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


def _margin(y: torch.Tensor, target: int, contrast: int | None) -> torch.Tensor:
    """``y_c - sum_{k != c} q_k y_k``, ``q`` the softmax of the other logits held constant
    (``q`` all on ``contrast`` when given), written out independently of fxcfp."""
    others = [k for k in range(y.numel()) if k != target]
    if contrast is None:
        q = torch.softmax(y.detach()[others], 0)
    else:
        q = torch.tensor([float(k == contrast) for k in others])
    return y[target] - (q * y[others]).sum()


def _reference(model: Block, clip: torch.Tensor, target: int, contrast: int | None = None
               ) -> dict[str, torch.Tensor]:
    """``ds/dA * A`` at every map tensor, by plain autograd on the model's own forward."""
    x = clip[None].clone().requires_grad_(True)
    a = torch.relu(model.a(x))
    b = torch.relu(model.b(a) + a)
    c = torch.relu(model.c(b))
    logits = model.fc(c.mean((2, 3, 4)))
    y = _margin(logits[0], target, contrast)
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
    reference = _reference(model, clip, 1, contrast)
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
    for layer in ("a", "b", "c", "fc"):
        assert not torch.allclose(before.layer_map(layer, mode="evidence"),
                                  after.layer_map(layer, mode="evidence"))


def test_evidence_maps_are_softmax_neutral():
    # W -> W - mean W (and the bias likewise) changes no probability; at threshold 0 every
    # channel passes, so both pyramids select alike and the maps may differ only by the score
    model = _model()
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.fc.weight -= shifted.fc.weight.mean(0)
        shifted.fc.bias -= shifted.fc.bias.mean()
    clip = torch.randn(3, 4, 8, 8)
    one, two = fxcfp.analyze(model, clip, 1, threshold=0.0), fxcfp.analyze(shifted, clip, 1,
                                                                           threshold=0.0)
    assert torch.allclose(one.logits.softmax(0), two.logits.softmax(0), atol=1e-6)
    for level in one.layers:
        before = one.layer_map(level.name, mode="evidence")
        assert before.max() > 0, level.name
        assert torch.allclose(before, two.layer_map(level.name, mode="evidence"),
                              rtol=1e-4, atol=1e-6), level.name
    # the plain logit's gradient is not: it moves by the mean row
    logit = torch.tensordot(_counts(one, "fc").float(), _reference(model, clip, 1, 3)["fc"], 1)
    assert not torch.allclose(logit, two.layer_map("fc", mode="evidence"), atol=1e-4)


class Shared(nn.Module):
    """Two pre-pool channels: class 0 reads both, class 1 only the second (shared evidence)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def test_the_class_level_drops_the_evidence_its_rivals_share():
    clip = torch.zeros(2, 2, 4, 4)
    clip[0, :, :2] = 1.0  # the first channel fires in the top half
    clip[1, :, 3:] = 1.0  # the shared one in the bottom row
    pyramid = fxcfp.analyze(Shared().eval(), clip, 0, threshold=0.0)
    heat = pyramid.layer_map("fc", mode="evidence")
    assert heat[:, :2].min() > 0
    # the bottom row raises class 1 exactly as much as class 0: no evidence for class 0
    assert torch.equal(heat[:, 2:], torch.zeros_like(heat[:, 2:]))
    assert pyramid.layer_map("fc")[:, 3:].min() > 0  # the paper's map draws it


def test_a_confident_class_keeps_its_evidence():
    # a margin of ~1e3: float32 rounds p to 1 and the log-probability's gradient to 0; the
    # margin over the rivals keeps its direction
    model = _model()
    with torch.no_grad():
        model.fc.weight.mul_(1e4)
    clip = torch.randn(3, 4, 8, 8)
    top = int(model(clip[None]).argmax())
    pyramid = fxcfp.analyze(model, clip, top, threshold=0.3)
    assert pyramid.probability == 1.0
    for level in pyramid.layers:
        assert pyramid.layer_map(level.name, mode="evidence").max() > 0, level.name
    gated = fxcfp.analyze(model, clip, top, threshold=0.3, gate="evidence")
    assert [level.name for level in gated.layers][-1] == "a"  # it reaches the clip's layer


def frozen_in_training() -> Block:
    """A model in training mode with a frozen classifier: what evidence maps must not touch."""
    model = _model()
    for p in model.fc.parameters():
        p.requires_grad_(False)
    return model.train()


def test_evidence_maps_leave_the_model_and_clip_unchanged_also_a_frozen_one():
    model = frozen_in_training()
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
