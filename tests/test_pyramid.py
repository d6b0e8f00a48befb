"""The Pyramid result (fxcfp/_pyramid.py): its public views agree with each other, and its
caches never show through its frozen fields."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import fxcfp
from fxcfp import Pyramid
from tests.models import make_resnet3d


@pytest.fixture(scope="module")
def pyramid() -> Pyramid:
    model, shape = make_resnet3d()
    clip = torch.randn(shape[1:], generator=torch.Generator().manual_seed(0))
    return fxcfp.analyze(model, clip, threshold=0.5)


def test_kernel_depths_say_which_kernels_are_in_each_level(pyramid: Pyramid) -> None:
    assert pyramid.layers
    for level in pyramid.layers:
        depths = pyramid.kernel_depths(level.name)
        assert depths.shape == (level.total,)
        assert tuple(np.flatnonzero(depths >= 0)) == level.kernels
        assert int(depths[list(level.kernels)].min()) == level.depth
    assert int((pyramid.depths >= 0).sum()) == pyramid.num_kernels
    assert int((pyramid.depths == 0).sum()) == 1  # the root


def test_passing_pairs_and_edge_arrays_agree_with_the_graph(pyramid: Pyramid) -> None:
    edges = pyramid.edge_arrays()
    assert edges.src.size == edges.dst.size == edges.score.size == pyramid.num_edges
    assert pyramid.graph.number_of_edges() == pyramid.num_edges
    assert sum(level.edges for level in pyramid.layers) == pyramid.num_edges
    for level in pyramid.layers:
        pairs = pyramid.passing_pairs(level.name)
        assert set(pairs.kernel.tolist()) <= set(level.kernels)
        assert ((pairs.score >= 0) & (pairs.score <= 1)).all()


def test_pooled_inputs_have_one_value_per_input_channel(pyramid: Pyramid) -> None:
    root_layer = pyramid.root.rsplit(":", 1)[0]
    pooled = pyramid.pooled_input(root_layer)
    fc = pyramid._plan.layers[pyramid._plan.layer_index(root_layer)]
    assert pooled.shape == (fc.in_channels,)
    assert pyramid.trace_method == "fx"
    with pytest.raises(fxcfp.InvalidArgumentError, match=r"Pyramid: no layer 'nope'"):
        pyramid.kernel_depths("nope")


def test_the_views_are_copies_and_the_fields_stay_frozen(pyramid: Pyramid) -> None:
    depths = pyramid.depths
    depths[:] = 7
    assert int((pyramid.depths == 0).sum()) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        pyramid.threshold = 0.1  # type: ignore[misc]
    # what is computed on use lives in one private field, not in the instance's __dict__
    pyramid.layer_map(pyramid.layers[-1].name)
    assert {"_passing_cache", "_passing_kept", "_activation_cache"}.isdisjoint(vars(pyramid))
    assert pyramid._cache.passing and pyramid._cache.maps["paper"]


def test_a_replaced_pyramid_starts_with_empty_caches(pyramid: Pyramid) -> None:
    pyramid.passing_pairs(pyramid.layers[0].name)
    strict = dataclasses.replace(pyramid, threshold=0.9)
    assert strict._cache is not pyramid._cache and not strict._cache.passing
    # a stricter gate passes no more pairs than the first, recomputed rather than read back
    name = pyramid.layers[0].name
    assert strict.passing_pairs(name).kernel.size <= pyramid.passing_pairs(name).kernel.size
