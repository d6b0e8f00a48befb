"""Channel labels: the abstract values the channel-map pass propagates through a graph.

A *label* tensor says, for every element of an activation, which producer channels reach it
through weight-free operations. Producers are identified by global integer ids (one per output
channel of every weighted layer, one per channel of every model input). A label has the shape of
the activation plus one trailing *set* dimension ``K`` holding up to ``K`` ids per element, ``-1``
padding. Dimensions along which the labels do not change are kept at size 1, so a
``N x C x T x H x W`` activation usually carries a ``1 x C x 1 x 1 x 1 x K`` label: cheap to move
around, and expanded to full size only where a reshape or concatenation needs it.
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["NONE", "compact", "dedupe", "expand_full", "new_label", "union"]

NONE = -1
_DTYPE = torch.int32
# the labels known to be compact (what new_label and compact return), by id: the union of one
# of them alone, or with itself (a unary op, ``x * sigmoid(x)``'s product), is that label
_COMPACT: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()


def _compact_known(label: torch.Tensor) -> torch.Tensor:
    _COMPACT[id(label)] = label
    return label


def new_label(ids: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    """A label for an ``ndim`` activation whose channel ``c`` (along ``channel_dim``) is ``ids[c]``."""
    shape = [1] * ndim
    shape[channel_dim] = ids.numel()
    # ids are distinct: nothing to collapse
    return _compact_known(ids.to(_DTYPE).reshape(*shape, 1))


def compact(label: torch.Tensor) -> torch.Tensor:
    """Collapse every dimension the label is constant along to size 1, and drop duplicate and
    padding ids from the set dimension."""
    for dim in range(label.dim() - 1):
        if label.shape[dim] > 1:
            first = label.narrow(dim, 0, 1)
            if bool((label == first).all()):
                label = first
    return _compact_known(dedupe(label))


def dedupe(label: torch.Tensor) -> torch.Tensor:
    """Drop repeated and padding ids along the last (set) dimension, keeping at least one column:
    ids sorted descending, ``NONE`` padding last."""
    if label.shape[-1] == 1:
        return label
    ordered, _ = torch.sort(label, dim=-1, descending=True)
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[..., 1:] = ordered[..., 1:] == ordered[..., :-1]
    ordered = ordered.masked_fill(repeated, NONE)
    ordered, _ = torch.sort(ordered, dim=-1, descending=True)
    # keep at least one column so the label keeps its rank
    width = max(int((ordered != NONE).sum(-1).max()), 1)
    return ordered[..., :width].contiguous()


def expand_full(label: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """View the label at the activation's full ``shape`` (plus its set dimension)."""
    return label.expand(*shape, label.shape[-1])


def _broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The broadcast of equal-rank shapes. Not ``torch.broadcast_shapes``: its first call imports
    torch's symbolic-shape machinery and sympy, which cost most of a ResNet-50 forward."""
    common = list(shapes[0])
    for shape in shapes[1:]:
        for dim, size in enumerate(shape):
            if size != common[dim] and size != 1:
                if common[dim] != 1:
                    raise RuntimeError(f"shapes {shapes} do not broadcast at dim {dim}")
                common[dim] = size
    return tuple(common)


def union(labels: list[torch.Tensor], shape: torch.Size | tuple[int, ...]) -> torch.Tensor | None:
    """Element-wise union of labels that broadcast to an activation of ``shape``."""
    if not labels:
        return None
    ndim = len(shape)
    first = labels[0]
    if (first.dim() == ndim + 1 and _COMPACT.get(id(first)) is first
            and all(label is first for label in labels[1:])):
        return first  # compact() of it is itself (it is idempotent)
    aligned = []
    for label in labels:
        # broadcasting aligns trailing dims: prepend size-1 dims, keep the set dim last
        missing = ndim - (label.dim() - 1)
        aligned.append(label.reshape((1,) * missing + tuple(label.shape)))
    common = _broadcast_shape([tuple(a.shape[:-1]) for a in aligned])
    merged = torch.cat([a.expand(*common, a.shape[-1]) for a in aligned], dim=-1)
    return compact(merged)
