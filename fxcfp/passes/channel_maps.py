"""Compute every weighted layer's channel map by running the graph on channel labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from .._errors import (
    PATHWAYS_HINT,
    ModelCallError,
    UnsupportedModelError,
    UnsupportedOpError,
    describe_model_error,
)
from .inplace import INPLACE
from .labels import NONE, dedupe, new_label
from .map_nodes import find_map_node
from .registry import lookup_rule
from .rules import NotExplainableError, RuleCall, RuleError
from .targets import ModulesByPath, describe_op
from .weighted_layers import WEIGHTED_LAYER, WeightedLayer, input_channel_dim

__all__ = ["CHANNEL_MAP", "OUTPUT_MAP", "ChannelMap", "OutputMap", "annotate_channel_maps"]

CHANNEL_MAP = "fxcfp.channel_map"
OUTPUT_MAP = "fxcfp.output_map"


@dataclass(frozen=True)
class ChannelMap:
    """The channel map of one weighted layer's input (SPEC "channel map").

    Attributes:
        sources: ``in_channels x K`` global producer ids: row ``i`` lists the kernels (or clip
            channels) whose values reach input channel ``i`` through weight-free ops; ``-1`` pads.
        first_id: the global id of this layer's output channel 0; its kernels are
            ``first_id .. first_id + out_channels - 1``.
        pathway: the model input this layer belongs to (the one it is fewest weighted layers
            away from); maps are drawn over that input.
        input_shape: shape of the activation the layer reads, batch dim included.
        map_node: the node whose output the layer's maps are drawn on: its input, or for an
            input without location the pre-pool tensor (see :mod:`fxcfp.passes.map_nodes`).
        map_channel_dim: the channel dim of ``map_node``'s output.
    """

    sources: torch.Tensor
    first_id: int
    pathway: int
    input_shape: tuple[int, ...]
    map_node: str
    map_channel_dim: int


@dataclass(frozen=True)
class OutputMap:
    """Where the model's output channels come from: ``classes x K`` global producer ids, and the
    id space: ``inputs`` as (first id, channels) per model input."""

    sources: torch.Tensor
    total_ids: int
    inputs: tuple[tuple[int, int], ...]


def _module_path(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1]
        if path[0]:
            return f" inside module {path[0]!r} ({getattr(path[1], '__name__', path[1])})"
    return ""


def _mutable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        items = [_mutable(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _mutable(v) for k, v in value.items()}
    return value


def _failed(call: str, node: fx.Node, gm: nn.Module, why: str) -> UnsupportedOpError:
    # errors keep the failing node: a plain-Python helper kept opaque by symbolic tracing is
    # worth a second try with torch.export, which sees through it
    return UnsupportedOpError(
        f"{call}: FX node {node.name!r} ({describe_op(node, gm)}{_module_path(node)}): "
        f"{why}. Hint: register a rule of your own with fxcfp.register_channel_rule.",
        fx_node=node)


def _has_tensor(value: Any) -> bool:
    """Is there a tensor in ``value`` (a value, or a label: labels are tensors too)?"""
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


class _LabelInterpreter(fx.Interpreter):
    """Runs the graph on real values and, beside them, on channel labels."""

    def __init__(self, gm: fx.GraphModule, observe: Callable[[fx.Node, Any], None] | None,
                 call: str) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.call = call  # the public call, for the errors
        self.observe = observe
        self.extra_traceback = False  # our errors name the node themselves
        self.labels: dict[fx.Node, Any] = {}
        self.hops: dict[fx.Node, dict[int, int]] = {}
        self.next_id = 0
        self.inputs: list[tuple[int, int]] = []
        self.input_ranks: list[int] = []
        # output shapes, for finding where maps of a layer without location are drawn
        self.shapes: dict[fx.Node, tuple[int, ...]] = {}
        self.modules = ModulesByPath(gm)

    def fetch_attr(self, target: str) -> Any:
        module = self.modules.get(target)  # a call_module's target; else a parameter's
        return module if module is not None else super().fetch_attr(target)

    def _ids(self, count: int) -> torch.Tensor:
        ids = torch.arange(self.next_id, self.next_id + count)
        self.next_id += count
        return ids

    def _label_of(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.labels.get(arg)
        if isinstance(arg, (list, tuple)):
            return tuple(self._label_of(a) for a in arg)
        if isinstance(arg, dict):
            return {k: self._label_of(v) for k, v in arg.items()}
        return None

    def _hops_of(self, node: fx.Node) -> dict[int, int]:
        merged: dict[int, int] = {}
        for parent in node.all_input_nodes:
            for pathway, hops in self.hops.get(parent, {}).items():
                merged[pathway] = min(hops, merged.get(pathway, hops))
        return merged

    def fetch_args_kwargs_from_env(self, n: fx.Node) -> tuple[tuple, dict]:
        args, kwargs = super().fetch_args_kwargs_from_env(n)
        # fx hands out immutable lists; a wrapped helper may edit its arguments in place
        return _mutable(args), _mutable(kwargs)

    def run_node(self, n: fx.Node) -> Any:
        value = self._run_node(n)
        if self.observe is not None:
            self.observe(n, value)
        return value

    def _run_node(self, n: fx.Node) -> Any:
        try:
            value = super().run_node(n)
        except (UnsupportedOpError, UnsupportedModelError, ModelCallError):
            raise
        except Exception as err:
            many = len(self.inputs) > 1
            shapes = [self.shapes.get(node) for node in self.graph.nodes
                      if node.op == "placeholder"]
            given = f"a list of {len(shapes)} tensor(s) of shapes {shapes}" if many else "this input"
            raise ModelCallError(
                f"{self.call}: the model raised at FX node {n.name!r} "
                f"({describe_op(n, self.module)}{_module_path(n)}) on {given}: "
                f"{describe_model_error(err, PATHWAYS_HINT if many else None)}"
            ) from err
        self.hops[n] = self._hops_of(n)
        if isinstance(value, torch.Tensor):
            self.shapes[n] = tuple(value.shape)
        if n.op == "placeholder":
            if isinstance(value, torch.Tensor):
                if value.dim() < 2:
                    raise UnsupportedModelError(
                        f"{self.call}: model input {n.name!r} has shape {tuple(value.shape)}; "
                        "inputs must be N x C x ... tensors"
                    )
                self.inputs.append((self.next_id, value.shape[1]))
                self.input_ranks.append(value.dim())
                self.labels[n] = new_label(self._ids(value.shape[1]), value.dim(), 1)
                self.hops[n] = {len(self.inputs) - 1: 0}
            return value
        if n.op in ("get_attr", "output"):
            if n.op == "output":
                self.labels[n] = self._label_of(n.args[0])
            return value
        layer: WeightedLayer | None = n.meta.get(WEIGHTED_LAYER)
        if layer is not None:
            self._weighted(n, layer, value)
            return value
        value = self._labelled(n, value)
        if n.meta.get(INPLACE):
            self._check_aliases(n, value)
        return value

    def _check_aliases(self, n: fx.Node, value: Any) -> None:
        """An in-place edit is followed through the node that made the tensor (the graph is
        rewritten for that); one seen through another live alias is refused."""
        if not isinstance(value, torch.Tensor) or value.untyped_storage().nbytes() == 0:
            return
        storage = value.untyped_storage().data_ptr()
        done = set(self.user_to_last_uses.get(n, []))
        for other, tensor in self.env.items():
            if other is n or other in done or not isinstance(tensor, torch.Tensor):
                continue
            if tensor.untyped_storage().data_ptr() == storage:
                raise UnsupportedOpError(
                    f"{self.call}: FX node {n.name!r} ({describe_op(n, self.module)}"
                    f"{_module_path(n)}) edits a tensor in place that FX node {other.name!r} "
                    f"({describe_op(other, self.module)}{_module_path(other)}) also refers to (a "
                    "view of it, or a module that returns its input), and that node is read "
                    "later; fxcfp cannot follow an edit through an alias. Hint: write the edit "
                    "out of place (z = z + y instead of z.add_(y), inplace=False).",
                    fx_node=n)

    def _labelled(self, n: fx.Node, value: Any) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        labels = self._label_of(n.args)
        kwarg_labels = self._label_of(dict(n.kwargs))
        if not _has_tensor(value) or not (_has_tensor(labels) or _has_tensor(kwarg_labels)):
            # sizes, constants, and tensors made from them carry no producer channels
            self.labels[n] = None
            return value
        module = self.modules(n.target) if n.op == "call_module" else None
        rule = lookup_rule(n, module)
        if rule is None:
            raise UnsupportedOpError(
                f"{self.call}: no channel rule for FX node {n.name!r}: {describe_op(n, self.module)}"
                f"{_module_path(n)}. fxcfp never treats an unknown op as identity. Hint: if the op "
                "keeps channels apart, register it, e.g. fxcfp.register_channel_rule(<op>, "
                "'pointwise' | 'passthrough' | 'shape' | 'reduce'), or pass a function rule.",
                fx_node=n)
        call = RuleCall(n, tuple(args), dict(kwargs), labels, kwarg_labels, value,
                        self._applier(n))
        try:
            self.labels[n] = rule(call)
        except NotExplainableError as err:
            raise UnsupportedModelError(
                f"{self.call}: the model cannot be explained with Class Feature Pyramids: FX "
                f"node {n.name!r} ({describe_op(n, self.module)}{_module_path(n)}): {err}.",
                fx_node=n) from err
        except (RuleError, RuntimeError, TypeError, IndexError) as err:
            raise _failed(self.call, n, self.module,
                          f"the channel rule cannot map it: {err}") from err
        return value

    def _applier(self, n: fx.Node) -> Any:
        if n.op == "call_module":
            return self.modules(n.target)
        if n.op == "call_method":
            method = str(n.target)  # a call_method's target is the method's name
            return lambda self_, *args, **kwargs: getattr(self_, method)(*args, **kwargs)
        return n.target

    def _weighted(self, n: fx.Node, layer: WeightedLayer, value: torch.Tensor) -> None:
        source = self.env[self._input_node(n, layer)]
        label = self.labels.get(self._input_node(n, layer))
        dim = input_channel_dim(layer.kind, source.dim())
        if source.shape[dim] != layer.in_channels:
            raise UnsupportedOpError(
                f"{self.call}: layer {layer.name!r} (FX node {n.name!r}) reads {source.shape[dim]}"
                f" channels but its weight expects {layer.in_channels}"
            )
        node_hops = self.hops[n]
        pathway = min(node_hops, key=lambda p: (node_hops[p], p)) if node_hops else 0
        self.hops[n] = {p: h + 1 for p, h in node_hops.items()}
        map_node, map_dim = find_map_node(self._input_node(n, layer), dim, self.labels,
                                          self.shapes, self.input_ranks[pathway])
        n.meta[CHANNEL_MAP] = ChannelMap(
            sources=_per_channel(label, source.shape, dim),
            first_id=self.next_id,
            pathway=pathway,
            input_shape=tuple(source.shape),
            map_node=map_node,
            map_channel_dim=map_dim,
        )
        out_dim = 1 if layer.kind == "conv" else value.dim() - 1
        self.labels[n] = new_label(self._ids(layer.out_channels), value.dim(), out_dim)

    def _input_node(self, n: fx.Node, layer: WeightedLayer) -> fx.Node:
        return next(a for a in n.all_input_nodes if a.name == layer.input)


def _per_channel(label: torch.Tensor | None, shape: torch.Size, dim: int) -> torch.Tensor:
    """For each channel along ``dim``: the ids found anywhere in that channel (``C x K``)."""
    channels = shape[dim]
    if label is None:
        return torch.full((channels, 1), NONE, dtype=torch.int64)
    moved = label.movedim(dim, 0)
    # every id anywhere in the channel, as one row of unique ids
    table = dedupe(moved.reshape(moved.shape[0], -1).to(torch.int64))
    width = table.shape[1]
    if table.shape[0] == 1 and channels > 1:
        table = table.expand(channels, width).clone()  # one label for all channels
    return table


def annotate_channel_maps(gm: fx.GraphModule, *inputs: torch.Tensor,
                          observe: Callable[[fx.Node, Any], None] | None = None,
                          call: str = "fxcfp.analyze") -> fx.GraphModule:
    """Write CHANNEL_MAP into node.meta of every weighted layer, and OUTPUT_MAP on the output node:
    which producer kernels (or input channels) feed each channel through weight-free ops.

    ``observe(node, value)`` sees every node's real value as the pass runs the graph (the
    analysis takes its first pooled inputs from it instead of running the model again);
    ``call`` is the public call whose errors these are."""
    interpreter = _LabelInterpreter(gm, observe, call)
    with torch.no_grad():
        output = interpreter.run(*inputs)
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        got = (f"a tensor of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor)
               else f"a {type(output).__name__}")
        raise UnsupportedModelError(
            f"{call}: the model returned {got}; it must return N x classes logits (or "
            "probabilities). Hint: wrap the model so that forward returns the classification "
            "logits only."
        )
    label = interpreter.labels.get(out_node)
    if isinstance(label, tuple) and len(label) == 1:
        label = label[0]  # torch.export returns a one-tuple
    out_node.meta[OUTPUT_MAP] = OutputMap(
        sources=_per_channel(label if isinstance(label, torch.Tensor) else None, output.shape, 1),
        total_ids=interpreter.next_id,
        inputs=tuple(interpreter.inputs),
    )
    return gm
