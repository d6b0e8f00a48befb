"""Per-layer comparisons of map methods on many clips: ground truth, class sensitivity,
cascading randomisation, deletion and insertion, with bootstrap intervals."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .._defaults import THRESHOLD
from .._errors import InvalidArgumentError
from .baselines import BASELINES, PYRAMID_METHODS, Method, as_method, method_name, saliency_maps
from .metrics import DEFAULT_FRACTIONS, curves, energy_in_mask, pointing_game, spearman

if TYPE_CHECKING:
    from .._pyramid import Pyramid

__all__ = ["Row", "Summary", "Comparison", "Randomization", "compare", "class_sensitivity",
           "cascading_randomization", "default_stages", "bootstrap"]

METRICS = ("energy", "pointing", "deletion", "insertion", "sensitivity", "randomization")


@dataclass(frozen=True)
class Row:
    """One measurement: ``metric`` of ``method``'s map of ``layer`` on clip ``clip``."""

    clip: int
    layer: str
    method: str
    metric: str
    value: float


@dataclass(frozen=True)
class Summary:
    """Mean of a metric over clips with a percentile-bootstrap interval.

    Attributes:
        layer, method, metric: what was measured.
        mean: mean over the clips where it is defined (NaN: none).
        low, high: the interval's ends.
        n: clips where it is defined (a rank correlation with a flat map is not).
    """

    layer: str
    method: str
    metric: str
    mean: float
    low: float
    high: float
    n: int


def bootstrap(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000,
              seed: int = 0) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the finite ``values``; the interval resamples clips with
    replacement (percentile method)."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan, math.nan, 0
    rng = np.random.default_rng(seed)
    means = finite[rng.integers(0, finite.size, size=(resamples, finite.size))].mean(1)
    tail = (1 - confidence) / 2
    return (float(finite.mean()), float(np.quantile(means, tail)),
            float(np.quantile(means, 1 - tail)), int(finite.size))


@dataclass(frozen=True)
class Comparison:
    """Every measurement of a :func:`compare` run.

    Attributes:
        rows: one per clip, layer, method and metric.
        layers: the layers, in the network's order.
        methods: the methods compared.
        classes: the class explained in each clip.
    """

    rows: tuple[Row, ...]
    layers: tuple[str, ...]
    methods: tuple[str, ...]
    classes: tuple[int, ...]

    @property
    def metrics(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.setdefault(row.metric)
        return tuple(seen)

    def values(self, layer: str, method: str, metric: str) -> list[float]:
        return [r.value for r in self.rows
                if r.layer == layer and r.method == method and r.metric == metric]

    def summary(self, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
                ) -> tuple[Summary, ...]:
        """Mean and bootstrap interval of every ``(layer, method, metric)``."""
        out = []
        for metric in self.metrics:
            for layer in self.layers:
                for method in self.methods:
                    values = self.values(layer, method, metric)
                    if values:
                        out.append(Summary(layer, method, metric, *bootstrap(
                            values, confidence=confidence, resamples=resamples, seed=seed)))
        return tuple(out)

    def to_markdown(self, metric: str, *, confidence: float = 0.95) -> str:
        """A ``layer x method`` table of ``metric``: ``mean [low, high]``."""
        cells = {(s.layer, s.method): s for s in self.summary(confidence=confidence)
                 if s.metric == metric}
        lines = ["| layer | " + " | ".join(self.methods) + " |",
                 "|---|" + "---|" * len(self.methods)]
        for layer in self.layers:
            row = []
            for method in self.methods:
                s = cells.get((layer, method))
                row.append("–" if s is None or s.n == 0 else
                           f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}]")
            lines.append(f"| {layer} | " + " | ".join(row) + " |")
        return "\n".join(lines)


def _check_methods(call: str, methods: Sequence[Method]) -> tuple[Method, ...]:
    checked = tuple(as_method(call, m) for m in methods)
    names = [method_name(m) for m in checked]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"{call}: two methods are named alike in {names}; give each "
                                   "PyramidMethod its own name")
    return checked


