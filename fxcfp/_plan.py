"""A plan: everything about one traced model and one input signature that does not depend on the
clip's values — the weighted layers, their channel maps, and the graph that captures pooled inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import fx

from ._backstep import LayerTensors
from ._capture import FirstCapture, capture_module
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
        return self._pooled_weight(layer)[0]

    def _pooled_weight(self, layer: LayerInfo) -> tuple[torch.Tensor, bool]:
        """The pooled weight, and whether it is memory of its own (a mean) rather than the live
        weight itself (a linear layer's, a 1x1 convolution's viewed as ``out x in/groups``)."""
        weight = layer_weight(self.traced.gm, layer.weight)
        if layer.weight_transposed:
            weight = weight.t()
        if weight.dim() > 2:
            if math.prod(weight.shape[2:]) == 1:
                # a 1x1 kernel is its own mean (torch's reduction over one element costs as
                # much as a 3x3's: 3.7 ms for a 2048 x 512 x 1 x 1 weight)
                return weight.flatten(1), False
            return weight.mean(dim=tuple(range(2, weight.dim()))), True
        return weight, False

    def layer_tensors(self, device: torch.device, dtype: torch.dtype) -> list[LayerTensors]:
        tensors = []
        for layer in self.layers:
            # a copy of the live weight only: a linear layer's would alias the parameter
            weight, fresh = self._pooled_weight(layer)
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
                weight=weight.to(device=device, dtype=dtype, copy=not fresh),
                group_of_kernel=group_of_kernel,
                sources=sources.to(device).contiguous(),
                members=members,
                shared_sources=layer.shared_sources,
            ))
        return tensors


def _shared(sources: torch.Tensor) -> bool:
    """Does some producer id appear in two rows (a flatten)? A count per id, not a sort."""
    ids = sources[sources >= 0]
    if ids.numel() < 2:
        return False
    low = ids.min()
    return bool((torch.bincount(ids - low) > 1).any())


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
    observed = FirstCapture(gm)
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
    capture, pooled_index = capture_module(gm, layers, observed.poolers)
    plan = Plan(
        traced=traced, layers=tuple(layers), capture=capture, pooled_index=pooled_index,
        output_sources=out.sources, total_ids=out.total_ids, input_names=input_names,
        input_ranges=out.inputs, input_shapes=tuple(tuple(x.shape) for x in inputs),
        id_owner=id_owner, id_channel=id_channel, names=names,
    )
    return plan, observed.result(layers)
