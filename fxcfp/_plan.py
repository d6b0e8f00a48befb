"""A plan: everything about one traced model and one input signature that does not depend on the
clip's values — the weighted layers, their channel maps, and the graph that captures pooled inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import fx

from ._backstep import LayerTensors
from ._errors import UnsupportedModelError
from ._trace import Traced
from .passes import (
    CHANNEL_MAP,
    OUTPUT_MAP,
    WEIGHTED_LAYER,
    ChannelMap,
    OutputMap,
    WeightedLayer,
    annotate_channel_maps,
    annotate_weighted_layers,
)
from .passes.weighted_layers import input_channel_dim, layer_weight

__all__ = ["LayerInfo", "Plan", "build_plan", "plan_and_capture"]


@dataclass(frozen=True)
class LayerInfo:
    """One weighted layer as the back-step and the result see it.

    ``map_node`` is the FX node of ``traced.gm`` whose output the layer's maps are drawn on, and
    ``map_channel_dim`` its channel dim: ``input_node`` and :attr:`channel_dim` for a layer whose
    input has a location; for one without (a classifier after global pooling), the pre-pool
    tensor whose channels are its input's channels one-to-one through weight-free ops, where
    there is one (SPEC "Maps of a layer without location"; :mod:`fxcfp.passes.map_nodes`).
    """

    name: str
    kind: Literal["conv", "linear"]
    node: str
    input_node: str
    weight: str
    weight_transposed: bool
    groups: int
    in_channels: int
    out_channels: int
    first_id: int
    pathway: int
    input_shape: tuple[int, ...]
    sources: torch.Tensor  # in_channels x K global ids, -1 padding (cpu)
    map_node: str
    map_channel_dim: int
    # some producer feeds several input channels (a flatten): edges need de-duplicating
    shared_sources: bool = False

    @property
    def channel_dim(self) -> int:
        return input_channel_dim(self.kind, len(self.input_shape))


@dataclass(frozen=True)
class Plan:
    """The static half of an analysis, built once per traced model and input signature.

    Attributes:
        traced: the traced model.
        layers: the weighted layers in topological order.
        capture: ``gm`` extended to return ``(output, pooled inputs of every layer)``.
        pooled_index: for each layer, which pooled output of ``capture`` is its input.
        output_sources: ``classes x K`` global ids of the kernels each class comes from.
        total_ids: number of global ids (kernels of every layer plus input channels).
        input_names: node-key prefix of each model input (``input`` or ``input0``...).
        input_ranges: ``(first id, channels)`` of each model input.
        input_shapes: shapes of the inputs the plan was built for.
        id_owner: for each global id, the index into :attr:`names` of its layer or input.
        id_channel: for each global id, its channel.
        names: layer names followed by input names.
    """

    traced: Traced
    layers: tuple[LayerInfo, ...]
    capture: fx.GraphModule
    pooled_index: tuple[int, ...]
    output_sources: torch.Tensor
    total_ids: int
    input_names: tuple[str, ...]
    input_ranges: tuple[tuple[int, int], ...]
    input_shapes: tuple[tuple[int, ...], ...]
    id_owner: np.ndarray
    id_channel: np.ndarray
    names: tuple[str, ...]

    def layer_index(self, name: str) -> int:
        for i, layer in enumerate(self.layers):
            if layer.name == name:
                return i
        raise KeyError(name)

    def pooled_weight(self, layer: LayerInfo) -> torch.Tensor:
        """SPEC step 2: the weight averaged over its kernel dims, ``out x in/groups``."""
        weight = layer_weight(self.traced.gm, layer.weight)
        if layer.weight_transposed:
            weight = weight.t()
        if weight.dim() > 2:
            weight = weight.mean(dim=tuple(range(2, weight.dim())))
        return weight

    def layer_tensors(self, device: torch.device, dtype: torch.dtype) -> list[LayerTensors]:
        tensors = []
        for layer in self.layers:
            sources = layer.sources.clone()
            sources[sources < 0] = self.total_ids  # padding points at the sink
            group_of_kernel = None
            if layer.groups > 1:
                per_group = layer.out_channels // layer.groups
                group_of_kernel = torch.arange(layer.out_channels, device=device) // per_group
            # one passing pair gives an edge to every real producer of its channel's map
            members = (None if layer.shared_sources
                       else (layer.sources >= 0).sum(1).to(device=device, dtype=torch.int32))
            tensors.append(LayerTensors(
                first_id=layer.first_id,
                groups=layer.groups,
                # a copy: a linear weight would otherwise alias the live parameter
                weight=self.pooled_weight(layer).to(device=device, dtype=dtype, copy=True),
                group_of_kernel=group_of_kernel,
                sources=sources.to(device).contiguous(),
                members=members,
                shared_sources=layer.shared_sources,
            ))
        return tensors


def _pool_dims(ndim: int, kind: str) -> tuple[int, ...]:
    """The dims SPEC step 2 averages a layer's input over: all but batch and channel."""
    return tuple(range(2, ndim)) if kind == "conv" else tuple(range(1, ndim - 1))


