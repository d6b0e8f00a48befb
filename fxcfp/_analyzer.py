"""The public entry points: :class:`Analyzer`, :func:`analyze`, :func:`analyze_batch`."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from ._backstep import LayerTensors, backstep
from ._checks import check_classes, check_model, check_options, prepare_inputs
from ._contrast import check_contrast, contrast_classes, contrast_tensors
from ._errors import UnsupportedModelError, UnsupportedOpError
from ._gate import Gate, check_gate, evidence_keep, gated_tensors
from ._plan import Plan, plan_and_capture, record_activations
from ._pyramid import Pyramid
from ._trace import Traced, trace_model

__all__ = ["Analyzer", "analyze", "analyze_batch"]


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the call; every module's own ``training`` flag comes back afterwards, also
    when the call raises."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        for module, _ in flags:
            module.training = False
        with torch.no_grad():
            yield
    finally:
        for module, flag in flags:
            module.training = flag


def _opaque(err: Exception) -> bool:
    """Did the channel-map pass stop at a Python function that is not a torch op?"""
    node = getattr(err, "fx_node", None)
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
            after every call, also one that raises. Weights are read live, so an Analyzer keeps
            explaining the model as it is trained further.
        leaf_modules: module classes symbolic tracing must not enter (for data-dependent
            control flow); each needs a rule, see :func:`fxcfp.register_channel_rule`.
        concrete_args: arguments of ``forward`` to fix while tracing (torch.fx).
        trace: ``"auto"`` (torch.fx, then torch.export), ``"fx"`` or ``"export"``.

    Example:
        >>> import torch, torchvision, fxcfp
        >>> analyzer = fxcfp.Analyzer(torchvision.models.video.r3d_18())
        >>> clips = torch.randn(4, 3, 8, 56, 56)
        >>> pyramids = analyzer.analyze_batch(clips)
        >>> [p.target for p in pyramids]  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, *, leaf_modules: tuple[type[nn.Module], ...] = (),
                 concrete_args: dict[str, Any] | None = None,
                 trace: Literal["auto", "fx", "export"] = "auto") -> None:
        self._model_ref: Any = check_model(model, "fxcfp.Analyzer")
        self._leaf_modules = tuple(leaf_modules)
        self._concrete_args = concrete_args
        self._trace = trace
        self._fx: Traced | None = None
        self._plans: dict[tuple[Any, ...], Plan] = {}
        self._tensors: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[LayerTensors]]] = {}
        self._fingerprint: tuple[int, ...] | None = None
        self._export_only = False

    @property
    def model(self) -> nn.Module:
        model = self._model_ref() if isinstance(self._model_ref, weakref.ref) else self._model_ref
        if model is None:
            raise UnsupportedModelError("fxcfp.Analyzer: the model was garbage-collected")
        return model

    # --- plans -----------------------------------------------------------------------------

    def _plan(self, inputs: list[torch.Tensor], as_list: bool
              ) -> tuple[Plan, tuple[Any, tuple[torch.Tensor, ...]] | None]:
        """The plan for ``inputs``, and when it was built on them just now, what its capture
        returns for them (the channel-map pass ran the model on them already)."""
        model = self.model
        call_args = [inputs] if as_list else inputs
        kind = "export" if (as_list or self._trace == "export" or self._export_only) else "fx"
        # symbolic tracing is shape-agnostic (flatten sizes still make channel maps per shape,
        # not per batch size); torch.export's graph is specialised to every dimension
        export_key = ("export", as_list) + tuple(
            (tuple(x.shape), x.dtype, x.device) for x in inputs)
        key = export_key if kind == "export" else ("fx",) + tuple(
            (tuple(x.shape[1:]), x.dtype, x.device) for x in inputs)
        if key in self._plans:
            return self._plans[key], None
        traced = self._fx if kind == "fx" else None
        if traced is None:
            traced = trace_model(model, call_args, leaf_modules=self._leaf_modules,
                                 concrete_args=self._concrete_args, method=self._trace)
        if traced.method == "fx":
            self._fx = traced
            sample = [x[:1] for x in inputs]  # channel maps do not depend on the batch size
        else:
            sample = inputs
        try:
            plan, captured = plan_and_capture(traced, sample, model)
        except (UnsupportedOpError, UnsupportedModelError) as err:
            if not (traced.method == "fx" and self._trace == "auto" and _opaque(err)):
                raise
            # symbolic tracing kept a plain-Python helper opaque (torchvision's fx-wrapped
            # functions); torch.export traces through it, from now on for every shape
            self._export_only = True
            traced = trace_model(model, call_args, leaf_modules=self._leaf_modules,
                                 method="export")
            plan, captured = plan_and_capture(traced, inputs, model)
            sample = inputs
        if traced.method == "export" and kind == "fx":
            self._export_only = True  # fx failed for this model: later calls go to export directly
            key = export_key
        self._plans[key] = plan
        whole = all(s.shape == x.shape for s, x in zip(sample, inputs, strict=True))
        return plan, captured if whole else None

    def _layer_tensors(self, plan: Plan, device: torch.device, dtype: torch.dtype
                       ) -> list[LayerTensors]:
        """Pooled weights on the device, recomputed only when a weight changed in place."""
        params = [plan.traced.gm.get_parameter(layer.weight) for layer in plan.layers]
        version = tuple((p._version, p.data_ptr()) for p in params)
        key = (id(plan), device, dtype)
        cached = self._tensors.get(key)
        if cached is None or cached[0] != version:
            cached = (version, plan.layer_tensors(device, dtype))
            self._tensors[key] = cached
        return cached[1]

    @staticmethod
    def _record(model: nn.Module, plan: Plan, inputs: tuple[torch.Tensor, ...],
                requests: dict[str, tuple[int, torch.Tensor]], sample: int
                ) -> dict[str, torch.Tensor]:
        """A targeted forward for the maps: only the requested channels of one sample."""
        if plan.traced.method == "fx":
            inputs, sample = tuple(x[sample: sample + 1] for x in inputs), 0
        with _eval_mode(model):
            return record_activations(plan.traced.gm, list(inputs), requests, sample)

    # --- analysis --------------------------------------------------------------------------

    def analyze(self, clip: torch.Tensor | list[torch.Tensor], cls: int | None = None, *,
                threshold: float = 0.6, max_depth: int | None = None,
                top_k: int | None = None, contrast: int | str | None = None,
                gate: Gate = "paper") -> Pyramid:
        """Explain one clip: see :func:`fxcfp.analyze`."""
        options = check_options("fxcfp.analyze", threshold, max_depth, top_k)
        other = check_contrast("fxcfp.analyze", contrast)
        gate = check_gate("fxcfp.analyze", gate)
        inputs, as_list = prepare_inputs("fxcfp.analyze", self.model, clip, batched=False)
        return self._run("fxcfp.analyze", inputs, as_list, cls, options, other, gate)[0]

    def analyze_batch(self, clips: torch.Tensor | list[torch.Tensor], classes: Any = None, *,
                      threshold: float = 0.6, max_depth: int | None = None,
                      top_k: int | None = None, contrast: int | str | None = None,
                      gate: Gate = "paper") -> list[Pyramid]:
        """Explain a batch of clips with one forward pass: see :func:`fxcfp.analyze_batch`."""
        options = check_options("fxcfp.analyze_batch", threshold, max_depth, top_k)
        other = check_contrast("fxcfp.analyze_batch", contrast)
        gate = check_gate("fxcfp.analyze_batch", gate)
        inputs, as_list = prepare_inputs("fxcfp.analyze_batch", self.model, clips, batched=True)
        return self._run("fxcfp.analyze_batch", inputs, as_list, classes, options, other, gate)

    def _run(self, call: str, inputs: list[torch.Tensor], as_list: bool, classes: Any,
             options: tuple[float, int | None, int | None],
             contrast: int | str | None = None, gate: Gate = "paper") -> list[Pyramid]:
        threshold, max_depth, top_k = options
        model = self.model
        with _eval_mode(model):
            plan, captured = self._plan(inputs, as_list)
            logits, pooled = captured if captured is not None else plan.capture(*inputs)
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
                                                 int(chosen_cpu[i]), others[i]))
                          for i in range(batch)]
        if gate == "evidence":
            keep = evidence_keep(model, plan, inputs, chosen_cpu.tolist(), others)
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
        probabilities = logits_cpu.softmax(1)
        return [
            Pyramid(
                target=int(chosen_cpu[i]), probability=float(probabilities[i, chosen_cpu[i]]),
                logits=logits_cpu[i], threshold=threshold, max_depth=max_depth, top_k=top_k,
                _plan=plan, _model=model, _depth=depth[i],
                _pooled=tuple(p[i] for p in layer_pooled), _tensors=per_sample[i],
                _inputs=tuple(inputs), _sample=i, contrast=others[i],
                _counted=(edges[i], visited[i]), gate=gate, _channel_keep=keep[i],
            )
            for i in range(batch)
        ]


_CACHE: weakref.WeakKeyDictionary[nn.Module, Analyzer] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple[int, ...]:
    return tuple(id(m) for m in model.modules()) + tuple(id(p) for p in model.parameters())


def _cached_analyzer(model: Any, call: str) -> Analyzer:
    """The one-call functions reuse an Analyzer per model while its module tree is unchanged.
    The cache holds the model weakly, so it never keeps a model alive."""
    model = check_model(model, call)
    fingerprint = _fingerprint(model)
    analyzer = _CACHE.get(model)
    if analyzer is None or analyzer._fingerprint != fingerprint:
        analyzer = Analyzer(model)
        analyzer._model_ref = weakref.ref(model)
        analyzer._fingerprint = fingerprint
        _CACHE[model] = analyzer
    return analyzer


def analyze(model: nn.Module, clip: torch.Tensor | list[torch.Tensor], cls: int | None = None,
            *, threshold: float = 0.6, max_depth: int | None = None,
            top_k: int | None = None, contrast: int | str | None = None,
            gate: Gate = "paper") -> Pyramid:
    """Find the class feature pyramid of one clip: the kernels, through the whole depth of the
    network, that carry the evidence for class ``cls``.

    Args:
        model: a classifier returning ``N x classes`` logits (or probabilities). Any
            architecture torch.fx or torch.export can trace; it is analysed in eval mode and
            left exactly as it was.
        clip: ``C x T x H x W`` or ``1 x C x T x H x W`` (or ``C x H x W`` for an image CNN);
            for a multi-input model (SlowFast) a list with one such tensor per pathway, passed
            to the model as one list.
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

    Returns:
        The :class:`Pyramid`.

    Raises:
        FxcfpError: a subclass naming the problem, for bad input, an untraceable model or an
            op without a channel rule.

    Example:
        >>> import torch, torchvision, fxcfp
        >>> model = torchvision.models.video.r3d_18()
        >>> pyramid = fxcfp.analyze(model, torch.randn(3, 8, 56, 56), threshold=0.6)
        >>> print(pyramid.summary())  # doctest: +SKIP
    """
    return _cached_analyzer(model, "fxcfp.analyze").analyze(
        clip, cls, threshold=threshold, max_depth=max_depth, top_k=top_k, contrast=contrast,
        gate=gate)


def analyze_batch(model: nn.Module, clips: torch.Tensor | list[torch.Tensor],
                  classes: Any = None, *, threshold: float = 0.6, max_depth: int | None = None,
                  top_k: int | None = None, contrast: int | str | None = None,
                  gate: Gate = "paper") -> list[Pyramid]:
    """Explain a batch of clips with one forward pass and one batched back-step.

    Args:
        model: as in :func:`analyze`.
        clips: ``N x C x T x H x W``, or for a multi-input model a list of batched tensors,
            one per pathway.
        classes: ``None`` (each clip's top class), one int for all, or one per clip.
        threshold, max_depth, top_k: as in :func:`analyze`.
        contrast, gate: as in :func:`analyze`, for every clip.

    Returns:
        One :class:`Pyramid` per clip.
    """
    return _cached_analyzer(model, "fxcfp.analyze_batch").analyze_batch(
        clips, classes, threshold=threshold, max_depth=max_depth, top_k=top_k,
        contrast=contrast, gate=gate)
