"""The default channel rules, as data: one row per rule, naming every op it covers.

An op is named the way an FX node calls it: a function (``torch.cat``, ``F.relu``,
``operator.add``), a ``torch.ops.aten`` packet by name (the ops of a ``torch.export`` graph; a name
this torch build lacks is skipped), a tensor method name, or a module class (matched through its
bases, so ``_MaxPoolNd`` covers every ``MaxPool*d``). An aten op tagged pointwise needs no row.

Rows are read once, in order, by :mod:`fxcfp.passes.registry`; add rules for your own ops with
:func:`fxcfp.register_channel_rule`, not here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .rule_kinds import (
    attention_module,
    copied,
    module_pad,
    no_producer,
    pad,
    product_of_activations,
)
from .rules import Rule, RuleKind

__all__ = ["DEFAULT_RULES", "RuleRow"]


@dataclass(frozen=True)
class RuleRow:
    """One rule and the ops it covers.

    Attributes:
        rule: a rule kind or a rule function.
        functions: functions and builtins FX nodes call.
        aten: names of ``torch.ops.aten`` packets (every overload of each).
        methods: tensor method names.
        modules: module classes (subclasses included).
    """

    rule: RuleKind | Rule
    functions: tuple[Callable[..., Any], ...] = ()
    aten: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    modules: tuple[type[nn.Module], ...] = ()


DEFAULT_RULES: tuple[RuleRow, ...] = (
    RuleRow(
        "pointwise",
        functions=(
            operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv,
            operator.neg, operator.pow, operator.iadd, operator.imul, operator.isub,
            operator.itruediv, operator.pos,
            torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div,
            torch.divide, torch.true_divide, torch.neg, torch.pow, torch.sigmoid, torch.tanh,
            torch.relu, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs, torch.clamp,
            torch.clip, torch.where, torch.maximum, torch.minimum, torch.square,
            torch.reciprocal, torch.erf, torch.sign, torch.sin, torch.cos, torch.addcmul,
            torch.addcdiv, torch.lerp, torch.sigmoid_, torch.relu_,
            F.relu, F.relu6, F.gelu, F.silu, F.mish, F.elu, F.selu, F.celu, F.leaky_relu,
            F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid, F.tanh, F.softplus, F.softsign,
            F.tanhshrink, F.logsigmoid, F.prelu, F.threshold, F.relu_, F.hardtanh_, F.elu_,
            F.leaky_relu_,
            # comparisons and logic are elementwise: a mask made from x carries x's channels,
            # so torch.where(x > 0, x, torch.zeros_like(x)) links x as relu(x) does
            operator.gt, operator.lt, operator.ge, operator.le, operator.eq, operator.ne,
            operator.and_, operator.or_, operator.xor, operator.invert, operator.not_,
            torch.gt, torch.lt, torch.ge, torch.le, torch.eq, torch.ne, torch.greater,
            torch.less, torch.greater_equal, torch.less_equal, torch.not_equal,
            torch.logical_and, torch.logical_or, torch.logical_not, torch.logical_xor,
            torch.isnan, torch.isfinite, torch.isinf, torch.signbit, torch.nan_to_num,
            torch.masked_fill, torch.heaviside, torch.fmax, torch.fmin,
        ),
        methods=(
            "add", "sub", "mul", "div", "true_divide", "neg", "pow", "sigmoid", "tanh", "relu",
            "exp", "log", "sqrt", "rsqrt", "abs", "clamp", "clip", "square", "reciprocal",
            "erf", "sign", "maximum", "minimum", "where", "masked_fill", "addcmul", "lerp",
            "add_", "sub_", "mul_", "div_", "true_divide_", "neg_", "pow_", "sigmoid_",
            "tanh_", "relu_", "exp_", "log_", "sqrt_", "rsqrt_", "abs_", "clamp_", "clip_",
            "square_", "reciprocal_", "erf_", "sign_", "maximum_", "minimum_", "where_",
            "masked_fill_", "addcmul_", "lerp_",
            "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
            "__rtruediv__", "__neg__", "__pow__",
            "gt", "lt", "ge", "le", "eq", "ne", "greater", "less", "logical_and", "logical_or",
            "logical_not", "logical_xor", "isnan", "isfinite", "isinf", "nan_to_num",
            "__gt__", "__lt__", "__ge__", "__le__", "__eq__", "__ne__", "__and__", "__or__",
            "__xor__", "__invert__", "bool", "int", "long", "byte",
        ),
        modules=(
            nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.ELU, nn.SELU, nn.CELU,
            nn.LeakyReLU, nn.PReLU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid,
            nn.Tanh, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold,
            nn.Identity,
        ),
    ),
    RuleRow(
        "passthrough",
        functions=(
            F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
            F.feature_alpha_dropout, F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm,
            F.local_response_norm, F.normalize, F.max_pool1d, F.max_pool2d, F.max_pool3d,
            F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
            F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
            F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.lp_pool1d, F.lp_pool2d,
            F.interpolate, F.upsample, F.softmax, F.log_softmax, F.softmin, torch.softmax,
            torch.log_softmax, torch.max_pool1d, torch.max_pool2d, torch.max_pool3d,
            torch.avg_pool1d, torch.adaptive_avg_pool1d, torch.batch_norm, torch.layer_norm,
            torch.group_norm, torch.dropout, torch.clone, torch.detach,
        ),
        aten=(
            "batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm",
            "_native_batch_norm_legit", "layer_norm", "native_layer_norm", "group_norm",
            "native_group_norm", "instance_norm", "dropout", "native_dropout", "max_pool1d",
            "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
            "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
            "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d",
            "_adaptive_avg_pool3d", "adaptive_max_pool2d", "adaptive_max_pool3d",
            "upsample_nearest2d", "upsample_nearest3d", "upsample_bilinear2d",
            "upsample_trilinear3d", "upsample_nearest1d", "upsample_linear1d",
            "upsample_bicubic2d", "_softmax", "softmax", "_log_softmax", "log_softmax", "clone",
            "detach", "alias", "lift_fresh_copy", "_to_copy", "to", "contiguous",
            "feature_dropout", "alpha_dropout",
            # in-place dropout (torchvision's classifiers use nn.Dropout(inplace=True)): never
            # a gate
            "dropout_", "feature_dropout_", "alpha_dropout_", "feature_alpha_dropout_",
            "bernoulli_",
        ),
        methods=(
            "contiguous", "float", "double", "half", "bfloat16", "to", "type", "type_as",
            "detach", "clone", "cpu", "cuda", "softmax", "log_softmax", "requires_grad_",
            "detach_",
        ),
        modules=(
            nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
            nn.LocalResponseNorm, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
            nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
            nn.modules.pooling._LPPoolNd, nn.Upsample, nn.Softmax, nn.LogSoftmax, nn.Softmin,
        ),
    ),
    RuleRow(
        "shape",
        functions=(
            torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes,
            torch.movedim, torch.squeeze, torch.unsqueeze, torch.cat, torch.concat,
            torch.concatenate, torch.stack, torch.split, torch.chunk, torch.narrow,
            torch.tensor_split, torch.unbind, torch.select, torch.index_select, torch.roll,
            torch.flip, torch.tile, torch.repeat_interleave, torch.t, torch.hstack,
            torch.vstack, torch.broadcast_to, F.pixel_shuffle, F.pixel_unshuffle,
            F.channel_shuffle, torch.channel_shuffle, operator.getitem,
        ),
        aten=(
            "view", "reshape", "_unsafe_view", "permute", "transpose", "t", "flatten",
            "unflatten", "squeeze", "unsqueeze", "cat", "stack", "split", "split_with_sizes",
            "chunk", "narrow", "slice", "select", "unbind", "expand", "repeat", "index_select",
            "roll", "flip", "movedim", "pixel_shuffle", "channel_shuffle",
            "native_channel_shuffle", "tensor_split", "index",
        ),
        methods=(
            "view", "reshape", "permute", "transpose", "flatten", "unflatten", "squeeze",
            "unsqueeze", "expand", "expand_as", "repeat", "split", "chunk", "narrow", "unbind",
            "select", "__getitem__", "index_select", "roll", "flip", "movedim", "swapaxes",
            "tensor_split", "view_as", "reshape_as", "t", "tile", "squeeze_", "unsqueeze_",
            "transpose_", "repeat_interleave",
        ),
        modules=(nn.Flatten, nn.Unflatten, nn.ChannelShuffle, nn.PixelShuffle,
                 nn.PixelUnshuffle),
    ),
    RuleRow(
        "reduce",
        functions=(
            torch.mean, torch.sum, torch.amax, torch.amin, torch.max, torch.min, torch.std,
            torch.var, torch.prod, torch.logsumexp, torch.nansum, torch.nanmean,
        ),
        aten=("mean", "sum", "amax", "amin", "max", "min", "var", "std", "logsumexp", "prod"),
        methods=("mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod",
                 "logsumexp", "nansum", "nanmean"),
    ),
    RuleRow(pad, functions=(F.pad,), aten=("pad", "constant_pad_nd")),
    RuleRow(
        module_pad,
        modules=(nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
                 nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d),
    ),
    # a tensor made only from another's shape (zeros_like, new_ones...) carries no producer
    RuleRow(
        no_producer,
        functions=(torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like,
                   torch.rand_like, torch.randn_like, torch.randint_like),
        aten=("zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
              "new_zeros", "new_ones", "new_full", "new_empty"),
        methods=("new_zeros", "new_ones", "new_full", "new_empty", "zero_", "fill_",
                 "normal_", "uniform_", "random_", "bernoulli_"),
    ),
    # dst.copy_(src): dst now holds src
    RuleRow(copied, aten=("copy_", "copy"), methods=("copy_",)),
    RuleRow(
        product_of_activations,
        functions=(operator.matmul, torch.matmul, torch.bmm, torch.mm, torch.baddbmm,
                   torch.einsum, F.scaled_dot_product_attention,
                   F.multi_head_attention_forward),
        aten=(
            "matmul", "bmm", "mm", "baddbmm", "einsum", "scaled_dot_product_attention",
            "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
            "_scaled_dot_product_attention_math",
            "_scaled_dot_product_fused_attention_overrideable", "_native_multi_head_attention",
        ),
        methods=("matmul", "bmm", "mm", "baddbmm", "__matmul__", "__rmatmul__"),
    ),
    RuleRow(
        attention_module,
        modules=(nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
                 nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer),
    ),
)
