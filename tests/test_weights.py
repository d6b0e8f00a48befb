"""Parametrised and pruned weights: the pooled weight is the one the layer uses on this call
(SPEC "weighted layer"), and the model, spectral norm's vectors included, is never changed."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrizations, parametrize, prune

import fxcfp
from tests.models import assert_unchanged, snapshot


class Scaled(nn.Module):
    """A custom parametrization: each kernel scaled by its own factor."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        factors = torch.linspace(-1.0, 2.0, weight.shape[0]).reshape(-1, *[1] * (weight.dim() - 1))
        return weight * factors


def _old_weight_norm(module: nn.Module) -> None:
    with warnings.catch_warnings():  # torch deprecates the hook API; models still use it
        warnings.simplefilter("ignore", FutureWarning)
        nn.utils.weight_norm(module)


PARAMETRIZE = {
    "weight_norm": lambda m: parametrizations.weight_norm(m),
    "spectral_norm": lambda m: parametrizations.spectral_norm(m),
    "old_weight_norm": _old_weight_norm,
    "old_spectral_norm": lambda m: nn.utils.spectral_norm(m),
    "custom": lambda m: parametrize.register_parametrization(m, "weight", Scaled()),
    "l1_prune": lambda m: prune.l1_unstructured(m, "weight", amount=0.5),
    "random_prune": lambda m: prune.random_unstructured(m, "weight", amount=0.3),
}


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 4))


def _parametrised(layers: list[tuple[int, str]]) -> nn.Sequential:
    model = _net()
    torch.manual_seed(5)  # random pruning draws its mask
    for index, name in layers:
        PARAMETRIZE[name](model[index])
    return model


def _plain_twin(layers: list[tuple[int, str]]) -> nn.Sequential:
    """A plain model holding the weights a parametrised one uses in an eval-mode forward, read
    the way each API exposes them (on a second copy: the model itself is never run here)."""
    model = _parametrised(layers).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 8))  # hook-based APIs compute the weight in a pre-hook
        weights = {i: model[i].weight.detach().clone() for i in (0, 3, 7)}
    plain = _net()
    with torch.no_grad():
        for i, weight in weights.items():
            plain[i].weight.copy_(weight)
        for i in (0, 3, 7):
            plain[i].bias.copy_(model[i].bias)
        plain[1].load_state_dict(model[1].state_dict())
    return plain


@settings(deadline=None, max_examples=12)
@given(st.lists(st.tuples(st.sampled_from([0, 3, 7]), st.sampled_from(sorted(PARAMETRIZE))),
                min_size=1, max_size=3, unique_by=lambda t: t[0]),
       st.booleans())
def test_parametrised_layers_explain_like_plain_layers_with_the_weight_they_use(layers, train):
    model = _parametrised(layers).train(train)
    plain = _plain_twin(layers)
    snap = snapshot(model)  # u/v of spectral norm, masks, originals, training flags
    clip = torch.randn(3, 8, 8)
    got = fxcfp.analyze(model, clip, 1, threshold=0.3)
    assert_unchanged(model, snap)
    want = fxcfp.analyze(plain, clip, 1, threshold=0.3)
    assert torch.allclose(got.logits, want.logits, atol=1e-5)
    assert sorted(got.graph.edges) == sorted(want.graph.edges)
    for u, v, score in got.graph.edges(data="score"):
        assert want.graph.edges[u, v]["score"] == pytest.approx(score, abs=1e-4)


def test_spectral_norm_in_train_mode_keeps_its_vectors_across_calls():
    model = _net()
    parametrizations.spectral_norm(model[3])
    nn.utils.spectral_norm(model[7])
    model.train()
    snap = snapshot(model)
    analyzer = fxcfp.Analyzer(model)
    for _ in range(3):
        analyzer.analyze(torch.randn(3, 8, 8))
    assert_unchanged(model, snap)


def test_an_analyzer_follows_a_parametrised_weight_as_it_is_trained():
    model = _net()
    parametrizations.weight_norm(model[7])
    analyzer = fxcfp.Analyzer(model)
    clip = torch.randn(3, 8, 8)
    first = analyzer.analyze(clip, 0, threshold=0.5)
    with torch.no_grad():
        model[7].parametrizations.weight.original1[0].neg_()  # weight_v of class 0
    second = analyzer.analyze(clip, 0, threshold=0.5)
    assert set(first.graph.successors("7:0")) != set(second.graph.successors("7:0"))


def test_a_parametrised_weight_on_the_export_path_is_refused_by_name():
    from tests.test_trace import TwoPathways

    model = TwoPathways()
    parametrizations.weight_norm(model.head)
    snap = snapshot(model)
    clips = [torch.randn(3, 2, 4, 4), torch.randn(3, 4, 4, 4)]
    with pytest.raises(fxcfp.UnsupportedOpError,
                       match=r"layer 'head' .*computed in forward.*parametrization"):
        fxcfp.Analyzer(model, trace="export").analyze(clips)
    assert_unchanged(model, snap)
    # symbolic tracing keeps the module: its parametrised weight is read from it
    pyramid = fxcfp.analyze(model, clips, 0, threshold=0.0)
    assert pyramid.trace_method == "fx" and "head" in {level.name for level in pyramid.layers}
    assert_unchanged(model, snap)
