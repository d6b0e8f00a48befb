"""The back-step as it was before its early exit: every layer one dense pass over all kernels.

Kept as the reference the early-exit back-step (``fxcfp._backstep``) must equal bit for bit:
the same gate, the same masked minimum, no chunks, no sort, and the edges counted the way the
pyramid counted them before the back-step did (every passing pair of every expanded kernel,
one edge per member of its channel's map).
"""

from __future__ import annotations

import numpy as np
import torch

from fxcfp._backstep import UNREACHED, LayerTensors


def dense_gate(pooled: torch.Tensor, layer: LayerTensors, threshold: float, top_k: int | None,
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


def dense_backstep(layers: list[LayerTensors], pooled: list[torch.Tensor], roots: torch.Tensor,
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
        *_, passed = dense_gate(a, layer, threshold, top_k, expand=kernel_depth < limit)
        channel_depth = _channel_depth(passed, kernel_depth, limit, layer.groups)
        width = layer.sources.shape[1]
        values = channel_depth[:, :, None].expand(-1, -1, width).reshape(batch, -1)
        depth.scatter_reduce_(1, layer.sources.reshape(1, -1).expand(batch, -1), values,
                              reduce="amin")
    return depth[:, :total_ids]


def dense_edge_counts(layers: list[LayerTensors], pooled: list[torch.Tensor], depth: np.ndarray,
                      *, threshold: float, max_depth: int | None, top_k: int | None,
                      sources: list[torch.Tensor]) -> np.ndarray:
    """Edges leaving each layer of one sample (layers without shared sources), from the passing
    pairs of every expanded kernel: ``sum(members[channel])`` over the pairs."""
    limit = UNREACHED if max_depth is None else max_depth
    counts = np.zeros(len(layers), dtype=np.int64)
    for index, (layer, a, src) in enumerate(zip(layers, pooled, sources)):
        out_channels, per_group = layer.weight.shape
        rows = np.flatnonzero(depth[layer.first_id: layer.first_id + out_channels] < limit)
        if rows.size == 0:
            continue
        *_, passed = dense_gate(a[None], layer, threshold, top_k, torch.from_numpy(rows))
        r, cand = passed[0].nonzero(as_tuple=True)
        kernel = rows[r.numpy()]
        channel = (kernel // (out_channels // layer.groups)) * per_group + cand.numpy()
        members = (src >= 0).sum(1).numpy()
        counts[index] = int(members[channel].sum())
    return counts


def assert_matches_dense(pyramid: object, *, thresholds: tuple[float, ...] = (0.6,),
                         depths: tuple[int | None, ...] = (None, 3),
                         top_ks: tuple[int | None, ...] = (None,)) -> None:
    """The back-step on a pyramid's captured inputs equals the dense reference, depth for depth,
    and the pyramid's edge counts (from the back-step, the early exit's remainder added) equal
    the dense count, for each option."""
    import dataclasses

    from fxcfp._backstep import backstep

    plan, tensors = pyramid._plan, list(pyramid._tensors)
    pooled = [p[None] for p in pyramid._pooled]
    roots = torch.from_numpy(np.flatnonzero(pyramid._depth == 0))[None].to(pooled[0].device)
    sources = [layer.sources for layer in plan.layers]
    for threshold in thresholds:
        for max_depth in depths:
            for top_k in top_ks:
                options = {"threshold": threshold, "max_depth": max_depth, "top_k": top_k}
                ours = backstep(tensors, pooled, roots, plan.total_ids, **options)
                reference = dense_backstep(tensors, pooled, roots, plan.total_ids, **options)
                assert torch.equal(ours.depth, reference), f"depths differ at {options}"
                depth = ours.depth[0].cpu().numpy()
                found = dataclasses.replace(
                    pyramid, **options, _depth=depth,
                    _counted=(ours.edges[0].cpu().numpy(), ours.visited[0].cpu().numpy()))
                expected = dense_edge_counts(tensors, [p[0] for p in pooled], depth,
                                             sources=sources, **options)
                plain = [i for i, layer in enumerate(plan.layers) if not layer.shared_sources]
                assert np.array_equal(found._edge_counts[plain], expected[plain]), (
                    f"edge counts differ at {options}")
