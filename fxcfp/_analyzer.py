"""The public entry points: :class:`Analyzer`, :func:`analyze`, :func:`analyze_batch`."""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import weakref
from typing import Any, Literal, cast

import torch
from torch import nn

from . import _fused
from ._backstep import LayerTensors, backstep
from ._capture import MapCapture, capture_maps, input_readers
from ._checks import check_classes, check_model, check_options, prepare_inputs
from ._contrast import check_contrast, contrast_classes, contrast_tensors
from ._defaults import THRESHOLD
from ._errors import (
    FxcfpError,
    InvalidArgumentError,
    ModelCallError,
    UnsupportedModelError,
    UnsupportedOpError,
    UntraceableModelError,
    describe_model_error,
)
from ._gate import Gate, check_gate, evidence_keep, gated_tensors
from ._plan import Plan, plan_and_capture
from ._pyramid import MapMode, Pyramid, SampleRows, check_maps
from ._trace import Traced, code_pending, failing_module, trace_model, write_code
from ._view import eval_view, tree_state, unwrap
from .passes.weighted_layers import weight_owner, weight_version

__all__ = ["Analyzer", "analyze", "analyze_batch"]


_HOOKS = ("_forward_pre_hooks", "_forward_hooks")


def _released() -> None:
    _RELEASED[0] += 1


# Analyzers freed since the last first call: their traced graphs are reference cycles (a graph
# and its module point at each other), which hold the model's tensors until Python's cyclic
# collector happens to run. With a new model object per call that was tens of MB a call.
_RELEASED = [0]


def _trim_heap() -> None:
    """Free what earlier analyzers left behind, and hand freed memory back to the system
    (glibc keeps the arenas of freed graphs, plans and models otherwise). Runs after a first
    call (one trace, seconds), never on the steady path."""
    global _LIBC
    if _RELEASED[0]:
        _RELEASED[0] = 0
        gc.collect()
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else False
            _LIBC.malloc_trim  # noqa: B018 - musl has no malloc_trim
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC: Any = None


