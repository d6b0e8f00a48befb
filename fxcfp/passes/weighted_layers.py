"""Find the weighted layers: the convolutions and linear layers whose weight is a model parameter."""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

from .._errors import UnsupportedOpError
from .targets import ModulesByPath, aten_op, describe_op

__all__ = ["WEIGHTED_LAYER", "WeightedLayer", "annotate_weighted_layers", "input_channel_dim",
           "layer_weight", "weight_owner", "weight_version"]

WEIGHTED_LAYER = "fxcfp.weighted_layer"


@dataclass(frozen=True)
class WeightedLayer:
    """One weighted layer of the traced graph.

    Attributes:
        name: the name users know the layer by: the qualified module name (``layer4.1.conv2``)
            for a module, the FX node name for a functional call.
        kind: ``"conv"`` (channels on dim 1 of its input) or ``"linear"`` (features on the
            last dim).
        weight: qualified name of the weight parameter.
        input: name of the FX node the layer reads.
        groups: convolution groups (1 for linear layers).
        in_channels: input channels (features) the layer reads.
        out_channels: output channels (kernels).
        weight_transposed: the weight is stored ``in x out`` (an ``addmm``/``mm`` with a
            transposed weight), not ``out x in``.
    """

    name: str
    kind: Literal["conv", "linear"]
    weight: str
    input: str
    groups: int
    in_channels: int
    out_channels: int
    weight_transposed: bool = False



def input_channel_dim(kind: Literal["conv", "linear"], ndim: int) -> int:
    """The dim of a layer's ``ndim`` input that holds its channels, non-negative (the one
    definition, for the passes and the plan): 1 for a convolution (``N x C x ...``), the last
    for a linear layer (``N x ... x features``: a linear layer reads its last dim whatever the
    rank)."""
    return 1 if kind == "conv" else ndim - 1


_CONV_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d,
    aten_op("conv1d", "default"), aten_op("conv2d", "default"), aten_op("conv3d", "default"),
    aten_op("conv1d", "padding"), aten_op("conv2d", "padding"), aten_op("conv3d", "padding"),
} - {None}
_CONVOLUTION = {aten_op("convolution", "default"), aten_op("_convolution", "default")} - {None}
_LINEAR_FUNCTIONS = {F.linear, aten_op("linear", "default")} - {None}
_ADDMM = {torch.addmm, aten_op("addmm", "default")} - {None}
_MM = {torch.mm, aten_op("mm", "default")} - {None}
_TRANSPOSES = {torch.t, aten_op("t", "default"), aten_op("permute", "default"), aten_op("transpose", "int"),
               torch.transpose, torch.permute, aten_op("numpy_T", "default")} - {None}
_TRANSPOSED_CONV_MODULES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_TRANSPOSED_CONV_FUNCTIONS = {
    F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    aten_op("conv_transpose1d", "default"), aten_op("conv_transpose2d", "input"),
    aten_op("conv_transpose3d", "input"),
} - {None}


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _input_name(value: Any) -> str:
    """The name of the node a layer reads (its input is always a node of the graph)."""
    return cast(fx.Node, value).name


def _parameter(gm: fx.GraphModule, node: Any) -> str | None:
    """Qualified name of the parameter that ``node`` reads, if it reads one directly."""
    if isinstance(node, fx.Node) and node.op == "get_attr":
        try:
            gm.get_parameter(str(node.target))
        except AttributeError:
            return None
        return str(node.target)
    return None


def _transposed_parameter(gm: fx.GraphModule, node: Any) -> str | None:
    if not isinstance(node, fx.Node):
        return None
    is_transpose = (node.op == "call_function" and node.target in _TRANSPOSES) or (
        node.op == "call_method" and node.target in ("t", "transpose", "permute")
    )
    return _parameter(gm, node.args[0]) if is_transpose else None


