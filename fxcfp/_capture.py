"""The capture stage: what the back-step and the maps read off a forward pass of the traced model.

Three pieces, each a forward pass of the eval-mode view's graph (``plan.traced.gm``):

- :func:`capture_module` extends the graph to also return every weighted layer's input pooled
  over all dims but batch and channel (SPEC step 2): one forward gives the logits and the
  back-step's inputs. :class:`FirstCapture` takes the same numbers from the channel-map pass's
  own run of the graph, so the first call runs the model once.
- :func:`record` is the maps' targeted forward: one clip, only the requested channels of the
  requested nodes, stopping as soon as it has them.
- :func:`capture_maps` is the capture with the maps of one mode kept too
  (``fxcfp.analyze(..., maps=...)``): the capture graph extended to also return every map
  node's output (:func:`map_capture_module`), so the analysis's one forward pass is also the
  maps' (and, for evidence maps, their backward pass comes after the back-step).
- :func:`eval_mode` is the block they run in: no gradients; the ``training`` flags are the
  view's own (:mod:`fxcfp._view`), so nothing of the caller's is flipped.

Nothing here imports the analyzer or the pyramid: both call into this module.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import fx, nn

from ._evidence import _leaf, evidence_products, grad_mode, pick_channels
from ._trace import LazyGraphModule
from .passes import WEIGHTED_LAYER, WeightedLayer
from .passes.inplace import INPLACE
from .passes.targets import ModulesByPath

if TYPE_CHECKING:
    from ._plan import LayerInfo, Plan

__all__ = ["FirstCapture", "MapCapture", "capture_maps", "capture_module", "divide", "eval_mode",
           "input_readers", "map_capture_module", "pool_dims", "pooler", "record",
           "record_activations"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """No gradients for the block. The model's ``training`` flags are left alone: fxcfp runs an
    eval-mode view of it (:mod:`fxcfp._view`), so nothing needs flipping, and nothing races."""
    with torch.no_grad():
        yield


# modules and functions whose output is memory of its own, whatever they read
_FRESH_MODULES = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)
_FRESH_FUNCTIONS = {
    torch.conv1d, torch.conv2d, torch.conv3d, torch.nn.functional.linear,
    torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d,
    torch.ops.aten.convolution.default, torch.ops.aten.conv1d.default,
    torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default, torch.ops.aten.linear.default}
# namespaces of the functions trusted not to edit a tensor unless the in-place pass says so
_KNOWN = ("torch", "_operator", "operator", "builtins", "math")


def input_readers(gm: fx.GraphModule) -> tuple[nn.Module, ...] | None:
    """The modules that read the inputs' memory in a run of ``gm``, where no in-place op can
    reach it: then a run never edits its inputs, and the capture needs no copy of the clip
    (the analysis holds one already, for its maps). ``None`` where a run may edit an input: an
    in-place op (marked by :func:`fxcfp.passes.inplace.redirect_inplace`), a module or a
    function of the model's own reading a tensor that may share the input's memory.

    The modules returned are convolutions, linear and batch-norm layers: they never edit their
    input, but a hook of theirs may, so the caller looks at their hooks on every call.
    """
    sharing: set[fx.Node] = set()  # nodes whose value may be (a view of) an input
    readers: list[nn.Module] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            sharing.add(node)
            continue
        if node.op == "output" or not any(a in sharing for a in node.all_input_nodes):
            continue
        if node.meta.get(INPLACE):
            return None
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            if not isinstance(module, _FRESH_MODULES):
                return None  # a module whose forward fxcfp does not see
            readers.append(module)
            continue
        if node.op == "call_function":
            target = node.target
            if target in _FRESH_FUNCTIONS or target is divide:  # divide edits only its sums
                continue
            module_name = getattr(target, "__module__", None) or ""
            if not (isinstance(target, torch._ops.OpOverload)
                    or module_name.split(".")[0] in _KNOWN):
                return None  # a function of the model's own, opaque to the trace
        sharing.add(node)  # a view, a method, any op: it may share the input's memory
    return tuple(readers)


def pool_dims(ndim: int, kind: str) -> tuple[int, ...]:
    """The dims SPEC step 2 averages a layer's input over: all but batch and channel."""
    return tuple(range(2, ndim)) if kind == "conv" else tuple(range(1, ndim - 1))


