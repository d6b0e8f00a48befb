"""Capture a model's graph: torch.fx symbolic tracing first, torch.export where that fails."""

from __future__ import annotations

import inspect
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import fx, nn

from ._errors import (
    PATHWAYS_HINT,
    ModelCallError,
    UntraceableModelError,
    describe_model_error,
)
from .passes.inplace import redirect_inplace

__all__ = ["TRACE_LOCK", "LazyGraphModule", "Traced", "code_pending", "trace_model", "write_code"]

# Symbolic tracing patches nn.Module.__call__ and __getattr__ for the whole process, and
# torch.export swaps builtins and global flags; two traces at once restore each other's patches
# and leave torch broken. One trace at a time (re-entrant: a trace may fall back to export).
TRACE_LOCK = threading.RLock()

try:
    # fxcfp runs the traced graph node by node (the channel-map pass, the maps' recorders) and
    # never calls its generated forward: torch's lazy graph module writes that code only when it
    # is read or called: 12 ms (ResNet-50) to 45 ms (RegNetY-002, 1,400 nodes) of a first call
    from torch.fx import _lazy_graph_module

    LazyGraphModule: type[fx.GraphModule] = _lazy_graph_module._LazyGraphModule
except (ImportError, AttributeError):  # pragma: no cover - without it, the code at once
    LazyGraphModule = fx.GraphModule


def code_pending(gm: fx.GraphModule) -> bool:
    """Is ``gm`` a lazy graph module whose Python code is still to be written?"""
    cls = type(gm)
    return getattr(cls, "forward", None) is getattr(cls, "_lazy_forward", False)


def write_code(gm: fx.GraphModule) -> None:
    """Write a lazy graph module's code now (a no-op once written, or for a plain one)."""
    real_recompile = getattr(gm, "real_recompile", None)
    if real_recompile is not None:
        real_recompile()


@dataclass(frozen=True)
class Traced:
    """A traced model.

    Attributes:
        gm: the graph module. Its placeholders are the model's input tensors, flattened.
        method: ``"fx"`` (symbolic tracing: shape-agnostic, module calls kept) or ``"export"``
            (torch.export's aten graph: specialised to the example inputs' shapes).
    """

    gm: fx.GraphModule
    method: Literal["fx", "export"]
    output: Literal["logits", "softmax", "log_softmax"] = "logits"


class _Tracer(fx.Tracer):
    """torch.fx's tracer, made safe for the other threads of the process and for hooks.

    While it traces, ``nn.Module.__call__``/``__getattr__`` are patched process-wide; a module
    called from another thread (a plain forward, another fxcfp call) passes straight through to
    the original. A container module's forward is traced without running its hooks, so a hook
    never receives a ``torch.fx.Proxy`` (fxcfp refuses such hooks afterwards, by name).
    """

    def __init__(self, leaf_modules: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self._leaves = leaf_modules
        self._thread = threading.get_ident()
        self._names: tuple[dict[int, str], dict[int, str]] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self._leaves and isinstance(m, self._leaves):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)  # another thread's call: the original __call__
        if isinstance(m, nn.Identity) and not (args and isinstance(args[0], fx.Proxy)):
            # an identity handed a list of pathways (SlowFast's last fusion) hands the list on:
            # as a leaf it would turn the list into one opaque proxy
            return m.forward(*args, **kwargs)
        return super().call_module(m, m.forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if threading.get_ident() != self._thread:
            return attr_val
        if isinstance(attr_val, torch.Tensor):
            # torch.fx finds a tensor's name by scanning every parameter (then every buffer)
            # of the model on each access: quadratic in the model's size, 0.4 s of tracing a
            # timm RegNet. The same first-found names from a table built once per trace; a
            # tensor the table lacks (set during the trace) takes torch.fx's own scan.
            parameters, buffers = self._tables()
            name = parameters.get(id(attr_val)) if isinstance(attr_val, nn.Parameter) else None
            if name is None and self.proxy_buffer_attributes:
                name = buffers.get(id(attr_val))
            if name is not None and not self.param_shapes_constant:
                if name not in parameter_proxy_cache:
                    parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
                return parameter_proxy_cache[name]
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_arg(self, a: Any) -> Any:
        # a tensor passed as an argument (the running statistics an inlined module such as
        # timm's BatchNormAct2d hands to batch_norm): torch.fx scans every parameter or buffer
        # of the model for its name, 40 ms of tracing regnety_002; the table's name where it
        # still names this tensor, else torch.fx's own scan
        if isinstance(a, torch.Tensor) and threading.get_ident() == self._thread:
            parameter = isinstance(a, nn.Parameter)
            name = self._tables()[0 if parameter else 1].get(id(a))
            if name is not None:
                owner, _, leaf = name.rpartition(".")
                module = self.root.get_submodule(owner) if owner else self.root
                if (module._parameters if parameter else module._buffers).get(leaf) is a:
                    return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)

    def _tables(self) -> tuple[dict[int, str], dict[int, str]]:
        """The first-found names of the model's parameters and buffers, built once per trace."""
        if self._names is None:
            self._names = ({id(p): n for n, p in self.root.named_parameters()},
                           {id(b): n for n, b in self.root.named_buffers()})
        return self._names