def _analyze(model: nn.Module, clip: torch.Tensor, cls: int | None, threshold: float
             ) -> Pyramid:
    import fxcfp

    return fxcfp.analyze(model, clip, cls, threshold=threshold)


def _runner_up(logits: torch.Tensor, cls: int) -> int:
    order = logits.argsort(descending=True).tolist()
    return next(c for c in order if c != cls)


def class_sensitivity(model: nn.Module, clip: torch.Tensor, cls: int | None = None,
                      other: int | str = "runner-up", *,
                      methods: Sequence[Method] = PYRAMID_METHODS + BASELINES,
                      layers: Sequence[str] | None = None, threshold: float = THRESHOLD,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Spearman correlation of the maps of ``cls`` and ``other`` per layer and method: a map
    that explains *this* class should change when the class does (low is class-specific).

    Args:
        other: a class index, or ``"runner-up"`` (the highest-scoring class but ``cls``).

    Returns:
        ``rho[layer][method]`` (NaN where a map is flat).
    """
    methods = _check_methods("fxcfp.eval.class_sensitivity", methods)
    pyramid = _analyze(model, clip, cls, threshold)
    first = saliency_maps(model, clip, methods=methods, layers=layers, pyramid=pyramid, seed=seed)
    if other == "runner-up":
        other = _runner_up(pyramid.logits, pyramid.target)
    if not isinstance(other, int) or not 0 <= other < pyramid.logits.numel():
        raise InvalidArgumentError(f"fxcfp.eval.class_sensitivity: other must be a class index "
                                   f"or 'runner-up', got {other!r}")
    second = saliency_maps(model, clip, methods=methods, layers=layers,
                           pyramid=_analyze(model, clip, other, threshold), seed=seed)
    return {layer: {m: spearman(first[layer][m], second[layer][m]) for m in map(method_name, methods)}
            for layer in first}


def default_stages(model: nn.Module, layer_names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Weighted layers grouped by their top-level module, from the output down: re-initialising
    stage after stage walks from the classifier to the stem."""
    groups: dict[str, list[str]] = {}
    for name in layer_names:
        groups.setdefault(name.split(".")[0], []).append(name)
    return tuple(tuple(group) for group in reversed(list(groups.values())))


@dataclass(frozen=True)
class Randomization:
    """Cascading randomisation (Adebayo et al., 2018) of one clip.

    Attributes:
        stages: each stage's label (its top-level modules), cumulative from the output down.
        correlations: ``(stage, layer, method) -> Spearman`` of the map after the stage's
            re-initialisation with the map of the trained model.
    """

    stages: tuple[str, ...]
    correlations: dict[tuple[str, str, str], float]


def _reinitialised(model: nn.Module, names: Sequence[str], seed: int) -> nn.Module:
    """A deep copy of ``model`` with the modules ``names`` re-initialised (the user's model and
    random state are untouched)."""
    clone = copy.deepcopy(model)
    parameter = next(iter(clone.parameters()), None)
    devices = [parameter.device] if parameter is not None and parameter.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for name in names:
            module = clone.get_submodule(name)
            reset = getattr(module, "reset_parameters", None)
            if reset is None:
                raise InvalidArgumentError(
                    f"fxcfp.eval.cascading_randomization: module {name!r} "
                    f"({type(module).__name__}) has no reset_parameters(); pass stages of "
                    "modules that can be re-initialised")
            reset()
    return clone


def _stage_models(model: nn.Module, layer_names: Sequence[str],
                  stages: Sequence[Sequence[str]] | None, seed: int
                  ) -> list[tuple[str, nn.Module]]:
    """One re-initialised deep copy per stage, each stage adding to the ones before."""
    stages = default_stages(model, layer_names) if stages is None else tuple(map(tuple, stages))
    done: list[str] = []
    out = []
    for stage in stages:
        done.extend(stage)
        label = "+".join(dict.fromkeys(name.split(".")[0] for name in stage))
        out.append((label, _reinitialised(model, done, seed)))
    return out


def _randomization(clip: torch.Tensor, target: int, clones: list[tuple[str, nn.Module]],
                   reference: dict[str, dict[str, torch.Tensor]], methods: tuple[Method, ...],
                   threshold: float, seed: int) -> Randomization:
    correlations = {}
    for label, clone in clones:
        maps = saliency_maps(clone, clip, methods=methods, layers=list(reference),
                             pyramid=_analyze(clone, clip, target, threshold), seed=seed)
        for layer in reference:
            for method in map(method_name, methods):
                correlations[(label, layer, method)] = spearman(reference[layer][method],
                                                                maps[layer][method])
    return Randomization(tuple(label for label, _ in clones), correlations)


def cascading_randomization(model: nn.Module, clip: torch.Tensor, cls: int | None = None, *,
                            methods: Sequence[Method] = PYRAMID_METHODS + BASELINES,
                            layers: Sequence[str] | None = None,
                            stages: Sequence[Sequence[str]] | None = None,
                            threshold: float = THRESHOLD, seed: int = 0) -> Randomization:
    """Re-initialise the weights stage by stage from the classifier down (on deep copies; the
    model passed in is never changed) and correlate every layer's map with the trained one's. A
    map that explains the model must change when the weights it explains are destroyed.

    Args:
        model: a CNN fxcfp can analyse.
        clip: ``C x T x H x W``.
        cls: the class (default: the top class); the randomised models explain the same class.
        methods: map methods.
        layers: layer names (default: every weighted layer).
        stages: module names per stage (each stage adds to the ones before); default
            :func:`default_stages`. Modules need ``reset_parameters()``; re-initialisation is
            seeded by ``seed`` and leaves the global random state alone.
        threshold: the pyramid's threshold.
        seed: seeds the re-initialisation and the random baseline.

    Returns:
        A :class:`Randomization` (Spearman per stage, layer and method).
    """
    methods = _check_methods("fxcfp.eval.cascading_randomization", methods)
    pyramid = _analyze(model, clip, cls, threshold)
    names = [info.name for info in pyramid._plan.layers]
    reference = saliency_maps(model, clip, methods=methods, layers=layers, pyramid=pyramid,
                              seed=seed)
    clones = _stage_models(model, names, stages, seed)
    return _randomization(clip, pyramid.target, clones, reference, methods, threshold, seed)


def compare(model: nn.Module, clips: torch.Tensor | Sequence[torch.Tensor],
            masks: torch.Tensor | Sequence[torch.Tensor] | None = None, *,
            classes: Sequence[int] | None = None,
            methods: Sequence[Method] = PYRAMID_METHODS + BASELINES,
            layers: Sequence[str] | None = None, metrics: Sequence[str] = METRICS,
            threshold: float = THRESHOLD, fractions: Sequence[float] = DEFAULT_FRACTIONS,
            stages: Sequence[Sequence[str]] | None = None, seed: int = 0,
            batch: int = 16) -> Comparison:
    """Measure every method's map of every layer on every clip.

    Args:
        model: a CNN fxcfp can analyse; it is not changed.
        clips: ``N x C x T x H x W`` or a list of clips.
        masks: ``N x T x H x W`` evidence masks; without them ``energy`` and ``pointing`` are
            skipped.
        classes: the class to explain per clip (default: the model's top class).
        methods: map methods (``"paper"``, ``"evidence"``, :class:`~fxcfp.eval.PyramidMethod`
            and :data:`~fxcfp.eval.BASELINES`).
        layers: layer names (default: every weighted layer).
        metrics: any of ``energy``, ``pointing``, ``deletion``, ``insertion``, ``sensitivity``
            (runner-up class), ``randomization`` (one metric per stage,
            ``randomization:<stage>``).
        threshold: the pyramid's threshold.
        fractions: the deletion and insertion grid.
        stages: randomisation stages (default :func:`default_stages`).
        seed: seeds the random baseline and tie order (mixed with the clip index) and the
            re-initialisation.
        batch: perturbed clips per forward pass in deletion and insertion.

    Returns:
        A :class:`Comparison`; ``.to_markdown(metric)`` gives a table with 95% intervals.

    Example:
        >>> import torch
        >>> from fxcfp.eval import compare
        >>> from fxcfp.eval.synthetic import SmallResNet3d
        >>> result = compare(SmallResNet3d().eval(), torch.randn(1, 3, 16, 32, 32),
        ...                  methods=("gradcam", "random"), layers=("b3.b",),
        ...                  metrics=("deletion",))
        >>> [row.metric for row in result.rows]
        ['deletion', 'deletion']
    """
    methods = _check_methods("fxcfp.eval.compare", methods)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InvalidArgumentError(f"fxcfp.eval.compare: unknown metric {unknown[0]!r}; choose "
                                   f"from {', '.join(METRICS)}")
    if masks is None and any(m in ("energy", "pointing") for m in metrics):
        metrics = [m for m in metrics if m not in ("energy", "pointing")]
    clips = list(clips)
    if masks is not None and len(masks) != len(clips):
        raise InvalidArgumentError(f"fxcfp.eval.compare: {len(clips)} clips but {len(masks)} "
                                   "masks; pass one mask per clip")
    rows: list[Row] = []
    explained: list[int] = []
    names: tuple[str, ...] = ()
    clones: list[tuple[str, nn.Module]] | None = None
    for i, clip in enumerate(clips):
        pyramid = _analyze(model, clip, None if classes is None else int(classes[i]), threshold)
        explained.append(pyramid.target)
        all_names = tuple(info.name for info in pyramid._plan.layers)
        names = all_names if layers is None else tuple(layers)
        clip_seed = seed * 100_003 + i
        maps = saliency_maps(model, clip, methods=methods, layers=names, pyramid=pyramid,
                             seed=clip_seed)

        def add(layer: str, method: str, metric: str, value: float, clip: int = i) -> None:
            rows.append(Row(clip, layer, method, metric, float(value)))

        labels = tuple(map(method_name, methods))
        for layer in names:
            for method in labels:
                saliency = maps[layer][method]
                if masks is None:  # (then neither energy nor pointing is asked: checked above)
                    continue
                if "energy" in metrics:
                    add(layer, method, "energy", energy_in_mask(saliency, masks[i]))
                if "pointing" in metrics:
                    add(layer, method, "pointing", pointing_game(saliency, masks[i]))
        pairs = [(layer, method) for layer in names for method in labels]
        for metric, insert in (("deletion", False), ("insertion", True)):
            if metric in metrics:
                found = curves(f"fxcfp.eval.compare ({metric})", model, clip, pyramid.target,
                               [maps[layer][method] for layer, method in pairs],
                               fractions=fractions, baseline=None, insert=insert,
                               seed=clip_seed, batch=batch)
                for (layer, method), curve in zip(pairs, found):
                    add(layer, method, metric, curve.auc)
        if "sensitivity" in metrics:
            other = _runner_up(pyramid.logits, pyramid.target)
            second = saliency_maps(model, clip, methods=methods, layers=names,
                                   pyramid=_analyze(model, clip, other, threshold),
                                   seed=clip_seed)
            for layer in names:
                for method in labels:
                    add(layer, method, "sensitivity",
                        spearman(maps[layer][method], second[layer][method]))
        if "randomization" in metrics:
            if clones is None:  # one randomised copy per stage, shared by every clip
                clones = _stage_models(model, all_names, stages, seed)
            result = _randomization(clip, pyramid.target, clones, maps, methods, threshold,
                                    clip_seed)
            for (stage, layer, method), rho in result.correlations.items():
                add(layer, method, f"randomization:{stage}", rho)
    return Comparison(tuple(rows), names, tuple(map(method_name, methods)), tuple(explained))
