"""The back-step (SPEC "The back-step"), batched over kernels and samples, on the model's device.

The whole class dependency graph is determined by one number per kernel: its depth, the fewest
back-steps from the root. Layers are visited in reverse topological order, so when a layer is
reached every kernel that can select its kernels has been visited and their depths are final.
One layer is a handful of dense tensor operations over all its kernels at once (a kernel that is
not selected, or too deep to expand, is masked rather than removed, so shapes stay static and
nothing waits for the host). The edges are not kept: they follow from the depths, and
:func:`gate` recomputes them for the selected kernels only when the graph is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["UNREACHED", "LayerTensors", "backstep", "gate", "normalised"]

UNREACHED = 2**30


@dataclass(frozen=True)
class LayerTensors:
    """What the back-step needs of one weighted layer, on the model's device.

    Attributes:
        first_id: global id of the layer's kernel 0.
        groups: convolution groups.
        weight: pooled weight, ``out_channels x in_channels/groups`` (SPEC step 2).
        group_of_kernel: ``out_channels`` group index of each kernel (``None`` when groups=1).
        sources: ``in_channels x K`` global ids of the channel map, the padding pointing at a
            sink id one past the last real id.
    """

    first_id: int
    groups: int
    weight: torch.Tensor
    group_of_kernel: torch.Tensor | None
    sources: torch.Tensor


def gate(pooled: torch.Tensor, layer: LayerTensors, threshold: float, top_k: int | None,
         rows: torch.Tensor | None = None, expand: torch.Tensor | None = None
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores and the gate of a layer's kernels (SPEC steps 3-6).

    ``n >= threshold`` is evaluated as ``s >= min + threshold * (max - min)``: the same test
    without a division, one comparison against a per-kernel bar, and exact at both ends (0
    passes every channel, 1 the best). The back-step and the graph both call this function on
    the same device, so they agree bit for bit on which channels pass.

    Args:
        pooled: pooled input activations ``B x in_channels``.
        layer: the layer.
        threshold: the gate's threshold in ``[0, 1]``.
        top_k: keep at most this many passing channels per kernel (``None``: all).
        rows: only these kernels (all when ``None``).
        expand: ``B x kernels`` mask of the kernels to expand; the others pass nothing.

    Returns:
        ``(scores, low, span, passed)`` where ``scores`` and ``passed`` are
        ``B x kernels x in_channels/groups`` and ``low``/``span`` the per-kernel minimum and
        range (``B x kernels x 1``); ``n = (scores - low) / span``.
    """
    batch = pooled.shape[0]
    weight = layer.weight if rows is None else layer.weight[rows]
    per_group = weight.shape[1]
    if layer.group_of_kernel is None:
        activations = pooled[:, None, :]
    else:
        # a grouped kernel only reads its own group's channels
        groups = layer.group_of_kernel if rows is None else layer.group_of_kernel[rows]
        activations = pooled.view(batch, layer.groups, per_group)[:, groups]
    scores = activations * weight
    low = scores.amin(-1, keepdim=True)
    high = scores.amax(-1, keepdim=True)
    span = high - low
    # the bar is per kernel, so the one full-size test is a comparison; at 1 it is the maximum
    # itself, so the best channel passes whatever the rounding of low + span
    bar = high if threshold == 1 else low + threshold * span
    if per_group == 1:
        bar = torch.full_like(bar, float("-inf"))  # depth-wise: the one channel is a link
    else:
        bar = bar.masked_fill(span == 0, float("inf"))  # all equal: nothing passes
    if expand is not None:
        bar = bar.masked_fill(~expand[..., None], float("inf"))  # per kernel, not per channel
    passed = scores >= bar
    if top_k is not None and top_k < per_group:
        ranked = scores.masked_fill(~passed, float("-inf"))
        order = torch.sort(ranked, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(
            -1, order, torch.arange(per_group, device=order.device).expand_as(order))
        passed &= rank < top_k
    return scores, low, span, passed


def normalised(scores: torch.Tensor, low: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Eq. 1: per-kernel min-max scaled scores (1 where a kernel reads one channel)."""
    return torch.where(span == 0, 1.0, (scores - low) / torch.where(span == 0, 1, span))


def _channel_depth(passed: torch.Tensor, kernel_depth: torch.Tensor, limit: int,
                   groups: int) -> torch.Tensor:
    """For each input channel, one more than the shallowest kernel that selects it."""
    batch, _, per_group = passed.shape
    grouped = passed.view(batch, groups, -1, per_group)
    if passed.device.type == "cpu":
        # where every expanded kernel of the layer has one depth (the common case), "selected
        # by any" is all there is to know: a boolean max, ~20x cheaper than a masked min. On
        # a GPU the test would wait for the device, so it keeps the dense form below.
        expanded = kernel_depth < limit
        shallowest = kernel_depth.masked_fill(~expanded, UNREACHED).amin(1)
        deepest = kernel_depth.masked_fill(~expanded, -1).amax(1)
        if bool(((shallowest == deepest) | (deepest < 0)).all()):
            reached = grouped.amax(2).reshape(batch, -1)
            return torch.where(reached, shallowest[:, None] + 1, UNREACHED).to(torch.int32)
    child = torch.where(passed, kernel_depth[..., None] + 1, UNREACHED)
    return child.view(batch, groups, -1, per_group).amin(2).reshape(batch, -1)


def backstep(layers: list[LayerTensors], pooled: list[torch.Tensor], roots: torch.Tensor,
             total_ids: int, *, threshold: float, max_depth: int | None,
             top_k: int | None) -> torch.Tensor:
    """Depth of every kernel and input channel for each sample.

    Args:
        layers: the weighted layers in topological order.
        pooled: per layer, its pooled input activations ``B x in_channels``.
        roots: ``B x R`` global ids of each sample's root kernels (sink id for padding).
        total_ids: number of real global ids.
        threshold, max_depth, top_k: as in :func:`fxcfp.analyze`.

    Returns:
        ``B x total_ids`` int32 depths, :data:`UNREACHED` where a kernel is not in the pyramid.
        The tensor stays on the device; nothing here synchronises with the host.
    """
    batch = roots.shape[0]
    device = roots.device
    depth = torch.full((batch, total_ids + 1), UNREACHED, dtype=torch.int32, device=device)
    depth.scatter_(1, roots, 0)
    limit = UNREACHED if max_depth is None else max_depth
    for layer, a in zip(reversed(layers), reversed(pooled)):
        out_channels, per_group = layer.weight.shape
        kernel_depth = depth[:, layer.first_id: layer.first_id + out_channels]
        *_, passed = gate(a, layer, threshold, top_k, expand=kernel_depth < limit)
        channel_depth = _channel_depth(passed, kernel_depth, limit, layer.groups)
        width = layer.sources.shape[1]
        values = channel_depth[:, :, None].expand(-1, -1, width).reshape(batch, -1)
        depth.scatter_reduce_(1, layer.sources.reshape(1, -1).expand(batch, -1), values,
                              reduce="amin")
    return depth[:, :total_ids]
