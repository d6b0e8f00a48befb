"""Capture a model's graph: torch.fx symbolic tracing first, torch.export where that fails."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import fx, nn

from ._errors import UntraceableModelError

__all__ = ["Traced", "trace_model"]


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


class _Tracer(fx.Tracer):
    def __init__(self, leaf_modules: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self._leaves = leaf_modules

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self._leaves and isinstance(m, self._leaves):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _failing_module(err: BaseException, model: nn.Module) -> str | None:
    """The innermost module of ``model`` whose forward was running when ``err`` was raised."""
    names = {id(m): name for name, m in model.named_modules()}
    found = None
    for frame, _ in traceback.walk_tb(err.__traceback__):
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, nn.Module) and id(candidate) in names:
            found = names[id(candidate)] or "<root>"
    return found


def _fx_trace(model: nn.Module, leaf_modules: tuple[type[nn.Module], ...],
              concrete_args: dict[str, Any] | None) -> fx.GraphModule:
    tracer = _Tracer(leaf_modules)
    graph = tracer.trace(model, concrete_args=concrete_args)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _export(model: nn.Module, inputs: Sequence[Any]) -> fx.GraphModule:
    program = torch.export.export(model, tuple(inputs), strict=False)
    gm = program.module()
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn":
            graph.erase_node(node)
    # plain calling convention: flattened tensors in, the output tensor out
    graph._codegen = fx.graph.CodeGen()
    out = next(n for n in graph.nodes if n.op == "output")
    if isinstance(out.args[0], (tuple, list)) and len(out.args[0]) == 1:
        out.args = (out.args[0][0],)
    gm.recompile()
    return gm


def trace_model(model: nn.Module, inputs: Sequence[Any], *,
                leaf_modules: tuple[type[nn.Module], ...] = (),
                concrete_args: dict[str, Any] | None = None,
                method: Literal["auto", "fx", "export"] = "auto") -> Traced:
    """Trace ``model`` for the example ``inputs`` (the model's positional arguments).

    Symbolic tracing keeps module paths as layer names and works for any input shape. It cannot
    follow data-dependent control flow or inputs that are lists (pytorchvideo's SlowFast checks
    its input's type); there, ``torch.export`` captures an aten-level graph for these inputs'
    shapes instead, and the module paths come from the weights' qualified names.
    """
    fx_error: BaseException | None = None
    if method in ("auto", "fx") and all(isinstance(x, torch.Tensor) for x in inputs):
        try:
            return Traced(_fx_trace(model, leaf_modules, concrete_args), "fx")
        except Exception as err:  # noqa: BLE001 - any tracing failure means: try export
            fx_error = err
            if method == "fx":
                raise _untraceable(model, err, None) from err
    try:
        return Traced(_export(model, inputs), "export")
    except Exception as err:  # noqa: BLE001
        raise _untraceable(model, fx_error, err) from err


def _untraceable(model: nn.Module, fx_error: BaseException | None,
                 export_error: BaseException | None) -> UntraceableModelError:
    parts = []
    for label, err in (("torch.fx symbolic tracing", fx_error), ("torch.export", export_error)):
        if err is None:
            continue
        where = _failing_module(err, model)
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