def pooler(value: torch.Tensor, kind: str) -> tuple[Any, tuple[int, ...], int]:
    """How a layer input like ``value`` is pooled (SPEC step 2): the function, its dims, and
    the count to divide its result by afterwards (0: it is final). The first call's capture
    decides on the values it sees and the capture graph takes its decisions (the plan is per
    shape, dtype and device), so both give the same numbers bit for bit. The function is
    ``None`` where no dim is pooled: the input is its own pooled value.

    ``torch.mean`` on the CPU is a sum and an in-place division by the count, and the division
    was half its cost on small inputs (15.7 against 7.2 us): float32 and float64 inputs on the
    CPU are summed where they are made and divided in one ``torch._foreach_div_`` at the end
    (:func:`divide`; the same ``div_`` per tensor, so the same numbers). Where the pooled dims
    hold one element (a squeeze-excitation's 1x1 vector) the sum is the mean on any device.
    """
    dims = pool_dims(value.dim(), kind)
    if not dims:
        return None, dims, 0
    count = 1
    for dim in dims:
        count *= value.shape[dim]
    if count == 1:
        return torch.sum, dims, 0
    if value.device.type == "cpu" and value.dtype in (torch.float32, torch.float64):
        return torch.sum, dims, count
    return torch.mean, dims, 0


def divide(pooled: tuple[Any, ...], counts: tuple[int, ...]) -> tuple[Any, ...]:
    """``pooled`` with each sum divided, in place, by its count (0: left as it is)."""
    sums = [p for p, count in zip(pooled, counts, strict=True) if count]
    if sums:
        if torch.is_grad_enabled():  # the evidence maps' forward: the means are not in its graph
            sums = [p.detach() for p in sums]
        torch._foreach_div_(sums, [count for count in counts if count])
    return pooled


# a layer input's key (its node and the layer kind) -> pooler()'s answer for it
Poolers = dict[str, tuple[Any, tuple[int, ...], int]]


def _pool(graph: fx.Graph, node: fx.Node, how: tuple[Any, tuple[int, ...], int]) -> fx.Node:
    """A node pooling ``node`` over every dim but batch and channel (SPEC step 2)."""
    function, dims, _ = how
    if function is None:
        return node
    anchor = node
    if node.op == "placeholder":
        anchor = [n for n in graph.nodes if n.op == "placeholder"][-1]
    with graph.inserting_after(anchor):
        # pooled right where the activation is made, so the activation can be freed early
        return graph.call_function(function, (node,), {"dim": dims})


def capture_module(gm: fx.GraphModule, layers: list[LayerInfo], poolers: Poolers
                   ) -> tuple[fx.GraphModule, tuple[int, ...]]:
    """``gm`` extended to return ``(output, pooled inputs)``, and for each layer which pooled
    output is its input (layers reading one activation the same way share one). ``poolers``:
    how each layer input is pooled (:class:`FirstCapture` decided on the first call's values).
    """
    graph = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    output = graph.graph_copy(gm.graph, values)
    by_name = {old.name: new for old, new in values.items()}
    pooled_nodes: list[fx.Node] = []
    counts: list[int] = []
    slot: dict[str, int] = {}
    index = []
    for layer in layers:
        key = f"{layer.input_node}/{layer.kind}"
        if key not in slot:
            slot[key] = len(pooled_nodes)
            pooled_nodes.append(_pool(graph, by_name[layer.input_node], poolers[key]))
            counts.append(poolers[key][2])
        index.append(slot[key])
    pooled: Any = tuple(pooled_nodes)
    if any(counts):
        pooled = graph.call_function(divide, (pooled, tuple(counts)))
    graph.output((output, pooled))
    # its code is written on its first run: a first call takes its values from the channel-map
    # pass, so one clip explained never runs it (the code was 35-80 ms of a first call)
    capture = LazyGraphModule(_flat_root(gm, graph), graph, "FxcfpCapture")
    return capture, tuple(index)


