"""The back-step's tensor kernels against plain formulas."""

from __future__ import annotations

import pytest
import torch

from fxcfp._backstep import UNREACHED, LayerTensors, _channel_depth, gate, normalised


def _dense(passed: torch.Tensor, depth: torch.Tensor, groups: int) -> torch.Tensor:
    batch, _, per_group = passed.shape
    child = torch.where(passed, depth[..., None] + 1, UNREACHED)
    return child.view(batch, groups, -1, per_group).amin(2).reshape(batch, -1)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("uniform", [True, False])
def test_channel_depth_fast_path_equals_the_masked_min(groups, uniform):
    torch.manual_seed(groups)
    passed = torch.rand(3, 8, 6) > 0.7
    if uniform:  # one depth for every expanded kernel; the rest unreached
        depth = torch.where(torch.rand(3, 8) > 0.3, 2, UNREACHED).to(torch.int32)
    else:
        depth = torch.randint(0, 4, (3, 8), dtype=torch.int32)
    limit = 5
    passed &= (depth < limit)[..., None]
    assert torch.equal(_channel_depth(passed, depth, limit, groups), _dense(passed, depth, groups))


def test_gate_is_eq_1_and_2_with_exact_ends():
    pooled = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    weight = torch.tensor([[0.5, 0.1, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0]])
    layer = LayerTensors(0, 1, weight, None, torch.zeros(4, 1, dtype=torch.long))
    scores, low, span, passed = gate(pooled, layer, 0.6, None)
    n = normalised(scores, low, span)
    expected = (scores - scores.amin(-1, keepdim=True)) / (
        scores.amax(-1, keepdim=True) - scores.amin(-1, keepdim=True))
    assert torch.allclose(n, expected)
    assert torch.equal(passed, n >= 0.6)
    assert torch.equal(gate(pooled, layer, 1.0, None)[3][0], n[0] == 1.0)
    assert bool(gate(pooled, layer, 0.0, None)[3].all())
    # top_k keeps the best passing channels, lower index first on ties
    assert gate(pooled, layer, 0.0, 2)[3][0].sum(-1).tolist() == [2, 2]
    assert gate(pooled, layer, 0.0, 2)[3][0, 1].tolist() == [False, False, True, True]
