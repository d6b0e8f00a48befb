"""The back-step (SPEC "The back-step"), batched over kernels and samples, on the model's device.

The whole class dependency graph is determined by one number per kernel: its depth, the fewest
back-steps from the root. Layers are visited in reverse topological order, so when a layer is
reached every kernel that can select its kernels has been visited and their depths are final.
An input channel's depth is one more than the shallowest kernel that selects it.

That minimum is what makes the back-step cheap on the CPU: a layer's expanded kernels are visited
in ascending depth, in chunks (64 rows, then doubling), and the visit stops as soon as no
remaining kernel can lower any input channel's depth. Sixty-four kernels usually select every
channel between them, so most of a large layer's ``kernels x channels`` scores are never
computed. The answer is the dense one bit for bit: a kernel's gate reads only its own row, and a
minimum does not depend on the order it is taken in. The stop test reads a value on the host, so
on a GPU each layer is one dense pass over all its kernels instead (masked, static shapes, no
synchronisation: it can be captured in a CUDA graph).

The edges are not kept: they follow from the depths, and :func:`gate` recomputes them for the
selected kernels only when the graph is asked for. Their number is counted on the way, for the
kernels the back-step visits; the pyramid counts those an early exit skipped only when asked
(or the fused pass counts them too, with ``count=True``, at the cost of their gates).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from . import _fused

__all__ = ["CHUNK", "UNREACHED", "Backstep", "LayerTensors", "backstep", "gate", "normalised"]

UNREACHED = 2**30
# kernels of a layer's first chunk; each next chunk doubles, so a layer costs O(log) chunks
CHUNK = 64


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
        members: ``in_channels`` int32, the real producers in each channel's map: the edges
            one passing ``(kernel, channel)`` pair gives (``None``: not counted).
        shared_sources: some producer feeds several input channels (a flatten), so pairs do not
            count edges one to one; the pyramid counts such a layer from its edges.
    """

    first_id: int
    groups: int
    weight: torch.Tensor
    group_of_kernel: torch.Tensor | None
    sources: torch.Tensor
    members: torch.Tensor | None = None
    shared_sources: bool = False

    @cached_property
    def fused_arguments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The layer's arguments to the C++ pass (:func:`fxcfp._fused.prepared`), made once:
        the analyzer keeps its layers per plan, so a call passes them as they are."""
        return _fused.prepared(self)


@dataclass(frozen=True)
class Backstep:
    """What one back-step found, every tensor on the model's device.

    Attributes:
        depth: ``B x total_ids`` int32 depths, :data:`UNREACHED` where a kernel is not in the
            pyramid.
        edges: ``B x layers`` int64 edges leaving the kernels the back-step visited; ``-1`` for a
            layer with shared sources (not counted here).
        visited: ``B x layers`` int64: how many of each layer's kernels, taken in ascending depth
            (a stable sort), were visited; the layer's width when all were, and then ``edges``
            is the layer's whole count.
    """

    depth: torch.Tensor
    edges: torch.Tensor
    visited: torch.Tensor


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
        rows: only these kernels: ``kernels`` for every sample, or ``B x kernels``, one set per
            sample (all when ``None``).
        expand: ``B x kernels`` mask of the kernels to expand; the others pass nothing.

    Returns:
        ``(scores, low, span, passed)`` where ``scores`` and ``passed`` are
        ``B x kernels x in_channels/groups`` and ``low``/``span`` the per-kernel minimum and
        range (``B x kernels x 1``); ``n = (scores - low) / span``.
    """
    batch = pooled.shape[0]
    weight = layer.weight if rows is None else layer.weight[rows]
    per_group = layer.weight.shape[1]
    if layer.group_of_kernel is None:
        activations = pooled[:, None, :]
    else:
        # a grouped kernel only reads its own group's channels
        groups = layer.group_of_kernel if rows is None else layer.group_of_kernel[rows]
        grouped = pooled.view(batch, layer.groups, per_group)
        if groups.dim() == 2:  # rows of their own for each sample
            activations = grouped.gather(1, groups[..., None].expand(-1, -1, per_group))
        else:
            activations = grouped[:, groups]
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