def _pool(graph: fx.Graph, node: fx.Node, ndim: int, kind: str) -> fx.Node:
    """A node averaging ``node`` over every dim but batch and channel (SPEC step 2)."""
    dims = _pool_dims(ndim, kind)
    if not dims:
        return node
    anchor = node
    if node.op == "placeholder":
        anchor = [n for n in graph.nodes if n.op == "placeholder"][-1]
    with graph.inserting_after(anchor):
        # pooled right where the activation is made, so the activation can be freed early
        return graph.call_function(torch.mean, (node,), {"dim": dims})


def _capture_module(gm: fx.GraphModule, layers: list[LayerInfo]) -> tuple[fx.GraphModule, tuple[int, ...]]:
    graph = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    output = graph.graph_copy(gm.graph, values)
    by_name = {old.name: new for old, new in values.items()}
    pooled_nodes: list[fx.Node] = []
    slot: dict[str, int] = {}
    index = []
    for layer in layers:
        key = f"{layer.input_node}/{layer.kind}"
        if key not in slot:
            slot[key] = len(pooled_nodes)
            pooled_nodes.append(_pool(graph, by_name[layer.input_node], len(layer.input_shape),
                                      layer.kind))
        index.append(slot[key])
    graph.output((output, tuple(pooled_nodes)))
    capture = fx.GraphModule(gm, graph, "FxcfpCapture")
    return capture, tuple(index)


def _shared(sources: torch.Tensor) -> bool:
    ids = sources[sources >= 0]
    return ids.numel() != torch.unique(ids).numel()


