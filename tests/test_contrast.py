"""Contrastive pyramids: ``fxcfp.analyze(..., contrast=...)`` (fxcfp/_contrast.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import fxcfp
from tests.models import assert_unchanged, snapshot


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 8, 3, padding=1)
        self.b = nn.Conv3d(8, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12, 6)

    def forward(self, x):
        x = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc(x.mean((2, 3, 4)))


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Net().eval()


def _clip(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def _root_channels(pyramid: fxcfp.Pyramid) -> set[int]:
    return {pyramid.graph.nodes[c]["channel"] for c in pyramid.graph.successors(pyramid.root)}


def test_the_root_is_scored_with_the_classifier_row_difference():
    model, clip = _net(), _clip()
    pyramid = fxcfp.analyze(model, clip, 1, contrast=4, threshold=0.6)
    assert pyramid.target == 1 and pyramid.contrast == 4
    with torch.no_grad():
        pooled = torch.relu(model.b(torch.relu(model.a(clip[None])))).mean((2, 3, 4))[0]
        scores = pooled * (model.fc.weight[1] - model.fc.weight[4])
    n = (scores - scores.min()) / (scores.max() - scores.min())
    assert _root_channels(pyramid) == set(torch.nonzero(n >= 0.6).flatten().tolist())
    assert pyramid.graph.graph["contrast"] == 4
    assert "class 1 and not class 4" in pyramid.summary()
    assert fxcfp.analyze(model, clip, 1).contrast is None


def test_the_contrast_is_unchanged_by_a_softmax_neutral_shift_of_the_classifier():
    model, clip = _net(), _clip()
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.fc.weight -= shifted.fc.weight.mean(0, keepdim=True)
        assert torch.allclose(model(clip[None]).softmax(1), shifted(clip[None]).softmax(1),
                              atol=1e-6)
    one = fxcfp.analyze(model, clip, 2, contrast="runner-up")
    two = fxcfp.analyze(shifted, clip, 2, contrast="runner-up")
    assert one.contrast == two.contrast
    assert np.array_equal(one.depths, two.depths)
    evidence = [p.layer_map("b", mode="evidence") for p in (one, two)]
    assert torch.allclose(*evidence, rtol=1e-4, atol=1e-6)


def test_a_versus_b_and_b_versus_a_select_and_draw_opposite_evidence():
    model, clip = _net(), _clip()
    ab = fxcfp.analyze(model, clip, 0, contrast=3)
    ba = fxcfp.analyze(model, clip, 3, contrast=0)
    # s_AB = -s_BA: min-max normalised n_AB = 1 - n_BA, so at 0.6 no channel passes both
    assert _root_channels(ab) and _root_channels(ba)
    assert not _root_channels(ab) & _root_channels(ba)
    # with every channel passing, the evidence of y_A - y_B and of y_B - y_A are the two
    # halves of one signed map: each is positive exactly where the other is zero
    ab = fxcfp.analyze(model, clip, 0, contrast=3, threshold=0.0, max_depth=1)
    ba = fxcfp.analyze(model, clip, 3, contrast=0, threshold=0.0, max_depth=1)
    x, y = ab.layer_map("fc", mode="evidence"), ba.layer_map("fc", mode="evidence")
    assert float(x.max()) > 0 and float(y.max()) > 0
    assert float((x * y).abs().max()) == 0.0
    assert bool(((x > 0) | (y > 0)).float().mean() > 0.5)


def test_runner_up_is_the_best_other_class():
    model, clip = _net(), _clip()
    with torch.no_grad():
        order = model(clip[None])[0].argsort(descending=True).tolist()
    assert fxcfp.analyze(model, clip, contrast="runner-up").contrast == order[1]
    assert fxcfp.analyze(model, clip, order[3], contrast="runner-up").contrast == order[0]


def test_batch_contrast_matches_single_calls_and_leaves_the_model_unchanged():
    model = _net()
    clips = torch.stack([_clip(1), _clip(2), _clip(3)])
    snap = snapshot(model)
    batch = fxcfp.analyze_batch(model, clips, [0, 1, 2], contrast=5)
    for i, pyramid in enumerate(batch):
        single = fxcfp.analyze(model, clips[i], i, contrast=5)
        assert pyramid.contrast == 5
        assert np.array_equal(pyramid.depths, single.depths)
        assert torch.allclose(pyramid.layer_map("b", mode="evidence"),
                              single.layer_map("b", mode="evidence"), atol=1e-6)
    assert_unchanged(model, snap)
    analyzer = fxcfp.Analyzer(model)
    assert analyzer.analyze(clips[0], 1, contrast=0).contrast == 0


@pytest.mark.parametrize(
    ("cls", "contrast", "error", "words"),
    [
        (2, 2, fxcfp.InvalidArgumentError,
         r"fxcfp.analyze: contrast=2 is the class explained \(cls=2\).*contrast='runner-up'"),
        (2, 6, fxcfp.InvalidArgumentError,
         r"fxcfp.analyze: contrast=6 is out of range; the model has 6 classes \(0..5\)"),
        (2, -1, fxcfp.InvalidArgumentError, "contrast=-1 is out of range"),
        (2, 1.0, fxcfp.InvalidTypeError,
         "fxcfp.analyze: contrast must be None, an int class index or 'runner-up', not float"),
        (2, True, fxcfp.InvalidTypeError, "not bool"),
        (2, "runnerup", fxcfp.InvalidTypeError, "not str 'runnerup'"),
    ],
)
def test_bad_contrasts_are_refused_with_the_fix(cls, contrast, error, words):
    with pytest.raises(error, match=words):
        fxcfp.analyze(_net(), _clip(), cls, contrast=contrast)


def test_a_batch_whose_clip_explains_the_contrast_class_names_the_clip():
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"fxcfp.analyze_batch: contrast=1 is the class explained of clip 1"):
        fxcfp.analyze_batch(_net(), torch.stack([_clip(1), _clip(2)]), [0, 1], contrast=1)


# --- the evidence gate (fxcfp/_gate.py) --------------------------------------------------------


def _contributions(model: Net, clip: torch.Tensor, cls: int) -> dict[str, torch.Tensor]:
    """Per input channel of each layer: sum of d log p_cls / dA * A, by plain autograd."""
    x = clip[None].clone().requires_grad_(True)
    a = torch.relu(model.a(x))
    b = torch.relu(model.b(a))
    pooled = b.mean((2, 3, 4))
    logp = model.fc(pooled).log_softmax(1)[0, cls]
    grads = torch.autograd.grad(logp, [x, a, pooled])
    return {name: (g * v)[0].reshape(v.shape[1], -1).sum(1).detach()
            for name, g, v in zip(["a", "b", "fc"], grads, [x, a, pooled])}


def test_the_evidence_gate_links_only_channels_that_carry_the_class():
    from fxcfp._gate import EVIDENCE_FLOOR

    model, clip = _net(), _clip()
    paper = fxcfp.analyze(model, clip, 1, threshold=0.3)
    gated = fxcfp.analyze(model, clip, 1, threshold=0.3, gate="evidence")
    assert gated.gate == "evidence" and paper.gate == "paper"
    contributions = _contributions(model, clip, 1)
    linked = 0
    for kernel, channel in gated.graph.edges:
        layer = kernel.rsplit(":", 1)[0]
        # the linked kernel's channel is the layer's input channel: no add or concat here
        c = gated.graph.nodes[channel]["channel"]
        share = contributions[layer]
        assert share[c] > 0 and share[c] >= EVIDENCE_FLOOR * share.max() - 1e-9
        assert paper.graph.has_edge(kernel, channel)  # the paper's gate passed it too
        linked += 1
    assert 0 < linked < paper.graph.number_of_edges()
    assert gated.num_edges == gated.graph.number_of_edges()  # counted the way it is built
    assert gated.num_kernels < paper.num_kernels


def test_the_evidence_gate_in_a_batch_matches_single_calls_and_leaves_the_model_unchanged():
    model = _net()
    clips = torch.stack([_clip(1), _clip(2)])
    snap = snapshot(model)
    batch = fxcfp.analyze_batch(model, clips, [0, 3], gate="evidence", threshold=0.3)
    for i, pyramid in enumerate(batch):
        single = fxcfp.analyze(model, clips[i], [0, 3][i], gate="evidence", threshold=0.3)
        assert np.array_equal(pyramid.depths, single.depths)
        assert set(pyramid.graph.edges) == set(single.graph.edges)
    assert_unchanged(model, snap)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("gate", ["Evidence", "class", None, 1])
def test_unknown_gates_are_refused(gate):
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"fxcfp.analyze: gate=.* is not a gate; use gate='paper'"):
        fxcfp.analyze(_net(), _clip(), gate=gate)
