"""The rule kinds: the few ways channels flow through a weight-free op.

Most ops are one of four kinds (:data:`KINDS`), so the default table names a kind per op:

- ``"pointwise"``: each output element is made from the same-position elements of its tensor
  arguments (activations, add, mul, where...). Labels are united with broadcasting. This is SPEC's
  "links, never gates": an elementwise gate or a residual add links both operands.
- ``"passthrough"``: the output has the first tensor argument's channels, only other dimensions
  change size (pooling, normalisation, interpolation, dropout, softmax, dtype casts).
- ``"shape"``: the op moves elements around without computing on them (view, permute, cat,
  split, getitem...). The op itself is run on the label tensor, so any reshape it can do, the
  labels follow exactly — a channel shuffle or a flatten of ``C x T x H x W`` into features
  included.
- ``"reduce"``: a reduction over the dimensions named by its ``dim`` argument; reducing over a
  labelled dimension unites all of its labels.

The other rules here are for single ops: padding, constant fills, ``copy_``, and the matrix
products and attention modules that put a model outside the method.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_map_only

from .labels import NONE, compact, expand_full, union
from .rules import NotExplainableError, Rule, RuleCall, RuleError, RuleKind

__all__ = [
    "KINDS",
    "attention_module",
    "copied",
    "module_pad",
    "no_producer",
    "pad",
    "passthrough",
    "pointwise",
    "product_of_activations",
    "reduce",
    "shape",
]


def _tensor_pairs(values: Any, labels: Any) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Flatten (value, label) pairs of every tensor in nested args."""
    if isinstance(values, torch.Tensor):
        return [(values, labels)]
    if isinstance(values, (list, tuple)):
        pairs = []
        for i, value in enumerate(values):
            sub = labels[i] if isinstance(labels, (list, tuple)) else None
            pairs.extend(_tensor_pairs(value, sub))
        return pairs
    return []


def _all_pairs(call: RuleCall) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    pairs = _tensor_pairs(call.args, call.labels)
    for key, value in call.kwargs.items():
        pairs.extend(_tensor_pairs(value, call.kwarg_labels.get(key)))
    return pairs


def pointwise(call: RuleCall) -> Any:
    labels = [lab for _, lab in _all_pairs(call) if lab is not None]
    if isinstance(call.output, torch.Tensor):
        return union(labels, call.output.shape)
    if isinstance(call.output, (tuple, list)):
        return tuple(
            union(labels, out.shape) if isinstance(out, torch.Tensor) else None
            for out in call.output
        )
    return None


def passthrough(call: RuleCall) -> Any:
    pairs = _all_pairs(call)
    source, label = next(((v, lab) for v, lab in pairs if lab is not None), (None, None))
    if label is None:
        return None
    outputs = call.output if isinstance(call.output, (tuple, list)) else (call.output,)
    first = outputs[0]
    if not isinstance(first, torch.Tensor) or first.dim() != source.dim():
        raise RuleError(
            f"expected an output of the input's rank {source.dim()}, got "
            f"{tuple(first.shape) if isinstance(first, torch.Tensor) else type(first).__name__}"
        )
    for dim in range(source.dim()):
        if label.shape[dim] > 1 and first.shape[dim] != source.shape[dim]:
            raise RuleError(
                f"it changes dimension {dim} ({source.shape[dim]} -> {first.shape[dim]}), which "
                "holds channels of different producers; a channel-preserving rule cannot map that"
            )
    if isinstance(call.output, (tuple, list)):
        return (label,) + (None,) * (len(call.output) - 1)
    return label


def _substitute(values: Any, labels: Any, k: int) -> Any:
    """Replace every tensor in nested args by its label's ``k``-th set slice at full size."""
    if isinstance(values, torch.Tensor):
        if labels is None:
            return torch.full(values.shape, NONE, dtype=torch.int32)
        if k >= labels.shape[-1]:
            return torch.full(values.shape, NONE, dtype=torch.int32)
        return expand_full(labels, values.shape)[..., k]
    if isinstance(values, (list, tuple)):
        subs = [
            _substitute(v, labels[i] if isinstance(labels, (list, tuple)) else None, k)
            for i, v in enumerate(values)
        ]
        return type(values)(subs) if isinstance(values, list) else tuple(subs)
    return values


def _stack_results(results: list[Any], output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        label = torch.stack([r.to(torch.int32) for r in results], dim=-1)
        return compact(label)
    if isinstance(output, (tuple, list)):
        return tuple(
            _stack_results([r[i] for r in results], out) for i, out in enumerate(output)
        )
    return None


def shape(call: RuleCall) -> Any:
    pairs = _all_pairs(call)
    widths = [lab.shape[-1] for _, lab in pairs if lab is not None]
    if not widths:
        return None
    results = []
    for k in range(max(widths)):
        args = _substitute(call.args, call.labels, k)
        kwargs = {
            key: _substitute(value, call.kwarg_labels.get(key), k)
            for key, value in call.kwargs.items()
        }
        try:
            results.append(call.apply(*args, **kwargs))
        except RuntimeError:
            # a view of an expanded label can need a copy that the real tensor did not
            results.append(call.apply(*_contiguous(args), **_contiguous(kwargs)))
    return _stack_results(results, call.output)


def _reduced_dims(call: RuleCall, ndim: int) -> list[int]:
    dims = call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else None)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return list(range(ndim))
    if isinstance(dims, int):
        dims = [dims]
    if not all(isinstance(d, int) for d in dims):
        raise RuleError(f"cannot read the reduced dimensions from {dims!r}")
    return sorted({d % ndim for d in dims})


