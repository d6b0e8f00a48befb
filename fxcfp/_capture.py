"""The capture stage: what the back-step and the maps read off a forward pass of the traced model.

Three pieces, each a forward pass of the eval-mode view's graph (``plan.traced.gm``):

- :func:`capture_module` extends the graph to also return every weighted layer's input pooled
  over all dims but batch and channel (SPEC step 2): one forward gives the logits and the
  back-step's inputs. :class:`FirstCapture` takes the same numbers from the channel-map pass's
  own run of the graph, so the first call runs the model once.
- :func:`record` is the maps' targeted forward: one clip, only the requested channels of the
  requested nodes, stopping as soon as it has them.
- :func:`eval_mode` is the block both run in: no gradients; the ``training`` flags are the
  view's own (:mod:`fxcfp._view`), so nothing of the caller's is flipped.

Nothing here imports the analyzer or the pyramid: both call into this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn

from .passes import WEIGHTED_LAYER, WeightedLayer

if TYPE_CHECKING:
    from ._plan import LayerInfo, Plan

__all__ = ["FirstCapture", "capture_module", "eval_mode", "pool_dims", "record",
           "record_activations"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """No gradients for the block. The model's ``training`` flags are left alone: fxcfp runs an
    eval-mode view of it (:mod:`fxcfp._view`), so nothing needs flipping, and nothing races."""
    with torch.no_grad():
        yield


def pool_dims(ndim: int, kind: str) -> tuple[int, ...]:
    """The dims SPEC step 2 averages a layer's input over: all but batch and channel."""
    return tuple(range(2, ndim)) if kind == "conv" else tuple(range(1, ndim - 1))


def _pool(graph: fx.Graph, node: fx.Node, ndim: int, kind: str) -> fx.Node:
    """A node averaging ``node`` over every dim but batch and channel (SPEC step 2)."""
    dims = pool_dims(ndim, kind)
    if not dims:
        return node
    anchor = node
    if node.op == "placeholder":
        anchor = [n for n in graph.nodes if n.op == "placeholder"][-1]
    with graph.inserting_after(anchor):
        # pooled right where the activation is made, so the activation can be freed early
        return graph.call_function(torch.mean, (node,), {"dim": dims})


def capture_module(gm: fx.GraphModule, layers: list[LayerInfo]
                   ) -> tuple[fx.GraphModule, tuple[int, ...]]:
    """``gm`` extended to return ``(output, pooled inputs)``, and for each layer which pooled
    output is its input (layers reading one activation the same way share one)."""
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


class FirstCapture:
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
                dims = pool_dims(value.dim(), kind)
                self.pooled[f"{node.name}/{kind}"] = (torch.mean(value, dim=dims) if dims
                                                      else value)

    def result(self, layers: list[LayerInfo]) -> tuple[Any, tuple[torch.Tensor, ...]]:
        keys = list(dict.fromkeys(f"{layer.input_node}/{layer.kind}" for layer in layers))
        return self.output, tuple(self.pooled[key] for key in keys)


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


def record(plan: Plan, inputs: tuple[torch.Tensor, ...] | list[torch.Tensor],
           requests: dict[str, dict[int, torch.Tensor]], sample: int
           ) -> dict[tuple[str, int], torch.Tensor]:
    """The maps' targeted forward: only the requested channels of clip ``sample``. It runs the
    leaf modules' hooks once more, like any forward pass."""
    if plan.traced.method == "fx":  # a symbolic trace runs any batch size: one clip is enough
        inputs, sample = tuple(x[sample: sample + 1] for x in inputs), 0
    with eval_mode(plan.traced.gm):
        # a copy: a model that edits its input in place must not edit the pyramid's clip
        return record_activations(plan.traced.gm, [x.clone() for x in inputs], requests, sample)