def _root_pre_hooks(root: nn.Module, inputs: list[torch.Tensor], as_list: bool, call: str
                    ) -> list[torch.Tensor]:
    """Run the model's own forward pre-hooks as ``model(clip)`` would, on fxcfp's copy of the
    clip: the traced graph is the model's ``forward``, without them."""
    if not root._forward_pre_hooks:
        return inputs
    args: tuple[Any, ...] = (list(inputs),) if as_list else tuple(inputs)
    for hook_id, hook in list(root._forward_pre_hooks.items()):
        if hook_id in root._forward_pre_hooks_with_kwargs:
            result = hook(root, args, {})
            if result is not None:
                args, kwargs = result
                if kwargs:
                    raise UnsupportedModelError(
                        f"{call}: the model's forward pre-hook {_hook_name(hook)} passes keyword "
                        f"arguments {sorted(kwargs)} to forward; fxcfp calls forward with the "
                        "clip alone. Hint: remove the hook while analysing (handle.remove())")
        else:
            result = hook(root, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
    tensors = list(args[0]) if as_list and len(args) == 1 else list(args)
    if len(tensors) != len(inputs) or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise UnsupportedModelError(
            f"{call}: the model's forward pre-hooks turned the {len(inputs)} input tensor(s) into "
            f"{[type(t).__name__ for t in tensors]}; fxcfp explains a model whose forward takes "
            "the clip's tensors. Hint: remove the hook while analysing (handle.remove())")
    return tensors


def _root_hooks(root: nn.Module, inputs: list[torch.Tensor], as_list: bool,
                output: torch.Tensor, call: str) -> torch.Tensor:
    """Run the model's own forward hooks on its output, as ``model(clip)`` would. A hook keeps
    class ``c`` at class ``c`` (it rescales, calibrates or records): the pyramid of class ``c``
    is rooted at the classifier's kernel ``c``."""
    if not root._forward_hooks:
        return output
    args: tuple[Any, ...] = (list(inputs),) if as_list else tuple(inputs)
    for hook_id, hook in list(root._forward_hooks.items()):
        if hook_id in root._forward_hooks_with_kwargs:
            result = hook(root, args, {}, output)
        else:
            result = hook(root, args, output)
        if result is not None:
            if not isinstance(result, torch.Tensor) or result.shape != output.shape:
                got = (tuple(result.shape) if isinstance(result, torch.Tensor)
                       else type(result).__name__)
                raise UnsupportedModelError(
                    f"{call}: the model's forward hook {_hook_name(hook)} turns its "
                    f"{tuple(output.shape)} logits into {got}; fxcfp roots class c at the "
                    "classifier's kernel c and cannot follow a hook that reshapes the output. "
                    "Hint: remove the hook while analysing (handle.remove())")
            output = result
    return output


def _hook_name(hook: Any) -> str:
    return repr(getattr(hook, "__qualname__", None) or type(hook).__name__)


def _check_finite(call: str, logits: torch.Tensor) -> None:
    finite = torch.isfinite(logits)
    if bool(finite.all()):
        return
    sample, cls = (int(i) for i in (~finite).nonzero()[0])
    value = float(logits[sample, cls])
    raise ModelCallError(
        f"{call}: the model's output for clip {sample} is not finite (class {cls}: {value}); a "
        "probability and a target class of non-finite logits are undefined. Hint: check the "
        "model's weights (NaN after training?) and the clip's scale and normalisation")


def _opaque(err: UnsupportedOpError | UnsupportedModelError) -> bool:
    """Did the channel-map pass stop at a Python function that is not a torch op?"""
    node = err.fx_node
    if node is None or node.op != "call_function":
        return False
    package = (getattr(node.target, "__module__", None) or "").split(".")[0]
    return package not in ("torch", "operator", "builtins", "math", "_operator")


class Analyzer:
    """Traces a model once and explains many clips with it.

    Tracing, the channel maps and the pooled weights depend only on the model (and, for the
    channel maps, the input shape), so they are computed on first use and kept: a later call
    costs one forward pass plus the back-step.

    Args:
        model: any ``nn.Module`` returning ``N x classes`` logits. It is never changed: its
            parameters, buffers, ``training`` flags, ``requires_grad`` and hooks are the same
            after every call, also one that raises. fxcfp traces and runs an eval-mode *view*
            of it (:mod:`fxcfp._view`: the same tensors and hooks, its own flags), so weights
            are read live and an Analyzer keeps explaining the model as it is trained further;
            a replaced module or tensor makes it trace again.
            A ``torch.compile`` wrapper is explained as the module it wraps.
        leaf_modules: module classes symbolic tracing must not enter (for data-dependent
            control flow); each needs a rule, see :func:`fxcfp.register_channel_rule`.
        concrete_args: arguments of ``forward`` to fix while tracing (torch.fx).
        trace: ``"auto"`` (torch.fx, then torch.export), ``"fx"`` or ``"export"``.

    Threads: calls from several threads at once (on one Analyzer, one model or many) give the
    sequential results. Tracing takes a process-wide lock (symbolic tracing patches
    ``nn.Module.__call__`` for the whole process, and fxcfp's tracer passes other threads'
    module calls straight through while it does); the forward passes run in parallel.

    Hooks run as in ``model(clip)``: the model's own forward pre-hooks and hooks around the traced
    graph (a forward hook must keep the output's shape: class ``c`` stays rooted at the
    classifier's kernel ``c``), a leaf module's (a Conv, Linear, BatchNorm...) inside the graph,
    once per call (the first call's channel-map pass is its forward; only the first
    ``analyze_batch`` of a shape on the torch.fx path runs them twice, once on one clip to map the
    channels); each map forward (:meth:`Pyramid.prefetch_maps`) runs the leaf hooks once more
    (``analyze(..., maps=...)`` records the maps of a mode in its own forward instead).
    Hooks of a container module, whose forward the trace inlines (every submodule on the
    torch.export path), and global module hooks cannot run where a plain call runs them: such a
    call is refused with an :class:`~fxcfp.UnsupportedModelError` naming them.

    Example:
        >>> import torch, torchvision, fxcfp
        >>> analyzer = fxcfp.Analyzer(torchvision.models.video.r3d_18())
        >>> clips = torch.randn(4, 3, 8, 56, 56)
        >>> pyramids = analyzer.analyze_batch(clips)
        >>> len(pyramids), pyramids[0].layers[0].name
        (4, 'fc')
    """

    def __init__(self, model: nn.Module, *, leaf_modules: tuple[type[nn.Module], ...] = (),
                 concrete_args: dict[str, Any] | None = None,
                 trace: Literal["auto", "fx", "export"] = "auto") -> None:
        self._model_ref: Any = check_model(model, "fxcfp.Analyzer")
        self._leaf_modules = tuple(leaf_modules)
        self._concrete_args = concrete_args
        self._trace = trace
        # plans, traces and the view are built by one thread at a time; the forward passes of
        # concurrent calls run in parallel on them (nothing there is written during a call)
        self._lock = threading.RLock()
        self._reset(None)
        weakref.finalize(self, _released)

    def _reset(self, view: nn.Module | None, key: tuple[int, ...] | None = None) -> None:
        self._view = view
        self._view_key = key
        self._fx: dict[tuple[bool, int], Traced] = {}
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._tensors: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[LayerTensors]]] = {}
        self._leaves: dict[int, tuple[str, ...]] = {}
        # per plan, from its build: its weights' modules, and the modules reading the clip's
        # memory (None: a run may edit the clip)
        self._owners: dict[int, list[tuple[nn.Module, str]]] = {}
        # and, where every layer's weight is a plain parameter, (its module's parameter
        # dictionary, its name, the parameter) for the compiled reader of their versions
        self._direct: dict[int, list[tuple[Any, str, torch.Tensor]] | None] = {}
        self._readers: dict[int, tuple[nn.Module, ...] | None] = {}
        self._export_only = False

    @property
    def model(self) -> nn.Module:
        model = self._model_ref() if isinstance(self._model_ref, weakref.ref) else self._model_ref
        if model is None:
            raise UnsupportedModelError("fxcfp.Analyzer: the model was garbage-collected")
        return model

    def _eval_model(self, model: nn.Module) -> nn.Module:
        """The eval-mode view that is traced and run in place of the model (see
        :mod:`fxcfp._view`); rebuilt, with every plan, when a module or tensor was replaced."""
        return self._view_of(model)[0]

    def _view_of(self, model: nn.Module) -> tuple[nn.Module, bool]:
        """:meth:`_eval_model`, and whether a submodule of the model has forward hooks (from
        the same walk of its tree: only then does :meth:`_check_hooks` look at them)."""
        inner = unwrap(model)
        key, hooked = tree_state(inner)
        if self._view is not None and self._view_key == key:
            return self._view, hooked
        with self._lock:
            if self._view is None or self._view_key != key:
                self._reset(eval_view(inner), key)
            assert self._view is not None  # _reset has just set it
            return self._view, hooked

    # --- plans -----------------------------------------------------------------------------

    def _plan(self, inputs: list[torch.Tensor], as_list: bool
              ) -> tuple[Plan, tuple[Any, tuple[torch.Tensor, ...]] | None]:
        """The plan for ``inputs``, and when it was built on them just now, what its capture
        returns for them (the channel-map pass ran the model on them already)."""
        return self._plan_for(self._eval_model(self.model), inputs, as_list)

    def _plan_for(self, view: nn.Module, inputs: list[torch.Tensor], as_list: bool,
                  call: str = "fxcfp.analyze"
                  ) -> tuple[Plan, tuple[Any, tuple[torch.Tensor, ...]] | None]:
        kind = "export" if (self._trace == "export" or self._export_only) else "fx"
        # symbolic tracing is shape-agnostic (flatten sizes still make channel maps per shape,
        # not per batch size); torch.export's graph is specialised to every dimension
        export_key = ("export", as_list) + tuple(
            (tuple(x.shape), x.dtype, x.device) for x in inputs)
        key = export_key if kind == "export" else ("fx", as_list) + tuple(
            (tuple(x.shape[1:]), x.dtype, x.device) for x in inputs)
        plan = self._plans.get(key)
        if plan is not None:
            return plan, None
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:  # another thread built it meanwhile
                return plan, None
            plan, captured = self._build(view, inputs, as_list, kind, key, export_key, call)
        _trim_heap()  # the first call of a shape is where big graphs come and go
        return plan, captured

    def _build(self, view: nn.Module, inputs: list[torch.Tensor], as_list: bool, kind: str,
               key: tuple[Any, ...], export_key: tuple[Any, ...], call: str
               ) -> tuple[Plan, tuple[Any, tuple[torch.Tensor, ...]] | None]:
        # the fused back-step loads (or builds) in the background while the model is traced
        # and run: from the disk cache it is ready for this call's back-step
        _fused.extension()
        call_args = [inputs] if as_list else inputs
        # one symbolic trace serves every shape of one calling convention (a tensor, or a
        # list of so many pathways)
        convention = (as_list, len(inputs))
        traced = self._fx.get(convention) if kind == "fx" else None
        # torch.export would run submodule hooks on fake tensors before fxcfp could refuse them
        hooked = self._trace == "auto" and any(
            getattr(module, attr) for name, module in view.named_modules() if name
            for attr in _HOOKS)
        if traced is None:
            try:
                traced = trace_model(view, call_args, leaf_modules=self._leaf_modules,
                                     concrete_args=self._concrete_args,
                                     method="fx" if hooked and kind == "fx" else self._trace)
            except UntraceableModelError:
                if hooked:
                    self._check_hooks(call, view, None)
                raise
        if traced.method == "fx":
            self._fx[convention] = traced
            sample = [x[:1] for x in inputs]  # channel maps do not depend on the batch size
        else:
            sample = inputs
        try:
            # a copy: a model that edits its input in place edits fxcfp's copy, once per run
            plan, captured = plan_and_capture(traced, _copies(sample), view, call=call)
        except (UnsupportedOpError, UnsupportedModelError) as err:
            if not (traced.method == "fx" and self._trace == "auto" and _opaque(err)):
                raise
            # symbolic tracing kept a plain-Python helper opaque (torchvision's fx-wrapped
            # functions); torch.export traces through it, from now on for every shape
            if hooked:
                self._check_hooks(call, view, None)
            self._export_only = True
            traced = trace_model(view, call_args, leaf_modules=self._leaf_modules,
                                 method="export")
            plan, captured = plan_and_capture(traced, _copies(inputs), view, call=call)
            sample = inputs
        if traced.method == "export" and kind == "fx":
            self._export_only = True  # fx failed for this model: later calls go to export directly
            key = export_key
        gm = plan.traced.gm
        self._leaves[id(plan)] = tuple(sorted(
            {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}))
        owners = self._owners[id(plan)] = [weight_owner(gm, layer.weight)
                                           for layer in plan.layers]
        direct: list[tuple[Any, str, torch.Tensor]] = [
            (module._parameters, leaf, param) for module, leaf in owners
            if (param := module._parameters.get(leaf)) is not None]
        self._direct[id(plan)] = direct if len(direct) == len(owners) else None
        self._readers[id(plan)] = input_readers(plan.capture)
        self._plans[key] = plan
        whole = all(s.shape == x.shape for s, x in zip(sample, inputs, strict=True))
        return plan, captured if whole else None

    def _layer_tensors(self, plan: Plan, device: torch.device, dtype: torch.dtype
                       ) -> list[LayerTensors]:
        """Pooled weights on the device, recomputed only when a weight (or what it is computed
        from: a parametrization's original, a pruning mask) changed."""
        version = _versions(self._owners[id(plan)], self._direct[id(plan)])
        key = (id(plan), device, dtype)
        cached = self._tensors.get(key)
        if cached is None or cached[0] != version:
            with self._lock:
                cached = (version, plan.layer_tensors(device, dtype))
                self._tensors[key] = cached
        return cached[1]

    def _check_hooks(self, call: str, model: nn.Module, plan: Plan | None, *,
                     hooked: bool = True) -> None:
        """Refuse the hooks fxcfp cannot run where ``model(clip)`` runs them: hooks of a module
        whose forward the trace inlined (a container, or any submodule on the export path) and
        global module hooks. The model's own hooks run around the graph; a leaf module's hooks
        run inside it, once per forward. ``hooked=False``: no submodule has hooks (the caller
        knows from :meth:`_view_of`), so only the global ones are looked at."""
        from torch.nn.modules import module as torch_module

        if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
            raise UnsupportedModelError(
                f"{call}: global module hooks are registered (torch.nn.modules.module."
                "register_module_forward_hook / _pre_hook); they run for every module call, and "
                "fxcfp's traced graph calls only the leaf modules, so they cannot run as in "
                "model(clip). Hint: remove them while analysing (handle.remove())")
        if not hooked:
            return
        leaves = () if plan is None else self._leaves.get(id(plan), ())
        exported = plan is None or plan.traced.method == "export"
        found = []
        for name, module in unwrap(model).named_modules():
            if not name or not any(getattr(module, attr) for attr in _HOOKS):
                continue
            if any(name == leaf or name.startswith(leaf + ".") for leaf in leaves):
                continue
            kinds = [kind for attr, kind in zip(_HOOKS, ("forward pre-hook", "forward hook"))
                     if getattr(module, attr)]
            found.append(f"{name!r} ({type(module).__name__}: {' and '.join(kinds)})")
        if found:
            path = ("torch.export inlines every submodule" if exported else "torch.fx inlines the forward of these container modules")
            raise UnsupportedModelError(
                f"{call}: cannot run the hooks of {', '.join(found[:6])}"
                f"{' ...' if len(found) > 6 else ''} as model(clip) runs them: {path} into the "
                "graph, so their hooks have no call to run at. Hint: register the hook on a "
                "leaf layer (a Conv or Linear module, whose hooks fxcfp runs once per forward) "
                "or on the model itself, or remove it while analysing (handle.remove())")

    # --- analysis --------------------------------------------------------------------------

    def analyze(self, clip: torch.Tensor | list[torch.Tensor], cls: int | None = None, *,
                threshold: float = THRESHOLD, max_depth: int | None = None,
                top_k: int | None = None, contrast: int | str | None = None,
                gate: Gate = "paper", maps: MapMode | None = None) -> Pyramid:
        """Explain one clip: see :func:`fxcfp.analyze`."""
        options = check_options("fxcfp.analyze", threshold, max_depth, top_k)
        other = check_contrast("fxcfp.analyze", contrast)
        gate = check_gate("fxcfp.analyze", gate)
        maps = check_maps("fxcfp.analyze", maps)
        inputs, as_list = prepare_inputs("fxcfp.analyze", self.model, clip, batched=False)
        return self._run("fxcfp.analyze", inputs, as_list, cls, options, other, gate, maps)[0]

    def analyze_batch(self, clips: torch.Tensor | list[torch.Tensor], classes: Any = None, *,
                      threshold: float = THRESHOLD, max_depth: int | None = None,
                      top_k: int | None = None, contrast: int | str | None = None,
                      gate: Gate = "paper", maps: MapMode | None = None) -> list[Pyramid]:
        """Explain a batch of clips with one forward pass: see :func:`fxcfp.analyze_batch`."""
        if maps is not None:
            # a batched forward rounds differently from the one-clip forward prefetch_maps
            # runs, and would hold every clip's activations (and autograd graph) at once
            raise InvalidArgumentError(
                f"fxcfp.analyze_batch: maps={maps!r} records the maps in the analysis's forward "
                "of one clip only. Hint: call fxcfp.analyze(model, clip, maps=...) per clip, or "
                "analyze_batch without maps= and Pyramid.prefetch_maps(mode=...) on the "
                "pyramids you draw")
        options = check_options("fxcfp.analyze_batch", threshold, max_depth, top_k)
        other = check_contrast("fxcfp.analyze_batch", contrast)
        gate = check_gate("fxcfp.analyze_batch", gate)
        inputs, as_list = prepare_inputs("fxcfp.analyze_batch", self.model, clips, batched=True)
        return self._run("fxcfp.analyze_batch", inputs, as_list, classes, options, other, gate)

    def _capture(self, call: str, plan: Plan, view: nn.Module, inputs: list[torch.Tensor],
                 maps: MapMode | None = None
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], MapCapture | None]:
        """The capture forward: the output and the pooled layer inputs, and with ``maps`` what
        the maps of that mode are made of (:func:`fxcfp._capture.capture_maps`)."""
        try:
            if maps is not None:
                return capture_maps(plan, inputs, maps)
            capture = plan.capture
            if code_pending(capture):  # its first run: one thread writes its code
                with self._lock:
                    write_code(capture)
            logits, pooled = capture(*self._capture_inputs(plan, inputs))
            return logits, pooled, None
        except FxcfpError:
            raise
        except Exception as err:
            where = failing_module(err, view)
            place = f" in module {where!r}" if where and where != "<root>" else ""
            raise ModelCallError(
                f"{call}: the model raised{place} on this clip: {describe_model_error(err)}"
            ) from err

    def _capture_inputs(self, plan: Plan, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """What the capture runs on: the analysis's own copy of the clip, which the pyramid
        keeps for its maps, copied once more only where the run may edit it in place
        (:func:`fxcfp._capture.input_readers`; a hook of a layer reading the clip may too).
        The second copy was most of ``analyze``'s memory over the forward's: 18 MiB of the 19
        on S3D at 16x224x224, all of it for ``analyze_batch`` of 8 clips."""
        readers = self._readers[id(plan)]
        if readers is None or any(m._forward_pre_hooks or m._forward_hooks for m in readers):
            return _copies(inputs)
        return inputs

    def _run(self, call: str, inputs: list[torch.Tensor], as_list: bool, classes: Any,
             options: tuple[float, int | None, int | None],
             contrast: int | str | None = None, gate: Gate = "paper",
             maps: MapMode | None = None) -> list[Pyramid]:
        recorded: list[MapCapture] = []
        try:
            pyramids = self._analyse(call, inputs, as_list, classes, options, contrast, gate,
                                     maps, recorded)
            for capture in recorded:  # one clip: analyze_batch refuses maps=
                pyramids[0]._take_maps(capture)
            return pyramids
        finally:
            for capture in recorded:  # the activations and the autograd graph, also on errors
                capture.close()

    def _analyse(self, call: str, inputs: list[torch.Tensor], as_list: bool, classes: Any,
                 options: tuple[float, int | None, int | None], contrast: int | str | None,
                 gate: Gate, maps: MapMode | None, recorded: list[MapCapture]
                 ) -> list[Pyramid]:
        threshold, max_depth, top_k = options
        model = self.model
        view, hooked = self._view_of(model)
        with torch.no_grad():
            # fxcfp's own copy of the clip: the caller may refill its buffer, the model may
            # edit its input; neither reaches the pyramid
            inputs = _root_pre_hooks(view, _copies(inputs), as_list, call)
            if self._trace == "export" or self._export_only:
                # before tracing: export inlines them all
                self._check_hooks(call, model, None, hooked=hooked)
            plan, captured = self._plan_for(view, inputs, as_list, call)
            self._check_hooks(call, model, plan, hooked=hooked)
            if captured is not None and maps is None:
                logits, pooled = captured
            else:  # the first call's channel-map pass kept no map: with maps=, a capture too
                logits, pooled, kept = self._capture(call, plan, view, inputs, maps)
                if kept is not None:
                    recorded.append(kept)
            logits = _root_hooks(view, inputs, as_list, logits, call)
        _check_finite(call, logits)
        batch, num_classes = logits.shape
        targets = check_classes(call, classes, batch, num_classes)
        chosen = logits.argmax(1)
        given = [(i, t) for i, t in enumerate(targets) if t is not None]
        if given:
            index, values = zip(*given)
            chosen[list(index)] = torch.tensor(values, device=chosen.device)
        roots = plan.output_sources.to(logits.device)[chosen]
        roots = torch.where(roots < 0, plan.total_ids, roots)
        layer_pooled = [pooled[i] for i in plan.pooled_index]
        tensors = self._layer_tensors(plan, logits.device, layer_pooled[0].dtype)
        chosen_cpu = chosen.cpu()
        others = contrast_classes(call, contrast, chosen_cpu.tolist(), logits)
        per_sample = [tuple(tensors)] * batch
        keep: list[Any] = [None] * batch
        if contrast is not None:
            # each clip's root row is its own class difference
            per_sample = [tuple(contrast_tensors(call, tensors, plan.output_sources,
                                                 int(chosen_cpu[i]), cast(int, others[i])))
                          for i in range(batch)]  # (others holds no None when contrast is set)
        if gate == "evidence":
            keep = evidence_keep(plan, inputs, chosen_cpu.tolist(), others)
            per_sample = [gated_tensors(per_sample[i], keep[i], plan.total_ids)
                          for i in range(batch)]
        if contrast is None and gate == "paper":
            found = backstep(tensors, layer_pooled, roots, plan.total_ids, threshold=threshold,
                             max_depth=max_depth, top_k=top_k)
            depth_t, edges_t, visited_t = found.depth, found.edges, found.visited
        else:  # one back-step per clip, each with its own layers
            each = [backstep(list(per_sample[i]), [p[i: i + 1] for p in layer_pooled],
                             roots[i: i + 1], plan.total_ids, threshold=threshold,
                             max_depth=max_depth, top_k=top_k)
                    for i in range(batch)]
            depth_t = torch.cat([f.depth for f in each])
            edges_t = torch.cat([f.edges for f in each])
            visited_t = torch.cat([f.visited for f in each])
        # the one transfer to the host
        depth = depth_t.cpu().numpy()
        edges, visited = edges_t.cpu().numpy(), visited_t.cpu().numpy()
        logits_cpu = logits.detach().float().cpu()
        probabilities = _probabilities(logits_cpu, plan, view)
        return [
            Pyramid(
                target=int(chosen_cpu[i]), probability=float(probabilities[i, chosen_cpu[i]]),
                logits=logits_cpu[i], threshold=threshold, max_depth=max_depth, top_k=top_k,
                _plan=plan, _model=model, _depth=depth[i],
                _pooled=SampleRows(layer_pooled, i), _tensors=per_sample[i],
                _inputs=tuple(inputs), _sample=i, contrast=others[i],
                _counted=(edges[i], visited[i]), gate=gate, _channel_keep=keep[i],
            )
            for i in range(batch)
        ]


def _versions(owners: list[tuple[nn.Module, str]],
              direct: list[tuple[Any, str, torch.Tensor]] | None) -> tuple[Any, ...]:
    """What tells the pooled weights are stale: every layer's
    :func:`~fxcfp.passes.weighted_layers.weight_version`. Where every layer's weight is the
    plain parameter the plan was built with (``direct``), the compiled extension reads their
    versions in one call (0.016 ms for regnety_002's 66 layers; ``_layer_tensors`` took 0.29
    ms a call with the loop alone); its flat tuple is another key than the loop's, so a change of reader recomputes
    the pooled weights once."""
    extension = _fused.loaded()
    if direct is not None and extension is not None:
        found = extension.weight_versions(direct)
        if found is not None:
            return cast(tuple[Any, ...], found)
    return tuple(weight_version(module, leaf) for module, leaf in owners)


def _copies(tensors: Any) -> list[torch.Tensor]:
    return [x.clone() for x in tensors]


def _probabilities(logits: torch.Tensor, plan: Plan, view: nn.Module) -> torch.Tensor:
    """SPEC: the softmax of the output; where the model ends in a softmax or log-softmax over
    the classes, its own output (a softmax of probabilities would flatten them)."""
    output = "logits" if view._forward_hooks else plan.traced.output
    if output == "softmax":
        return logits
    if output == "log_softmax":
        return logits.exp()
    return logits.softmax(1)


_CACHE: weakref.WeakKeyDictionary[nn.Module, Analyzer] = weakref.WeakKeyDictionary()


_CACHE_LOCK = threading.Lock()


def _cached_analyzer(model: Any, call: str) -> Analyzer:
    """The one-call functions reuse an Analyzer per model (it rebuilds its trace when the
    module tree changes). The cache holds the model weakly, so it never keeps a model alive."""
    model = check_model(model, call)
    with _CACHE_LOCK:
        analyzer = _CACHE.get(model)
        if analyzer is None:
            analyzer = Analyzer(model)
            analyzer._model_ref = weakref.ref(model)
            _CACHE[model] = analyzer
    return analyzer


def analyze(model: nn.Module, clip: torch.Tensor | list[torch.Tensor], cls: int | None = None,
            *, threshold: float = THRESHOLD, max_depth: int | None = None,
            top_k: int | None = None, contrast: int | str | None = None,
            gate: Gate = "paper", maps: MapMode | None = None) -> Pyramid:
    """Find the class feature pyramid of one clip: the kernels, through the whole depth of the
    network, that carry the evidence for class ``cls``.

    Args:
        model: a classifier returning ``N x classes`` logits (or probabilities). Any
            architecture torch.fx or torch.export can trace; it is analysed in eval mode and
            left exactly as it was (see :class:`Analyzer` for hooks and threads).
            Parametrised and pruned layers (``weight_norm``, ``spectral_norm``,
            ``torch.nn.utils.parametrize``, ``torch.nn.utils.prune``) are explained with the
            weight they use on the call; spectral normalisation runs no power iteration.
        clip: ``C x T x H x W`` or ``1 x C x T x H x W`` (or ``C x H x W`` for an image CNN);
            for a multi-input model (SlowFast) a list with one such tensor per pathway, passed
            to the model as one list. fxcfp works on its own copy: the caller's tensor is never
            changed (also by a model that edits its input in place, which edits fxcfp's copy
            once per forward), and refilling it later does not change the pyramid.
        cls: the class to explain; ``None`` explains the top class.
        threshold: the gate (SPEC eq. 2): a channel passes when its per-kernel min-max
            normalised score is at least this.
        max_depth: back-steps to expand from the class; ``None`` goes down to the clip.
        top_k: keep at most this many passing channels per kernel.
        contrast: ``None``; or another class index, or ``"runner-up"`` (the best class other
            than ``cls``), for a contrastive pyramid: "why ``cls`` and not ``contrast``". The
            root is scored with the classifier's row difference ``w_cls - w_contrast``
            (softmax-neutral), the layers below are back-stepped as usual, and evidence maps
            differentiate ``y_cls - y_contrast``; see :mod:`fxcfp._contrast`.
        gate: ``"paper"`` (SPEC's selection, the default) or ``"evidence"``: a channel also
            needs a first-order contribution to the class's log-probability (to
            ``y_cls - y_contrast`` with a contrast) of at least 5% of its layer's largest, so
            the pyramid is class-specific all the way down; costs one more forward and
            backward pass. See :mod:`fxcfp._gate` for the definition and the measurements.
        maps: ``None`` (the default: nothing more is recorded, and the first map of a mode
            runs a pass of its own, :meth:`Pyramid.prefetch_maps`), or the map mode the
            pictures will draw, ``"paper"`` or ``"evidence"``: the analysis's own forward pass
            also records what the maps of that mode are made of, for every level the pyramid
            expands, so drawing them (``write_report``, ``render_pyramid``, ``layer_map``,
            ``kernel_map``) runs no forward of its own (and leaf-module hooks run once). The
            maps are those ``prefetch_maps(mode=...)`` records, bit for bit; the pyramid is the
            one without ``maps=``, bit for bit. ``"paper"`` keeps every map tensor's output of
            the forward until the back-step is done; ``"evidence"`` runs that forward with
            gradients and, after the back-step, one backward of the class's margin (see
            :meth:`Pyramid.kernel_map`). Measured on r3d_18 at 16x112x112 (CPU,
            ``benchmarks/render.py``, ``benchmarks/maps_memory.py``, a quiet 2-core
            machine): ``"paper"`` adds 0.02x a forward to the analysis (recording the maps
            afterwards: 1.01x), ``"evidence"`` 1.21x, its backward (afterwards: 2.20x); the
            peak resident memory grows by 47 MiB (paper) and 305 MiB (evidence) over the
            plain analysis's, where recording the maps afterwards peaks at +59 and +310 MiB.
            ``analyze_batch`` refuses it (its maps would be a batched forward's, not one
            clip's).

    Returns:
        The :class:`Pyramid`.

    Raises:
        FxcfpError: a subclass naming the problem, for bad input, an untraceable model, an
            op without a channel rule, an error of the model itself (``ModelCallError``,
            with what it raised), non-finite logits, or hooks it cannot run.

    Example:
        >>> import torch, torchvision, fxcfp
        >>> model = torchvision.models.video.r3d_18()
        >>> pyramid = fxcfp.analyze(model, torch.randn(3, 8, 56, 56), threshold=0.6)
        >>> print(pyramid.summary())
        class ... (p=...), threshold 0.6, max_depth none: ... kernels in ... layers, ... edges
        layer                  depth  selected/total  edges
        fc                         0           1/400    ...
        ...
        input                                    3/3

        The maps of the pictures, recorded by the analysis's own forward pass:

        >>> runs = []
        >>> hook = model.stem[0].register_forward_hook(lambda *_: runs.append(1))
        >>> pyramid = fxcfp.analyze(model, torch.randn(3, 8, 56, 56), maps="evidence")
        >>> heat = pyramid.layer_map("fc", mode="evidence")  # no forward, no backward
        >>> len(runs), tuple(heat.shape)
        (1, (1, 4, 4))
        >>> hook.remove()
    """
    return _cached_analyzer(model, "fxcfp.analyze").analyze(
        clip, cls, threshold=threshold, max_depth=max_depth, top_k=top_k, contrast=contrast,
        gate=gate, maps=maps)


def analyze_batch(model: nn.Module, clips: torch.Tensor | list[torch.Tensor],
                  classes: Any = None, *, threshold: float = THRESHOLD, max_depth: int | None = None,
                  top_k: int | None = None, contrast: int | str | None = None,
                  gate: Gate = "paper", maps: MapMode | None = None) -> list[Pyramid]:
    """Explain a batch of clips with one forward pass and one batched back-step.

    Args:
        model: as in :func:`analyze`.
        clips: ``N x C x T x H x W``, or for a multi-input model a list of batched tensors,
            one per pathway.
        classes: ``None`` (each clip's top class), one int for all, or one per clip.
        threshold, max_depth, top_k: as in :func:`analyze`.
        contrast, gate: as in :func:`analyze`, for every clip.
        maps: ``None``; the maps of a batch are recorded after the analysis, for the pyramids
            drawn (:meth:`Pyramid.prefetch_maps`): a value is refused with an
            :class:`~fxcfp.InvalidArgumentError` that says so.

    Returns:
        One :class:`Pyramid` per clip.
    """
    return _cached_analyzer(model, "fxcfp.analyze_batch").analyze_batch(
        clips, classes, threshold=threshold, max_depth=max_depth, top_k=top_k,
        contrast=contrast, gate=gate, maps=maps)