def reduce(call: RuleCall) -> Any:
    source, label = call.args[0], call.labels[0]
    if label is None:
        return None
    first = call.output[0] if isinstance(call.output, (tuple, list)) else call.output
    dims = _reduced_dims(call, source.dim())
    keepdim = first.dim() == source.dim()
    for d in reversed(dims):
        if label.shape[d] > 1:
            # every element of the result depends on all labels along the reduced dim
            moved = label.movedim(d, -2)
            label = moved.reshape(*moved.shape[:-2], 1, moved.shape[-2] * moved.shape[-1])
            label = label.movedim(-2, d)
        if not keepdim:
            label = label.squeeze(d)
    label = compact(label)
    if isinstance(call.output, (tuple, list)):
        return (label,) * len(call.output)
    return label


def pad(call: RuleCall) -> Any:
    source, label = call.args[0], call.labels[0]
    if label is None:
        return None
    widths = call.args[1] if len(call.args) > 1 else call.kwargs["pad"]
    padded = [source.dim() - 1 - i // 2 for i in range(len(widths)) if widths[i] != 0]
    if all(label.shape[d] == 1 for d in padded):
        return label
    mode = call.kwargs.get("mode", call.args[2] if len(call.args) > 2 else "constant")
    if mode != "constant":
        raise RuleError(f"{mode!r} padding of a dimension that holds channels is not mapped")
    # padded channels come from no producer
    slices = [
        F.pad(expand_full(label, source.shape)[..., k], list(widths), value=NONE)
        for k in range(label.shape[-1])
    ]
    return compact(torch.stack(slices, dim=-1))


KINDS: dict[RuleKind, Rule] = {
    "pointwise": pointwise,
    "passthrough": passthrough,
    "shape": shape,
    "reduce": reduce,
}


def _contiguous(values: Any) -> Any:
    return tree_map_only(torch.Tensor, torch.Tensor.contiguous, values)


def no_producer(call: RuleCall) -> Any:
    """A tensor made from another's shape or filled with constants: no producer reaches it."""
    return None


def copied(call: RuleCall) -> Any:
    """``dst.copy_(src)``: the result holds ``src``'s values, broadcast to ``dst``'s shape."""
    label = call.labels[1] if len(call.labels) > 1 else call.kwarg_labels.get("src")
    if label is None:
        return None
    return union([label], call.output.shape)


def product_of_activations(call: RuleCall) -> Any:
    """A matrix product whose operands are not a weighted layer's parameter. Between two
    activations it is attention; by a constant, a mixing no kernel of the model owns."""
    operands = [(value, label) for value, label in _all_pairs(call) if value.dim() > 0]
    labelled = [tuple(value.shape) for value, label in operands if label is not None]
    if len(labelled) >= 2:
        # attention: q @ k^T, softmax(.) @ v. Its mixing weights come from the clip itself
        raise NotExplainableError(
            f"it multiplies two activations (shapes {labelled[0]} and {labelled[1]}), as "
            "attention does: it mixes tokens with weights computed from the data, not with "
            "a learned kernel. Class Feature Pyramids gates a kernel's input channels by "
            "activation x learned weight and has no gate for data-dependent mixing, so "
            "transformers (MViT, Swin, ViViT...) and attention blocks (self-attention, "
            "non-local blocks) cannot be explained; analyse a convolutional network"
        )
    constants = [tuple(value.shape) for value, label in operands if label is None]
    if not constants:
        raise RuleError(
            "it computes on one activation alone (an einsum that sums or permutes), which "
            "fxcfp does not map. Hint: write it with sum/mean/permute, which have rules, or "
            "register a channel rule for it"
        )
    raise RuleError(
        f"it multiplies an activation by a tensor of shape {constants[0]}"
        " that is not the weight parameter of a convolution or linear layer, so fxcfp cannot"
        " tell which channels it mixes. Hint: use nn.Linear / nn.Conv*d for a learned "
        "mixing, or register a channel rule for this op if it keeps channels apart"
    )


def attention_module(call: RuleCall) -> Any:
    """An attention or transformer module: outside the method, whatever its inputs."""
    raise NotExplainableError(
        f"{type(call.apply).__name__} computes attention: it mixes tokens with weights computed "
        "from the data, not with a learned kernel. Class Feature Pyramids gates a kernel's "
        "input channels by activation x learned weight and has no gate for data-dependent "
        "mixing, so vision transformers (ViT, MViT, Swin...) cannot be explained; analyse a "
        "convolutional network")


def module_pad(call: RuleCall) -> Any:
    """A padding module: :func:`pad` with the module's widths and mode."""
    module = call.node.graph.owning_module.get_submodule(call.node.target)
    if isinstance(module, nn.modules.padding._ConstantPadNd):
        mode = "constant"
    elif isinstance(module, nn.modules.padding._ReflectionPadNd):
        mode = "reflect"
    else:
        mode = "replicate"
    padded = RuleCall(call.node, (call.args[0], tuple(module.padding)), {"mode": mode},
                      (call.labels[0], None), {}, call.output, call.apply)
    return pad(padded)
