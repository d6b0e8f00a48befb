"""Channel rules: one small rule per weight-free op, and the public way to add one.

A rule answers one question for one op: given the channel labels of the op's inputs (see
:mod:`fxcfp.passes.labels`), which producer channels reach each element of its output? Every rule
is one of a few kinds, so most ops are a line in a table:

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

A custom rule is a function ``(RuleCall) -> label`` for anything else. Register with
:func:`register_channel_rule`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from .labels import NONE, compact, expand_full, union

__all__ = [
    "NotExplainableError",
    "RuleCall",
    "RuleError",
    "RuleKind",
    "lookup_rule",
    "register_channel_rule",
]

RuleKind = Literal["pointwise", "passthrough", "shape", "reduce"]


@dataclass(frozen=True)
class RuleCall:
    """Everything a rule may look at for one node.

    Attributes:
        node: the FX node.
        args: the node's positional arguments as concrete values (tensors, ints, lists...).
        kwargs: its keyword arguments as concrete values.
        labels: one entry per positional argument: a label tensor for a tensor that carries
            producer channels, ``None`` for a constant or non-tensor, a tuple for a sequence.
        kwarg_labels: the same for keyword arguments.
        output: the node's concrete output.
        apply: calls the node's op on substitute arguments (used by ``"shape"`` rules).
    """

    node: fx.Node
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    labels: tuple[Any, ...]
    kwarg_labels: dict[str, Any]
    output: Any
    apply: Callable[..., Any]


Rule = Callable[[RuleCall], Any]


class RuleError(Exception):
    """Raised by a rule that recognises its op but cannot map this use of it; the channel-map
    pass turns it into an :class:`~fxcfp.UnsupportedOpError` naming the node."""


class NotExplainableError(RuleError):
    """Raised by a rule whose op puts the whole model outside the method (attention); the pass
    turns it into an :class:`~fxcfp.UnsupportedModelError` naming the node."""


# --- the rule kinds ---------------------------------------------------------------------------


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


def _contiguous(values: Any) -> Any:
    if isinstance(values, torch.Tensor):
        return values.contiguous()
    if isinstance(values, (list, tuple)):
        subs = [_contiguous(v) for v in values]
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


_KINDS: dict[str, Rule] = {
    "pointwise": pointwise,
    "passthrough": passthrough,
    "shape": shape,
    "reduce": reduce,
}

# --- the table --------------------------------------------------------------------------------

_FUNCTION_RULES: dict[Any, Rule] = {}
_METHOD_RULES: dict[str, Rule] = {}
_MODULE_RULES: dict[type, Rule] = {}


def register_channel_rule(target: Any, rule: RuleKind | Rule) -> None:
    """Teach fxcfp how channels flow through an op it does not know.

    Args:
        target: what the FX node calls: a function (``torch.nn.functional.gelu``, an aten
            overload such as ``torch.ops.aten.gelu.default`` or its packet
            ``torch.ops.aten.gelu``), a tensor method name (``"gelu"``), or an ``nn.Module``
            subclass (a leaf module of your own).
        rule: one of ``"pointwise"``, ``"passthrough"``, ``"shape"``, ``"reduce"`` (see the
            module docstring), or a function ``(RuleCall) -> label``.

    Example:
        >>> import fxcfp, torch
        >>> def my_act(x):
        ...     return x * torch.sigmoid(1.702 * x)
        >>> fxcfp.register_channel_rule(my_act, "pointwise")
    """
    if isinstance(rule, str):
        if rule not in _KINDS:
            raise ValueError(
                f"register_channel_rule: unknown rule kind {rule!r}; use one of "
                f"{sorted(_KINDS)} or a function (RuleCall) -> label"
            )
        rule = _KINDS[rule]
    if not callable(rule):
        raise TypeError("register_channel_rule: rule must be a kind name or a callable")
    if isinstance(target, str):
        _METHOD_RULES[target] = rule
    elif isinstance(target, type) and issubclass(target, nn.Module):
        _MODULE_RULES[target] = rule
    elif callable(target):
        _FUNCTION_RULES[target] = rule
    else:
        raise TypeError(
            "register_channel_rule: target must be a function, an aten op, a method name or an "
            f"nn.Module subclass, not {type(target).__name__}"
        )


def lookup_rule(node: fx.Node, module: nn.Module | None = None) -> Rule | None:
    """The rule for ``node`` (``module`` is the called submodule for ``call_module`` nodes)."""
    if node.op == "call_module":
        for cls in type(module).__mro__:
            if cls in _MODULE_RULES:
                return _MODULE_RULES[cls]
        return None
    if node.op == "call_method":
        return _METHOD_RULES.get(node.target)
    if node.op == "call_function":
        target = node.target
        if target in _FUNCTION_RULES:
            return _FUNCTION_RULES[target]
        if isinstance(target, torch._ops.OpOverload):
            if target.overloadpacket in _FUNCTION_RULES:
                return _FUNCTION_RULES[target.overloadpacket]
            if torch.Tag.pointwise in target.tags:
                return pointwise
        return None
    return None


class _AtenOps:
    """``torch.ops.aten`` that answers ``None`` for an op this torch build lacks."""

    def __getattr__(self, name: str) -> Any:
        try:
            return getattr(torch.ops.aten, name)
        except (AttributeError, RuntimeError):
            return None


def _register_all(targets: list[Any], rule: RuleKind | Rule) -> None:
    for target in targets:
        if target is not None:
            register_channel_rule(target, rule)


def _register_defaults() -> None:
    aten = _AtenOps()

    pointwise_functions = [
        operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
        operator.neg, operator.pow, operator.iadd, operator.imul, operator.isub,
        operator.itruediv, operator.pos,
        torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div,
        torch.divide, torch.true_divide, torch.neg, torch.pow, torch.sigmoid, torch.tanh,
        torch.relu, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs, torch.clamp,
        torch.clip, torch.where, torch.maximum, torch.minimum, torch.square, torch.reciprocal,
        torch.erf, torch.sign, torch.sin, torch.cos, torch.addcmul, torch.addcdiv, torch.lerp,
        torch.nn.functional.relu, F.relu6, F.gelu, F.silu, F.mish, F.elu, F.selu, F.celu,
        F.leaky_relu, F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus,
        F.softsign, F.tanhshrink, F.logsigmoid, F.prelu, F.threshold, F.relu_, F.hardtanh_,
        F.elu_, F.leaky_relu_, torch.sigmoid_, torch.relu_,
    ]
    _register_all(pointwise_functions, "pointwise")

    passthrough_functions = [
        F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
        F.feature_alpha_dropout, F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm,
        F.local_response_norm, F.normalize, F.max_pool1d, F.max_pool2d, F.max_pool3d,
        F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
        F.adaptive_max_pool3d, F.lp_pool1d, F.lp_pool2d, F.interpolate, F.upsample,
        F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax,
        torch.max_pool1d, torch.max_pool2d, torch.max_pool3d, torch.avg_pool1d,
        torch.adaptive_avg_pool1d, torch.batch_norm, torch.layer_norm, torch.group_norm,
        torch.dropout, torch.clone, torch.detach,
        aten.batch_norm, aten._native_batch_norm_legit_no_training, aten.native_batch_norm,
        aten._native_batch_norm_legit, aten.layer_norm, aten.native_layer_norm,
        aten.group_norm, aten.native_group_norm, aten.instance_norm, aten.dropout,
        aten.native_dropout, aten.max_pool1d, aten.max_pool2d, aten.max_pool3d,
        aten.max_pool2d_with_indices, aten.max_pool3d_with_indices, aten.avg_pool1d,
        aten.avg_pool2d, aten.avg_pool3d, aten.adaptive_avg_pool1d, aten.adaptive_avg_pool2d,
        aten.adaptive_avg_pool3d, aten._adaptive_avg_pool2d, aten._adaptive_avg_pool3d,
        aten.adaptive_max_pool2d, aten.adaptive_max_pool3d, aten.upsample_nearest2d,
        aten.upsample_nearest3d, aten.upsample_bilinear2d, aten.upsample_trilinear3d,
        aten.upsample_nearest1d, aten.upsample_linear1d, aten.upsample_bicubic2d,
        aten._softmax, aten.softmax, aten._log_softmax, aten.log_softmax, aten.clone,
        aten.detach, aten.alias, aten.lift_fresh_copy, aten._to_copy, aten.to,
        aten.contiguous, aten.feature_dropout, aten.alpha_dropout,
    ]
    _register_all(passthrough_functions, "passthrough")

    shape_functions = [
        torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes,
        torch.movedim, torch.squeeze, torch.unsqueeze, torch.cat, torch.concat,
        torch.concatenate, torch.stack, torch.split, torch.chunk, torch.narrow,
        torch.tensor_split, torch.unbind, torch.select, torch.index_select, torch.roll,
        torch.flip, torch.tile, torch.repeat_interleave, torch.t, torch.hstack, torch.vstack,
        torch.broadcast_to, F.pixel_shuffle, F.pixel_unshuffle, F.channel_shuffle,
        torch.channel_shuffle, operator.getitem,
        aten.view, aten.reshape, aten._unsafe_view, aten.permute, aten.transpose,
        aten.t, aten.flatten, aten.unflatten, aten.squeeze, aten.unsqueeze, aten.cat,
        aten.stack, aten.split, aten.split_with_sizes, aten.chunk, aten.narrow, aten.slice,
        aten.select, aten.unbind, aten.expand, aten.repeat, aten.index_select, aten.roll,
        aten.flip, aten.movedim, aten.pixel_shuffle, aten.channel_shuffle,
        aten.native_channel_shuffle, aten.tensor_split, aten.index,
    ]
    _register_all(shape_functions, "shape")

    reduce_functions = [
        torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std,
        torch.var, torch.prod, torch.logsumexp, torch.nansum, torch.nanmean,
        aten.mean, aten.sum, aten.amax, aten.amin, aten.max, aten.min, aten.var, aten.std,
        aten.logsumexp, aten.prod,
    ]
    _register_all(reduce_functions, "reduce")
    _register_all([F.pad, aten.pad, aten.constant_pad_nd], pad)

    # comparisons and logic are elementwise: a mask made from x carries x's channels, so
    # torch.where(x > 0, x, torch.zeros_like(x)) links x as relu(x) does
    comparisons = [
        operator.gt, operator.lt, operator.ge, operator.le, operator.eq, operator.ne,
        operator.and_, operator.or_, operator.xor, operator.invert, operator.not_,
        torch.gt, torch.lt, torch.ge, torch.le, torch.eq, torch.ne, torch.greater,
        torch.less, torch.greater_equal, torch.less_equal, torch.not_equal,
        torch.logical_and, torch.logical_or, torch.logical_not, torch.logical_xor,
        torch.isnan, torch.isfinite, torch.isinf, torch.signbit, torch.nan_to_num,
        torch.masked_fill, torch.heaviside, torch.fmax, torch.fmin,
    ]
    _register_all(comparisons, "pointwise")
    for name in ["gt", "lt", "ge", "le", "eq", "ne", "greater", "less", "logical_and",
                 "logical_or", "logical_not", "logical_xor", "isnan", "isfinite", "isinf",
                 "nan_to_num", "__gt__", "__lt__", "__ge__", "__le__", "__eq__", "__ne__",
                 "__and__", "__or__", "__xor__", "__invert__", "bool", "int", "long", "byte"]:
        register_channel_rule(name, "pointwise")
    # a tensor made only from another's shape (zeros_like, new_ones...) carries no producer
    constants = [torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like,
                 torch.rand_like, torch.randn_like, torch.randint_like, aten.zeros_like,
                 aten.ones_like, aten.full_like, aten.empty_like, aten.rand_like,
                 aten.randn_like, aten.new_zeros, aten.new_ones, aten.new_full, aten.new_empty]
    _register_all(constants, no_producer)
    for name in ["new_zeros", "new_ones", "new_full", "new_empty", "zero_", "fill_",
                 "normal_", "uniform_", "random_", "bernoulli_"]:
        register_channel_rule(name, no_producer)
    # dst.copy_(src): dst now holds src
    register_channel_rule("copy_", copied)
    _register_all([aten.copy_, aten.copy], copied)
    # in-place dropout (torchvision's classifiers use nn.Dropout(inplace=True)); never a gate
    _register_all([aten.dropout_, aten.feature_dropout_, aten.alpha_dropout_,
                   aten.feature_alpha_dropout_, aten.bernoulli_], "passthrough")

    def products_of_activations(call: RuleCall) -> Any:
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

    products = [
        operator.matmul, torch.matmul, torch.bmm, torch.mm, torch.baddbmm, torch.einsum,
        F.scaled_dot_product_attention,
        aten.matmul, aten.bmm, aten.mm, aten.baddbmm, aten.einsum,
        aten.scaled_dot_product_attention, aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention, aten._scaled_dot_product_efficient_attention,
        aten._scaled_dot_product_cudnn_attention, aten._scaled_dot_product_attention_math,
        aten._scaled_dot_product_fused_attention_overrideable,
    ]
    _register_all(products, products_of_activations)
    _register_all([F.multi_head_attention_forward, aten._native_multi_head_attention],
                  products_of_activations)
    for cls in (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
                nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer):
        register_channel_rule(cls, attention_module)
    for name in ["matmul", "bmm", "mm", "baddbmm", "__matmul__", "__rmatmul__"]:
        register_channel_rule(name, products_of_activations)

    pointwise_methods = [
        "add", "sub", "mul", "div", "true_divide", "neg", "pow", "sigmoid", "tanh", "relu",
        "exp", "log", "sqrt", "rsqrt", "abs", "clamp", "clip", "square", "reciprocal", "erf",
        "sign", "maximum", "minimum", "where", "masked_fill", "addcmul", "lerp",
        "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
        "__rtruediv__", "__neg__", "__pow__",
    ]
    for name in pointwise_methods:
        register_channel_rule(name, "pointwise")
        if not name.startswith("__"):
            register_channel_rule(name + "_", "pointwise")

    for name in [
        "contiguous", "float", "double", "half", "bfloat16", "to", "type", "type_as", "detach",
        "clone", "cpu", "cuda", "softmax", "log_softmax", "requires_grad_", "detach_",
    ]:
        register_channel_rule(name, "passthrough")
    for name in [
        "view", "reshape", "permute", "transpose", "flatten", "unflatten", "squeeze",
        "unsqueeze", "expand", "expand_as", "repeat", "split", "chunk", "narrow", "unbind",
        "select", "__getitem__", "index_select", "roll", "flip", "movedim", "swapaxes",
        "tensor_split", "view_as", "reshape_as", "t", "tile", "squeeze_", "unsqueeze_",
        "transpose_", "repeat_interleave",
    ]:
        register_channel_rule(name, "shape")
    for name in ["mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod", "logsumexp",
                 "nansum", "nanmean"]:
        register_channel_rule(name, "reduce")

    pointwise_modules = [
        nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.SELU, nn.CELU, nn.LeakyReLU,
        nn.PReLU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
        nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold, nn.Identity,
    ]
    passthrough_modules = [
        nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
        nn.FeatureAlphaDropout, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
        nn.LocalResponseNorm, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
        nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
        nn.modules.pooling._LPPoolNd, nn.Upsample, nn.Softmax, nn.LogSoftmax, nn.Softmin,
    ]
    shape_modules = [nn.Flatten, nn.Unflatten, nn.ChannelShuffle, nn.PixelShuffle,
                     nn.PixelUnshuffle]
    for cls in pointwise_modules:
        register_channel_rule(cls, "pointwise")
    for cls in passthrough_modules:
        register_channel_rule(cls, "passthrough")
    for cls in shape_modules:
        register_channel_rule(cls, "shape")
    for cls in (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
                nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d):
        register_channel_rule(cls, _module_pad)


def no_producer(call: RuleCall) -> Any:
    """A tensor made from another's shape or filled with constants: no producer reaches it."""
    return None


def copied(call: RuleCall) -> Any:
    """``dst.copy_(src)``: the result holds ``src``'s values, broadcast to ``dst``'s shape."""
    label = call.labels[1] if len(call.labels) > 1 else call.kwarg_labels.get("src")
    if label is None:
        return None
    return union([label], call.output.shape)


def attention_module(call: RuleCall) -> Any:
    raise NotExplainableError(
        f"{type(call.apply).__name__} computes attention: it mixes tokens with weights computed "
        "from the data, not with a learned kernel. Class Feature Pyramids gates a kernel's "
        "input channels by activation x learned weight and has no gate for data-dependent "
        "mixing, so vision transformers (ViT, MViT, Swin...) cannot be explained; analyse a "
        "convolutional network")


def _module_pad(call: RuleCall) -> Any:
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


_register_defaults()