def failing_module(err: BaseException, model: nn.Module) -> str | None:
    """The innermost module of ``model`` whose forward was running when ``err`` was raised."""
    names = {id(m): name for name, m in model.named_modules()}
    found = None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, nn.Module) and id(candidate) in names:
            found = names[id(candidate)] or "<root>"
    return found


def _fx_trace(model: nn.Module, leaf_modules: tuple[type[nn.Module], ...],
              concrete_args: dict[str, Any] | None, pathways: int | None = None
              ) -> fx.GraphModule:
    """Symbolic tracing; ``pathways``: the model's forward takes one list of that many
    tensors, traced as one placeholder per tensor (the forward gets a real list of them)."""
    tracer = _Tracer(leaf_modules)
    if pathways is not None:
        concrete_args = {_list_argument(model): [fx.PH] * pathways, **(concrete_args or {})}
    graph = tracer.trace(model, concrete_args=concrete_args)
    if pathways is not None:
        _plain_calling_convention(graph)  # torch.fx flattened the list, and the output
    return LazyGraphModule(tracer.root, graph, type(model).__name__)


def _plain_calling_convention(graph: fx.Graph) -> None:
    """Make ``graph`` take its flattened tensors and return its output tensor, not the pytree
    structures they were flattened from (a list of pathways; torch.export's one-tuple)."""
    graph._codegen = fx.graph.CodeGen()
    out = next(n for n in graph.nodes if n.op == "output")
    if isinstance(out.args[0], (tuple, list)) and len(out.args[0]) == 1:
        out.args = (out.args[0][0],)


def _list_argument(model: nn.Module) -> str:
    """The name of the forward argument that takes the list of pathways (its first)."""
    parameters = list(inspect.signature(model.forward).parameters.values())
    if not parameters or parameters[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                    inspect.Parameter.POSITIONAL_OR_KEYWORD):
        raise TypeError(f"{type(model).__name__}.forward takes no positional argument to "
                        "trace the list of pathways as")
    return parameters[0].name


def _pathways(inputs: Sequence[Any]) -> int | None:
    """How many tensors the one list argument holds (``None``: the inputs are tensors)."""
    if len(inputs) == 1 and isinstance(inputs[0], list) and inputs[0] and all(
            isinstance(x, torch.Tensor) for x in inputs[0]):
        return len(inputs[0])
    return None


def _export(model: nn.Module, inputs: Sequence[Any]) -> fx.GraphModule:
    program = torch.export.export(model, tuple(inputs), strict=False)
    gm = program.module()
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            graph.erase_node(node)
    _plain_calling_convention(graph)
    gm.recompile()
    return gm


def trace_model(model: nn.Module, inputs: Sequence[Any], *,
                leaf_modules: tuple[type[nn.Module], ...] = (),
                concrete_args: dict[str, Any] | None = None,
                method: Literal["auto", "fx", "export"] = "auto") -> Traced:
    """Trace ``model`` for the example ``inputs`` (the model's positional arguments).

    Symbolic tracing keeps module paths as layer names and works for any input shape. A model
    that takes one list of tensors (pytorchvideo's SlowFast: one clip per pathway, and it checks
    that it gets a list) is traced with a real list of one placeholder per tensor. Symbolic
    tracing cannot follow data-dependent control flow; there, ``torch.export`` captures an
    aten-level graph for these inputs' shapes instead, and the module paths come from the
    weights' qualified names.
    """
    with TRACE_LOCK:
        fx_error: BaseException | None = None
        pathways = _pathways(inputs)
        if method in ("auto", "fx") and (pathways is not None or all(
                isinstance(x, torch.Tensor) for x in inputs)):
            try:
                gm = _fx_trace(model, leaf_modules, concrete_args, pathways)
            except Exception as err:  # noqa: BLE001 - any tracing failure means: try export
                fx_error = err
                if method == "fx":
                    raise _untraceable(model, err, None) from err
            else:
                redirect_inplace(gm)
                return Traced(gm, "fx", output_activation(gm))
        try:
            gm = _export(model, inputs)
        except Exception as err:  # noqa: BLE001
            raise _untraceable(model, fx_error, err, inputs) from err
        redirect_inplace(gm)
        return Traced(gm, "export", output_activation(gm))