def _one_depth(kernel_depth: torch.Tensor, expand: torch.Tensor) -> torch.Tensor | None:
    """The one depth of each sample's expanded kernels, when every sample has at most one
    (``B``, :data:`UNREACHED` where none is expanded); else ``None``. Reads the host."""
    shallowest = kernel_depth.masked_fill(~expand, UNREACHED).amin(1)
    deepest = kernel_depth.masked_fill(~expand, -1).amax(1)
    if bool(((shallowest == deepest) | (deepest < 0)).all()):
        return shallowest
    return None


def _visit(pooled: torch.Tensor, layer: LayerTensors, rows: torch.Tensor | None,
           kernel_depth: torch.Tensor, expand: torch.Tensor, threshold: float,
           top_k: int | None, channel_depth: torch.Tensor, *, host: bool) -> torch.Tensor:
    """Lower ``channel_depth`` (``B x in_channels``, in place) by what the kernels ``rows``
    (``B x kernels``; every kernel when ``None``) of depths ``kernel_depth`` select where
    ``expand``; returns the edges those kernels give, per sample (zeros when not counted).

    ``host``: the caller is on the CPU and may read values back to pick a cheaper form."""
    *_, passed = gate(pooled, layer, threshold, top_k, rows, expand)
    batch, _, per_group = passed.shape
    # a grouped layer's kernels come in group order (rows is None for it): kernel axis 2
    grouped = passed.view(batch, layer.groups, -1, per_group)
    shallowest = _one_depth(kernel_depth, expand) if host else None
    reached: torch.Tensor | None
    if layer.members is not None:
        # how many kernels select each channel: the edges, and whether it is reached at all
        selecting = grouped.sum(2, dtype=torch.int32).reshape(batch, -1)
        edges = (selecting * layer.members).sum(1, dtype=torch.int64)
        reached = selecting > 0
    else:
        edges = torch.zeros(batch, dtype=torch.int64, device=passed.device)
        reached = grouped.amax(2).reshape(batch, -1) if shallowest is not None else None
    if shallowest is not None:
        # every expanded kernel at one depth (the common case): "selected by any" is all there
        # is to know, and the masked minimum below is not needed
        assert reached is not None  # both branches above set it when shallowest is set
        lowered = torch.where(reached, shallowest[:, None] + 1, UNREACHED).to(torch.int32)
    else:
        child = torch.where(passed, kernel_depth[..., None] + 1, UNREACHED)
        lowered = child.view(batch, layer.groups, -1, per_group).amin(2).reshape(batch, -1)
    torch.minimum(channel_depth, lowered, out=channel_depth)
    return edges


def _early_exit(pooled: torch.Tensor, layer: LayerTensors, kernel_depth: torch.Tensor,
                limit: int, threshold: float, top_k: int | None, channel_depth: torch.Tensor,
                edges: torch.Tensor, visited: torch.Tensor) -> None:
    """One layer's kernels in ascending depth, chunk by chunk, until none left can lower a
    channel's depth (CPU: the stop test reads the host once per chunk)."""
    out_channels = kernel_depth.shape[1]
    sorted_depth, order = kernel_depth.sort(dim=1, stable=True)
    done = torch.zeros(kernel_depth.shape[0], dtype=torch.bool, device=kernel_depth.device)
    start, size = 0, CHUNK
    while True:
        stop = min(start + size, out_channels)
        depth = sorted_depth[:, start:stop]
        # a sample that is done adds nothing more: its count stops where its visit did
        expand = (depth < limit) & ~done[:, None]
        edges += _visit(pooled, layer, order[:, start:stop], depth, expand, threshold, top_k,
                        channel_depth, host=True)
        start, size = stop, 2 * size
        if start == out_channels:
            return
        following = sorted_depth[:, start]
        # a kernel of depth d gives depth d + 1: no remaining one can lower a channel at or
        # below that, and none past max_depth is expanded
        finished = ((following >= limit) | (channel_depth <= following[:, None] + 1).all(1)
                    ) & ~done
        visited.masked_fill_(finished, start)
        done |= finished
        if bool(done.all()):
            return