def _flat_root(gm: fx.GraphModule, graph: fx.Graph) -> nn.Module:
    """A root for ``graph`` (a copy of ``gm``'s) on which every module the graph calls, and every
    module owning an attribute it reads, is a direct child: ``graph``'s targets are renamed to
    those children. The same module objects, so the same hooks, weights and live attributes.

    Why: the generated code reads ``self.s1.b1.conv1.bn.weight`` from the root on every call,
    one ``nn.Module.__getattr__`` per dot, where the model's own forward goes one level at a
    time. On timm's regnety_002 at 224x224 those chains were 2 ms of a 38 ms forward (the
    capture 1.14x the forward; flat, 1.09x).
    """
    root = nn.Module()
    names: dict[str, str] = {}  # path in gm -> name on root
    taken: set[str] = set()
    modules = ModulesByPath(gm)

    def bind(path: str, prefix: str) -> str:
        name = names.get(path)
        if name is None:
            base = name = prefix + path.replace(".", "_")
            suffix = 0
            while name in taken:  # "a.b" and "a_b" flatten alike
                suffix += 1
                name = f"{base}_{suffix}"
            taken.add(name)
            names[path] = name
            value = modules(path) if prefix else getattr(gm, path)
            if isinstance(value, nn.Module):
                root.add_module(name, value)
            elif isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
                root.register_buffer(name, value)  # what fx.GraphModule makes of it, too
            else:
                setattr(root, name, value)
        return name

    for node in graph.nodes:
        if node.op == "call_module":
            node.target = bind(str(node.target), "m_")
        elif node.op == "get_attr":
            owner, _, field = str(node.target).rpartition(".")
            # a module's attribute is read from the module, live; gm's own (a constant
            # torch.export lifted) is bound under its name
            node.target = f"{bind(owner, 'm_')}.{field}" if owner else bind(field, "")
    return root


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
        self.poolers: Poolers = {}
        self.output: Any = None

    def __call__(self, node: fx.Node, value: Any) -> None:
        if node.op == "output":
            self.output = value
        for kind in self.kinds.get(node.name, ()):
            if isinstance(value, torch.Tensor):
                key = f"{node.name}/{kind}"
                function, dims, _ = self.poolers[key] = pooler(value, kind)
                self.pooled[key] = value if function is None else function(value, dim=dims)

    def result(self, layers: list[LayerInfo]) -> tuple[Any, tuple[torch.Tensor, ...]]:
        keys = list(dict.fromkeys(f"{layer.input_node}/{layer.kind}" for layer in layers))
        pooled = tuple(self.pooled[key] for key in keys)
        return self.output, divide(pooled, tuple(self.poolers[key][2] for key in keys))


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
            self.found[(n.name, dim)] = pick_channels(value[self.sample], dim, channels)
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


def map_capture_module(capture: fx.GraphModule, nodes: tuple[str, ...]) -> fx.GraphModule:
    """``capture`` (:func:`capture_module`) extended to return ``(output, pooled inputs, kept)``,
    ``kept`` the outputs of ``nodes`` (of the traced graph, whose node names the copy keeps).

    Every other user of a kept node, its pooling included, reads a copy made right after it:
    an in-place op further on (``ReLU(inplace=True)``, ``x += shortcut``, a model editing its
    input) then edits the copy, and the kept tensor stays the node's output, also as a tensor
    of the autograd graph (the evidence maps' gradient is taken with respect to it).
    """
    graph = fx.Graph()
    values: dict[fx.Node, fx.Node] = {}
    output, pooled = cast(tuple[Any, Any], graph.graph_copy(capture.graph, values))
    by_name = {old.name: new for old, new in values.items()}
    last_placeholder = [n for n in graph.nodes if n.op == "placeholder"][-1]
    kept = []
    for name in nodes:
        node = by_name[name]
        with graph.inserting_after(last_placeholder if node.op == "placeholder" else node):
            copy = graph.call_method("clone", (node,))
        node.replace_all_uses_with(copy, delete_user_cb=functools.partial(operator.is_not, copy))
        kept.append(node)
    graph.output((output, pooled, tuple(kept)))
    return fx.GraphModule(capture, graph, "FxcfpMapCapture")


