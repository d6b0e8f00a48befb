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

__all__ = ["UNREACHED", "LayerTensors", "backstep", "gate"]

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


def gate(pooled: torch.Tensor, layer: LayerTensors, threshold: float,
         top_k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised scores and the gate of every kernel of a layer (SPEC steps 3-6).

    Args:
        pooled: pooled input activations ``B x in_channels``.
        layer: the layer.
        threshold: the gate's threshold in ``[0, 1]``.
        top_k: keep at most this many passing channels per kernel (``None``: all).

    Returns:
        ``(n, passed)``, both ``B x out_channels x in_channels/groups``: the per-kernel min-max
        normalised scores and whether each candidate channel passes.
    """
    batch = pooled.shape[0]
    per_group = layer.weight.shape[1]
    if layer.group_of_kernel is None:
        activations = pooled[:, None, :]
    else:
        # a grouped kernel only reads its own group's channels
        activations = pooled.view(batch, layer.groups, per_group)[:, layer.group_of_kernel]
    scores = activations * layer.weight
    low = scores.amin(-1, keepdim=True)
    span = scores.amax(-1, keepdim=True) - low
    flat = span == 0
    # one candidate (depth-wise): a link, n = 1; several all equal: nothing passes
    fill = 1.0 if per_group == 1 else -1.0
    n = torch.where(flat, torch.full_like(scores, fill), (scores - low) / torch.where(flat, 1, span))
    passed = n >= threshold
    if top_k is not None and top_k < per_group:
        ranked = n.masked_fill(~passed, float("-inf"))
        order = torch.sort(ranked, dim=-1, descending=True, stable=True).indices
        rank = torch.empty_like(order).scatter_(
            -1, order, torch.arange(per_group, device=order.device).expand_as(order))
        passed &= rank < top_k
    return n, passed


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
        _, passed = gate(a, layer, threshold, top_k)
        passed &= (kernel_depth < limit)[..., None]
        child = torch.where(passed, kernel_depth[..., None] + 1, UNREACHED)
        if layer.group_of_kernel is None:
            channel_depth = child.amin(1)
        else:
            channel_depth = child.view(batch, layer.groups, -1, per_group).amin(2)
            channel_depth = channel_depth.reshape(batch, -1)
        width = layer.sources.shape[1]
        values = channel_depth[:, :, None].expand(-1, -1, width).reshape(batch, -1)
        depth.scatter_reduce_(1, layer.sources.reshape(1, -1).expand(batch, -1), values,
                              reduce="amin")
    return depth[:, :total_ids]