class _FirstCapture:
    """What ``plan.capture`` would return, taken from the channel-map pass's own run of the
    graph: the output, and each layer input pooled by the same call the capture makes, on the
    same values, so the numbers are the capture's bit for bit."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.kinds: dict[str, set[str]] = {}
        for node in gm.graph.nodes:
            layer: WeightedLayer | None = node.meta.get(WEIGHTED_LAYER)
            if layer is not None:
                self.kinds.setdefault(layer.input, set()).add(layer.kind)
        self.pooled: dict[str, torch.Tensor] = {}
        self.output: Any = None

    def __call__(self, node: fx.Node, value: Any) -> None:
        if node.op == "output":
            self.output = value
        for kind in self.kinds.get(node.name, ()):
            if isinstance(value, torch.Tensor):
                dims = _pool_dims(value.dim(), kind)
                self.pooled[f"{node.name}/{kind}"] = (torch.mean(value, dim=dims) if dims
                                                      else value)

    def result(self, layers: list[LayerInfo]) -> tuple[Any, tuple[torch.Tensor, ...]]:
        keys = list(dict.fromkeys(f"{layer.input_node}/{layer.kind}" for layer in layers))
        return self.output, tuple(self.pooled[key] for key in keys)


def build_plan(traced: Traced, inputs: list[torch.Tensor], model: torch.nn.Module) -> Plan:
    """Run the pass pipeline on ``traced`` for ``inputs`` and gather the plan."""
    return plan_and_capture(traced, inputs, model)[0]


def plan_and_capture(traced: Traced, inputs: list[torch.Tensor], model: torch.nn.Module, *,
                     call: str = "fxcfp.analyze"
                     ) -> tuple[Plan, tuple[Any, tuple[torch.Tensor, ...]]]:
    """:func:`build_plan`, and what ``plan.capture(*inputs)`` returns, without a second run of
    the model: the channel-map pass runs the graph on ``inputs`` anyway. Errors name ``call``."""
    gm = traced.gm
    annotate_weighted_layers(gm, model, call=call)
    observed = _FirstCapture(gm)
    annotate_channel_maps(gm, *inputs, observe=observed, call=call)
    layers = []
    for node in gm.graph.nodes:
        layer: WeightedLayer | None = node.meta.get(WEIGHTED_LAYER)
        if layer is None:
            continue
        cmap: ChannelMap | None = node.meta.get(CHANNEL_MAP)
        if cmap is None:
            continue  # dead code: the layer does not reach the output
        layers.append(LayerInfo(
            name=layer.name, kind=layer.kind, node=node.name, input_node=layer.input,
            weight=layer.weight, weight_transposed=layer.weight_transposed,
            groups=layer.groups, in_channels=layer.in_channels,
            out_channels=layer.out_channels, first_id=cmap.first_id, pathway=cmap.pathway,
            input_shape=cmap.input_shape, sources=cmap.sources,
            map_node=cmap.map_node, map_channel_dim=cmap.map_channel_dim,
            shared_sources=_shared(cmap.sources),
        ))
    if not layers:
        raise UnsupportedModelError(
            f"{call}: the model ({type(model).__name__}) has no weighted layer: no "
            "convolution or linear layer whose weight is a parameter was found in its traced "
            "graph, so there are no kernels to explain."
        )
    out: OutputMap = next(n for n in gm.graph.nodes if n.op == "output").meta[OUTPUT_MAP]
    input_names = (("input",) if len(out.inputs) == 1
                   else tuple(f"input{i}" for i in range(len(out.inputs))))
    names = tuple(layer.name for layer in layers) + input_names
    id_owner = np.empty(out.total_ids, dtype=np.int64)
    id_channel = np.empty(out.total_ids, dtype=np.int64)
    ranges = [(layer.first_id, layer.out_channels) for layer in layers] + list(out.inputs)
    for owner, (first, count) in enumerate(ranges):
        id_owner[first: first + count] = owner
        id_channel[first: first + count] = np.arange(count)
    capture, pooled_index = _capture_module(gm, layers)
    plan = Plan(
        traced=traced, layers=tuple(layers), capture=capture, pooled_index=pooled_index,
        output_sources=out.sources, total_ids=out.total_ids, input_names=input_names,
        input_ranges=out.inputs, input_shapes=tuple(tuple(x.shape) for x in inputs),
        id_owner=id_owner, id_channel=id_channel, names=names,
    )
    return plan, observed.result(layers)


class _ActivationRecorder(fx.Interpreter):
    """Runs ``gm`` and keeps, for the requested nodes, one sample's selected channels only."""

    def __init__(self, gm: fx.GraphModule, requests: dict[str, dict[int, torch.Tensor]],
                 sample: int) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.requests = dict(requests)
        self.sample = sample
        self.found: dict[tuple[str, int], torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        for dim, channels in self.requests.pop(n.name, {}).items():
            row = value[self.sample]
            picked = row.index_select(dim - 1, channels.to(row.device))
            # channels first, whichever axis the layer reads them on (channels-last linears)
            self.found[(n.name, dim)] = picked.movedim(dim - 1, 0).cpu()
        if not self.requests:
            raise _Done
        return value


class _Done(Exception):
    pass


def record_activations(gm: fx.GraphModule, inputs: list[torch.Tensor],
                       requests: dict[str, dict[int, torch.Tensor]], sample: int
                       ) -> dict[tuple[str, int], torch.Tensor]:
    """One forward that keeps only the requested channels (``node -> channel dim -> ids``) of the
    requested nodes, channels first, and stops as soon as it has them all."""
    recorder = _ActivationRecorder(gm, requests, sample)
    if requests:
        try:
            recorder.run(*inputs)
        except _Done:
            pass
    return recorder.found
