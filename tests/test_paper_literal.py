"""The paper-literal baseline of the benchmarks: a tree over a chain, exponential in the depth."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from fxcfp.zoo.paper_literal import DNF
from fxcfp.zoo.paper_literal import paper_literal_backstep as backstep


def _gate(activation: torch.Tensor, row: torch.Tensor, threshold: float) -> set[int]:
    """Eq. 1-3 by hand for one kernel: pooled activation × pooled weight, min-max, θ."""
    scores = activation * row
    normalised = (scores - scores.min()) / (scores.max() - scores.min())
    return {i for i in range(len(scores)) if normalised[i] >= threshold}


@pytest.fixture
def tiny() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv3d(8, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(6, 4),
    ).eval()
    return net, torch.rand(1, 3, 4, 8, 8)


def test_depth_one_is_the_gated_classifier_row(tiny: tuple[nn.Module, torch.Tensor]) -> None:
    net, clip = tiny
    with torch.no_grad():
        features = net[:6](clip)[0]
    expected = _gate(features, net[6].weight[2].detach(), 0.5)
    assert expected  # a vacuous tree would prove nothing
    tree, count = backstep(net, clip, 2, 0.5, 1)
    assert tree == {i: {} for i in expected}
    assert count == 1 + len(expected)


def test_depth_two_scores_each_kernel_against_its_input(
    tiny: tuple[nn.Module, torch.Tensor],
) -> None:
    net, clip = tiny
    with torch.no_grad():
        second_input = net[:2](clip)[0].mean(dim=(1, 2, 3))
    pooled = net[2].weight.detach().mean(dim=(2, 3, 4))
    tree, _ = backstep(net, clip, 1, 0.5, 2)
    for kernel, subtree in tree.items():
        assert subtree == {i: {} for i in _gate(second_input, pooled[kernel], 0.5)}


def test_node_count_grows_with_depth(tiny: tuple[nn.Module, torch.Tensor]) -> None:
    net, clip = tiny
    # θ = 0 passes every channel: the tree is complete, 1 + 6 + 6·8 + 6·8·3 nodes — each kernel
    # is repeated under every parent instead of shared, which is what makes it exponential.
    counts = [backstep(net, clip, 0, 0.0, depth)[1] for depth in range(4)]
    assert counts == [1, 7, 55, 199]
    gated = [backstep(net, clip, 0, 0.5, depth)[1] for depth in range(4)]
    assert gated[0] < gated[1] < gated[3]
    assert gated == sorted(gated)
    # Past the first layer of the chain there is nothing left to expand.
    assert backstep(net, clip, 0, 0.0, 10)[1] == 199


def test_grouped_kernels_are_scored_against_the_first_group() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv3d(3, 4, 1),
        nn.Conv3d(4, 4, 1, groups=2),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).eval()
    tree, _ = backstep(net, torch.rand(1, 3, 2, 4, 4), 0, 0.0, 2)
    assert set(tree) == {0, 1, 2, 3}
    # Kernels 2 and 3 read channels 2-3, yet the public code maps their rows onto channels 0-1.
    assert all(set(subtree) == {0, 1} for subtree in tree.values())


def test_mismatched_widths_wrap_modulo_the_previous_layer() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv3d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 8, 3)).eval()
    clip = torch.rand(1, 3, 2, 2, 2)
    pooled = net[0].weight.detach().flatten(1)
    tree, _ = backstep(net, clip, 0, 0.5, 2)
    assert max(tree) >= 2  # a feature past the conv's width was selected
    for feature, subtree in tree.items():
        # Feature f of the flattened 2×8 map is taken as conv kernel f mod 2.
        expected = _gate(clip[0].mean(dim=(1, 2, 3)), pooled[feature % 2], 0.5)
        assert subtree == {i: {} for i in expected}


def test_dnf_once_the_budget_is_spent() -> None:
    torch.manual_seed(3)
    layers = [nn.Conv3d(3, 16, 1)] + [nn.Conv3d(16, 16, 1) for _ in range(5)]
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    start = time.perf_counter()
    # θ = 0 asks for 16^6 nodes: far more than a 50 ms budget allows.
    with pytest.raises(DNF, match="no result within 0.05 s"):
        backstep(net, torch.rand(1, 3, 2, 4, 4), 0, 0.0, 7, timeout_s=0.05)
    assert time.perf_counter() - start < 5.0
    assert issubclass(DNF, TimeoutError)


def test_out_of_range_arguments_are_rejected(tiny: tuple[nn.Module, torch.Tensor]) -> None:
    net, clip = tiny
    with pytest.raises(ValueError, match=r"cls must be in \[0, 4\)"):
        backstep(net, clip, 4, 0.5, 1)
    with pytest.raises(ValueError, match="threshold must be in"):
        backstep(net, clip, 0, 1.5, 1)
    with pytest.raises(ValueError, match="has no Conv"):
        backstep(nn.Sequential(nn.ReLU()), clip, 0, 0.5, 1)