def backstep(layers: list[LayerTensors], pooled: list[torch.Tensor], roots: torch.Tensor,
             total_ids: int, *, threshold: float, max_depth: int | None,
             top_k: int | None, sync: bool | None = None, fused: bool | None = None,
             count: bool = False) -> Backstep:
    """Depth of every kernel and input channel for each sample, and the edges counted on the way.

    Args:
        layers: the weighted layers in topological order.
        pooled: per layer, its pooled input activations ``B x in_channels``.
        roots: ``B x R`` global ids of each sample's root kernels (sink id for padding).
        total_ids: number of real global ids.
        threshold, max_depth, top_k: as in :func:`fxcfp.analyze`.
        sync: may values be read back on the host? Then a large layer's kernels are visited
            in ascending depth with an early exit, and a layer with nothing to expand is
            skipped. ``None``: on the CPU only; on a GPU (``False``) nothing here synchronises,
            every layer is one dense pass.
        fused: use the fused C++ pass (:mod:`fxcfp._fused`): the whole back-step in one call
            where it covers every layer, else per layer where it covers the layer; ``None``:
            whenever it is built and ``sync`` holds. Same answer either way.
        count: the fused pass also counts the edges of the kernels its early exit skipped
            (their gates only, no depths), so ``visited`` is the layer's width and the pyramid
            has every count without a second pass. Off by default: those gates cost what the
            early exit saves (5.5% of a 3D ResNet-152 forward, against 0.9% for the
            back-step), and most pyramids are never asked for their edge count.

    Returns:
        The :class:`Backstep`; its tensors stay on the device.
    """
    batch = roots.shape[0]
    device = roots.device
    host = device.type == "cpu" if sync is None else sync
    limit = UNREACHED if max_depth is None else max_depth
    extension = _fused.extension() if (host and fused is not False) else None
    if fused and extension is None:
        extension = _fused.wait()
    if extension is not None and top_k is None:
        # every layer in C++, one call: nothing per layer in Python (the inputs are checked
        # there, and one it does not take sends the back-step down the per-layer path)
        plan = _fused.plan(extension, layers)
        found = (None if plan is None else
                 extension.backstep_all(plan, pooled, roots, total_ids, limit, threshold, count))
        if found is not None:
            return Backstep(*found)
    depth = torch.full((batch, total_ids + 1), UNREACHED, dtype=torch.int32, device=device)
    depth.scatter_(1, roots, 0)
    edges = torch.zeros(batch, len(layers), dtype=torch.int64, device=device)
    visited = torch.zeros(batch, len(layers), dtype=torch.int64, device=device)
    for index in range(len(layers) - 1, -1, -1):
        layer, a = layers[index], pooled[index]
        out_channels, per_group = layer.weight.shape
        arguments = layer.fused_arguments if extension is not None else None
        if extension is not None and arguments is not None and _fused.usable(layer, a, top_k):
            # the whole layer in one call: gate, early exit, counts and the scatter
            weight, members, sources = arguments
            extension.layer_step(a.contiguous(), weight, depth, layer.first_id, limit,
                                 threshold, members, sources, True, count, edges, visited,
                                 index)
            continue
        visited[:, index] = out_channels
        kernel_depth = depth[:, layer.first_id: layer.first_id + out_channels]
        if host and not bool((kernel_depth < limit).any()):
            continue  # nothing of this layer is expanded (past max_depth, or not reached)
        channel_depth = torch.full_like(a, UNREACHED, dtype=torch.int32)
        if host and layer.groups == 1 and out_channels > 2 * CHUNK:
            _early_exit(a, layer, kernel_depth, limit, threshold, top_k, channel_depth,
                        edges[:, index], visited[:, index])
        else:
            edges[:, index] = _visit(a, layer, None, kernel_depth, kernel_depth < limit,
                                     threshold, top_k, channel_depth, host=host)
        if layer.members is None:
            edges[:, index] = -1
        width = layer.sources.shape[1]
        values = channel_depth[:, :, None].expand(-1, -1, width).reshape(batch, -1)
        depth.scatter_reduce_(1, layer.sources.reshape(1, -1).expand(batch, -1), values,
                              reduce="amin")
    return Backstep(depth[:, :total_ids], edges, visited)