# per capture graph, its map variant and the nodes it keeps: built on first use (a graph copy,
# milliseconds), kept as long as the plan's capture graph lives
_MAP_GRAPHS: weakref.WeakKeyDictionary[fx.GraphModule, tuple[fx.GraphModule, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary())
_MAP_GRAPHS_LOCK = threading.Lock()


def _map_graph(plan: Plan) -> tuple[fx.GraphModule, tuple[str, ...]]:
    with _MAP_GRAPHS_LOCK:
        found = _MAP_GRAPHS.get(plan.capture)
        if found is None:
            # every node a layer's maps can be drawn on: which are used is known after the
            # back-step only
            nodes = tuple(dict.fromkeys(layer.map_node for layer in plan.layers))
            found = (map_capture_module(plan.capture, nodes), nodes)
            _MAP_GRAPHS[plan.capture] = found
        return found


class MapCapture:
    """What the maps of one mode are made of, kept by the analysis's forward pass until the
    pyramid takes its channels (:meth:`record`) and :meth:`close` drops the rest.

    Attributes:
        mode: ``"paper"`` (the map nodes' outputs) or ``"evidence"`` (the same, inside the
            autograd graph of the forward, with the graph's output).
    """

    def __init__(self, mode: str, output: Any, kept: dict[str, torch.Tensor]) -> None:
        self.mode = mode
        self._output = output
        self._kept = kept

    def record(self, requests: dict[str, dict[int, torch.Tensor]], sample: int, target: int,
               contrast: int | None) -> dict[tuple[str, int], torch.Tensor]:
        """What :func:`record` (paper) or :func:`fxcfp._evidence.record_evidence` (evidence)
        returns for these requests, from the kept forward: the same ops on the same values."""
        if self.mode == "paper":
            with torch.no_grad():
                return {(name, dim): pick_channels(self._kept[name][sample], dim, channels)
                        for name, dims in requests.items() for dim, channels in dims.items()}
        return evidence_products(self._output, self._kept, requests, sample, target, contrast,
                                 call="fxcfp.analyze")

    def close(self) -> None:
        """Drop the full activations (and the autograd graph that holds them)."""
        self._output, self._kept = None, {}


def capture_maps(plan: Plan, inputs: list[torch.Tensor], mode: str
                 ) -> tuple[Any, tuple[torch.Tensor, ...], MapCapture]:
    """What ``plan.capture(*inputs)`` returns, with every map node's output kept for the maps of
    ``mode``. The caller's ``inputs`` are copied (a model may edit its input in place).

    ``"evidence"`` runs the forward with gradients (the clip a leaf that needs one, as
    :func:`fxcfp._evidence.record_evidence` does); its output and pooled inputs come back
    detached: the same numbers, as no-grad and grad-mode forwards run the same kernels.
    """
    gm, nodes = _map_graph(plan)
    if mode == "paper":
        with eval_mode(gm):
            output, pooled, kept = gm(*[x.clone() for x in inputs])
        return output, pooled, MapCapture(mode, None, dict(zip(nodes, kept)))
    with grad_mode():
        output, pooled, kept = gm(*[_leaf(x) for x in inputs])
    detached = output.detach() if isinstance(output, torch.Tensor) else type(output)(
        x.detach() for x in output)
    return (detached, tuple(p.detach() for p in pooled),
            MapCapture(mode, output, dict(zip(nodes, kept))))