def _tracer_limit(err: BaseException) -> bool:
    """Did tracing stop at something a tracer cannot follow (control flow on a traced value,
    a data-dependent shape), rather than at an error of the model's own code on this input?"""
    if type(err).__module__.startswith("torch"):
        return True
    text = str(err).lower()
    return any(words in text for words in ("symbolically traced", "data-dependent", "proxy",
                                           "guard", "dynamo", "torch.export"))


def _describe_inputs(inputs: Sequence[Any]) -> str:
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        shapes = [tuple(x.shape) for x in inputs[0] if isinstance(x, torch.Tensor)]
        return f"a list of {len(shapes)} tensor(s) of shapes {shapes}"
    return ", ".join(str(tuple(x.shape)) for x in inputs if isinstance(x, torch.Tensor))


def _untraceable(model: nn.Module, fx_error: BaseException | None,
                 export_error: BaseException | None, inputs: Sequence[Any] = ()
                 ) -> UntraceableModelError | ModelCallError:
    if export_error is not None and not _tracer_limit(export_error):
        # torch.export runs the model's Python code: this is the model failing on the input
        where = failing_module(export_error, model)
        place = f" in module {where!r}" if where and where != "<root>" else ""
        many = (PATHWAYS_HINT if len(inputs) == 1 and isinstance(inputs[0], (list, tuple))
                else None)
        return ModelCallError(
            f"fxcfp.analyze: the model raised{place} on {_describe_inputs(inputs)}: "
            f"{describe_model_error(export_error, many)}")
    parts = []
    for label, err in (("torch.fx symbolic tracing", fx_error), ("torch.export", export_error)):
        if err is None:
            continue
        where = failing_module(err, model)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        place = f" in module {where!r}" if where else ""
        parts.append(f"{label} failed{place}: {type(err).__name__}: {first[:300]}")
    return UntraceableModelError(
        "fxcfp.analyze: cannot capture the model's graph. " + "; ".join(parts) + ". Hint: mark "
        "the module with data-dependent control flow as a leaf (fxcfp.Analyzer(model, "
        "leaf_modules=(MyBlock,)) and register a channel rule for it with "
        "fxcfp.register_channel_rule), or fix the branching arguments with "
        "concrete_args={...}."
    )




def _aten_targets(*names: str) -> set[Any]:
    found: set[Any] = set()
    for name in names:
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None:
            found.update(getattr(packet, overload) for overload in packet.overloads())
    return found


_SOFTMAX = {torch.softmax, torch.nn.functional.softmax, torch.Tensor.softmax,
            *_aten_targets("softmax", "_softmax")}
_LOG_SOFTMAX = {torch.log_softmax, torch.nn.functional.log_softmax, torch.Tensor.log_softmax,
                *_aten_targets("log_softmax", "_log_softmax")}
# ops between a final softmax and the output that leave its values as they are
_KEEPS_VALUES = {"contiguous", "float", "clone", "to", "detach", "type_as"}
_KEEPS_VALUES_FUNCTIONS = {torch.clone, torch.detach, *_aten_targets("clone", "alias", "detach",
                                                                      "_to_copy", "contiguous")}


def output_activation(gm: fx.GraphModule) -> Literal["logits", "softmax", "log_softmax"]:
    """Whether the model's output is a softmax or log-softmax over the classes (SPEC: then its
    own output for the target is the probability, never a softmax of probabilities)."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    node = output.args[0]
    while isinstance(node, fx.Node):
        module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if node.op == "call_method" and node.target in _KEEPS_VALUES or (
                node.op == "call_function" and node.target in _KEEPS_VALUES_FUNCTIONS) or (
                isinstance(module, (nn.Identity, nn.modules.dropout._DropoutNd))):
            node = node.args[0]
            continue
        kind: Literal["softmax", "log_softmax"]
        dim: object
        if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
            kind, dim = ("softmax" if isinstance(module, nn.Softmax) else "log_softmax"), module.dim
        elif node.op in ("call_function", "call_method") and (
                node.target in _SOFTMAX or node.target in _LOG_SOFTMAX
                or node.target in ("softmax", "log_softmax")):
            kind = ("softmax" if node.target in _SOFTMAX or node.target == "softmax"
                    else "log_softmax")
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        else:
            return "logits"
        # the class dim of an N x classes output; no dim is the one softmax picks, dim 1
        return kind if dim in (None, 1, -1) else "logits"
    return "logits"
