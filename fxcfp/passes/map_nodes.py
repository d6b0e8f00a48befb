"""Where a weighted layer's maps are drawn (SPEC "Maps of a layer without location").

A layer whose input has no space or time left — a classifier after global pooling, the linear or
``1x1`` layers of a squeeze-excitation gate — has maps without location. SPEC draws them on the
last tensor upstream that still has the clip's dims and whose channels map one-to-one onto the
layer input's channels through weight-free ops: the pre-pool tensor, where the classifier's
selected channels give the paper's "class activation map from the last layer" (its fig. 5).

The one-to-one test is exact, read from the channel labels the channel-map pass propagates: every
channel of the candidate carries one label set for all of its positions, every channel owns an id
that no other channel carries, and channel ``c`` of the layer input carries exactly channel
``c``'s set. A weight-free chain can only unite labels, so then channel ``c`` of the layer input
depends on channel ``c`` of the candidate alone (any other channel would add its private id).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from .labels import NONE
from .weighted_layers import WEIGHTED_LAYER

__all__ = ["find_map_node", "has_location"]


def has_location(shape: tuple[int, ...], channel_dim: int, clip_rank: int) -> bool:
    """Does one sample of an activation, its channel dim removed, have the clip's dims and more
    than one position?"""
    rest = [size for dim, size in enumerate(shape) if dim not in (0, channel_dim)]
    return len(rest) == clip_rank - 2 and math.prod(rest) > 1


def _channel_sets(label: Any, shape: tuple[int, ...], dim: int) -> list[frozenset[int]] | None:
    """The label set of each channel along ``dim``, or ``None`` where a channel's set changes
    with the position (or the label is not one tensor)."""
    if not isinstance(label, torch.Tensor) or label.dim() != len(shape) + 1:
        return None
    if any(label.shape[d] != 1 for d in range(len(shape)) if d != dim):
        return None
    rows = label.movedim(dim, 0).reshape(label.shape[dim], -1)
    if rows.shape[0] != shape[dim]:
        if rows.shape[0] != 1:
            return None
        rows = rows.expand(shape[dim], -1)  # one label for every channel: no private ids below
    # one transfer to Python lists for all rows (a first call's map pass spent more here, id
    # by id, than on the rest of a layer)
    return [frozenset(row).difference((NONE,)) for row in rows.tolist()]


def _maps_one_to_one(candidate: list[frozenset[int]], target: list[frozenset[int]]) -> bool:
    if len(candidate) != len(target) or candidate != target:
        return False
    owners: dict[int, int] = {}
    for channel_set in candidate:
        for i in channel_set:
            owners[i] = owners.get(i, 0) + 1
    return all(any(owners[i] == 1 for i in channel_set) for channel_set in candidate)


def find_map_node(layer_input: fx.Node, channel_dim: int, labels: dict[fx.Node, Any],
                  shapes: dict[fx.Node, tuple[int, ...]], clip_rank: int) -> tuple[str, int]:
    """The FX node (and its channel dim) whose output a layer's maps are drawn on.

    Args:
        layer_input: the node the weighted layer reads.
        channel_dim: the layer input's channel dim (non-negative).
        labels: channel labels of every node run so far (the channel-map pass's).
        shapes: output shape of every tensor node run so far.
        clip_rank: rank of the model input of the layer's pathway (``N x C x T x H x W``: 5).

    Returns:
        ``(layer_input.name, channel_dim)`` where the input has a location, or where no upstream
        tensor qualifies (its maps stay without location: zeros when upsampled); else the
        nearest qualifying upstream node and channel dim 1.
    """
    own = (layer_input.name, channel_dim)
    shape = shapes.get(layer_input)
    if shape is None or has_location(shape, channel_dim, clip_rank):
        return own
    target = _channel_sets(labels.get(layer_input), shape, channel_dim)
    if target is None:
        return own
    node = layer_input
    while node.op != "placeholder" and WEIGHTED_LAYER not in node.meta:
        # follow a chain of one-activation ops: an add of two pooled tensors has no single source
        parents = [p for p in node.all_input_nodes if isinstance(labels.get(p), torch.Tensor)]
        if len(parents) != 1:
            return own
        node = parents[0]
        shape = shapes.get(node)
        if shape is None or len(shape) < 2:
            return own
        if has_location(shape, 1, clip_rank):
            candidate = _channel_sets(labels.get(node), shape, 1)
            if candidate is not None and _maps_one_to_one(candidate, target):
                return node.name, 1
            return own
    return own