def _owner_name(gm: fx.GraphModule, weight: str, node: fx.Node, model: nn.Module | None) -> str:
    """A functional call reads ``<module>.weight`` of a Conv/Linear module (torch.export's graph
    of a module-based model): name it after that module, as users know it."""
    owner, _, leaf = weight.rpartition(".")
    if leaf == "weight" and owner and model is not None:
        try:
            module = model.get_submodule(owner)
        except AttributeError:
            module = None
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return owner
    return node.name


def _unsupported(call: str, node: fx.Node, gm: fx.GraphModule, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"{call}: FX node {node.name!r} ({describe_op(node, gm)}) {why}. "
        "Hint: fxcfp explains convolutions and linear layers whose weight is a model parameter; "
        "make the weight an nn.Parameter, or mark the enclosing module a leaf and register a "
        "channel rule for it with fxcfp.register_channel_rule."
    )


def _stack_owner(node: fx.Node) -> str | None:
    """The innermost module the node was traced in (torch.export records it)."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return path or None
    return None


def _transposed(call: str, node: fx.Node, layer: str | None) -> UnsupportedOpError:
    where = f"layer {layer!r} (FX node {node.name!r})" if layer else f"FX node {node.name!r}"
    return UnsupportedOpError(
        f"{call}: {where} is a transposed convolution. Class Feature Pyramids back-steps "
        "a class through the convolutions and linear layers of a classifier; a transposed "
        "convolution scatters each input position over many outputs (it up-samples, as in "
        "decoders and segmentation heads), and the method defines no gate for it. Hint: "
        "explain the classifier without its decoder, or up-sample with nn.Upsample followed by "
        "a Conv layer"
    )


def _describe(node: fx.Node, gm: fx.GraphModule, call: str,
              modules: ModulesByPath) -> WeightedLayer | None:
    if node.op == "call_module":
        path = str(node.target)  # a call_module target is the module's path
        module = modules(path)
        if isinstance(module, _TRANSPOSED_CONV_MODULES):
            raise _transposed(call, node, path)
        if isinstance(module, nn.modules.conv._ConvNd):
            return WeightedLayer(path, "conv", f"{path}.weight", _input_name(node.args[0]),
                                 module.groups, module.in_channels, module.out_channels)
        if isinstance(module, nn.Linear):
            return WeightedLayer(path, "linear", f"{path}.weight", _input_name(node.args[0]), 1,
                                 module.in_features, module.out_features)
        return None
    if node.op != "call_function":
        return None
    target = node.target
    if target in _TRANSPOSED_CONV_FUNCTIONS:
        raise _transposed(call, node, _stack_owner(node))
    if target in _CONV_FUNCTIONS or target in _CONVOLUTION or target in _LINEAR_FUNCTIONS:
        weight_node = _arg(node, 1, "weight")
        if target in _CONVOLUTION and _arg(node, 6, "transposed", False):
            raise _transposed(call, node, _stack_owner(node))
        weight = _parameter(gm, weight_node)
        if weight is None:
            owner = _stack_owner(node)
            layer = f"layer {owner!r} (FX node {node.name!r})" if owner else f"FX node {node.name!r}"
            raise UnsupportedOpError(
                f"{call}: {layer} ({describe_op(node, gm)}) convolves with a weight that is "
                "computed in forward, not a model parameter: a parametrization (weight_norm, "
                "spectral_norm, torch.nn.utils.parametrize) or a pruning mask inlined by "
                "torch.export, or a weight made from the input. Hint: fxcfp reads such weights "
                "from Conv/Linear modules on the torch.fx path; where the model needs "
                "torch.export, remove the parametrization first "
                "(torch.nn.utils.parametrize.remove_parametrizations, prune.remove)")
        shape = gm.get_parameter(weight).shape
        if target in _LINEAR_FUNCTIONS:
            return WeightedLayer(node.name, "linear", weight,
                                 _input_name(node.args[0]), 1, shape[1], shape[0])
        groups = _arg(node, 8, "groups", 1) if target in _CONVOLUTION else _arg(node, 6, "groups", 1)
        return WeightedLayer(node.name, "conv", weight, _input_name(node.args[0]), int(groups),
                             shape[1] * int(groups), shape[0])
    if target in _ADDMM or target in _MM:
        mat1, mat2 = (node.args[1], node.args[2]) if target in _ADDMM else node.args[:2]
        weight = _transposed_parameter(gm, mat2)
        if weight is not None:
            shape = gm.get_parameter(weight).shape
            return WeightedLayer(node.name, "linear", weight, _input_name(mat1), 1, shape[1], shape[0],
                                 weight_transposed=False)
        weight = _parameter(gm, mat2)
        if weight is not None:
            # x @ W with W stored in x out
            shape = gm.get_parameter(weight).shape
            return WeightedLayer(node.name, "linear", weight, _input_name(mat1), 1, shape[0], shape[1],
                                 weight_transposed=True)
        return None
    if target is operator.matmul and _parameter(gm, node.args[1]) is not None:
        raise _unsupported(call, node, gm,
                           "multiplies by a parameter matrix with `@`; use nn.Linear")
    return None


def annotate_weighted_layers(gm: fx.GraphModule, model: nn.Module | None = None, *,
                             call: str = "fxcfp.analyze") -> fx.GraphModule:
    """Write WEIGHTED_LAYER into node.meta of every convolution and linear layer of ``gm``.

    ``model`` (the traced module) names a functional call after the module that owns its
    weight; ``call`` is the public call whose errors these are."""
    seen: dict[str, int] = {}
    modules = ModulesByPath(gm)
    for node in gm.graph.nodes:
        layer = _describe(node, gm, call, modules)
        if layer is None:
            continue
        if node.op == "call_function" and model is not None:
            layer = replace(layer, name=_owner_name(gm, layer.weight, node, model))
        count = seen.get(layer.name, 0)
        seen[layer.name] = count + 1
        if count:
            # a module called twice is two layers of the pyramid
            layer = replace(layer, name=f"{layer.name}#{count}")
        node.meta[WEIGHTED_LAYER] = layer
    return gm


def layer_weight(gm: fx.GraphModule, weight: str) -> torch.Tensor:
    """The weight a layer uses on this call (SPEC "weighted layer"): the parameter itself, or,
    for a parametrised module (``parametrize``: weight or spectral normalisation, orthogonal...),
    the weight its parametrization computes, and for ``weight_norm``/``spectral_norm``/pruning's
    forward pre-hooks, the weight the hook set on the module for the last forward.

    fxcfp runs eval-mode views of the model, so spectral normalisation never runs its power
    iteration here, and its ``u``/``v`` vectors are never changed.
    """
    owner, _, leaf = weight.rpartition(".")
    module = gm.get_submodule(owner) if owner else gm
    value = getattr(module, leaf, None)
    if not isinstance(value, torch.Tensor):
        raise UnsupportedOpError(
            f"fxcfp.analyze: layer {owner or weight!r} has no tensor {leaf!r} to read its weight "
            f"from (found {type(value).__name__}). Hint: fxcfp explains convolutions and linear "
            "layers whose weight is a parameter, a parametrization of one, or set by a "
            "forward pre-hook (weight_norm, spectral_norm, pruning)")
    return value.detach()


def weight_owner(gm: fx.GraphModule, weight: str) -> tuple[nn.Module, str]:
    """The module holding a layer's weight (dotted target ``weight``) and its attribute name:
    resolved once per plan, since the graph's module tree does not change."""
    owner, _, leaf = weight.rpartition(".")
    return (gm.get_submodule(owner) if owner else gm), leaf


def weight_version(module: nn.Module, leaf: str) -> tuple[tuple[int, int], ...]:
    """Changes when the weight ``module.<leaf>``, or anything it is computed from, is updated or
    replaced: the parameter's version, else those of every tensor of the owning module (a
    parametrization's ``original``, ``weight_g``/``weight_v``, a pruning mask, spectral norm's
    ``u``)."""
    direct = module._parameters.get(leaf)
    tensors = [direct] if direct is not None else [*module.parameters(), *module.buffers()]
    return tuple((t._version, t.data_ptr()) for t in tensors)
