"""Saliency maps to measure fxcfp's against, all drawn on the same tensor the pyramid draws a
layer on (its ``map_node``) and upsampled the same way.

- ``gradcam``: Grad-CAM (Selvaraju et al., 2017): channel weights are the class score's
  gradient averaged over the map's positions; ``relu(sum_c w_c A_c)``.
- ``grad_x_input``: ``relu(sum_c dy/dA_c * A_c)`` per position, the first-order contribution of
  every voxel of the activation to the class score.
- ``activation``: the mean activation over channels, class-blind (what a map of "strong
  activation" gives whatever the class).
- ``random``: uniform noise at the layer's own resolution, independent of model and class (a
  random map upsampled like the others is smooth at the layer's scale, so deletion compares like
  with like; scattered random voxels would wreck any prediction on their own).

Example:
    >>> import torch, fxcfp
    >>> from fxcfp.eval import saliency_maps
    >>> from fxcfp.eval.synthetic import SmallResNet3d
    >>> model = SmallResNet3d().eval()
    >>> maps = saliency_maps(model, torch.randn(3, 16, 32, 32), 0, methods=("gradcam",),
    ...                      layers=("b3.b",))
    >>> tuple(maps["b3.b"]["gradcam"].shape)
    (16, 32, 32)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._defaults import THRESHOLD
from .._errors import FxcfpError, InvalidArgumentError
from .._maps import upsample as _upsample
from .._plan import LayerInfo
from .._pyramid import Pyramid
from ._model import Recorded, batched, record

__all__ = ["BASELINES", "PYRAMID_METHODS", "PyramidMethod", "layer_map_node", "saliency_maps",
           "baseline_map"]

BASELINES = ("gradcam", "grad_x_input", "activation", "random")
PYRAMID_METHODS = ("paper", "evidence")


@dataclass(frozen=True)
class PyramidMethod:
    """fxcfp's maps under a name of their own: a map ``mode`` of a pyramid analysed with extra
    ``fxcfp.analyze`` options, to compare selections side by side.

    Example: ``PyramidMethod("evidence-gate", "evidence", (("gate", "evidence"),))``.

    Attributes:
        name: the method's name in results and tables.
        mode: the ``Pyramid.layer_map`` mode.
        options: ``fxcfp.analyze`` keyword arguments, as ``(name, value)`` pairs.
    """

    name: str
    mode: str = "paper"
    options: tuple[tuple[str, Any], ...] = ()


Method = str | PyramidMethod


def method_name(method: Method) -> str:
    return method.name if isinstance(method, PyramidMethod) else method


def as_method(call: str, method: Method) -> Method:
    """A method name (``"paper"``, ``"evidence"`` or a baseline) or a :class:`PyramidMethod`,
    checked."""
    if isinstance(method, PyramidMethod):
        if method.mode not in PYRAMID_METHODS:
            raise InvalidArgumentError(f"{call}: PyramidMethod {method.name!r} has mode "
                                       f"{method.mode!r}; use one of {', '.join(PYRAMID_METHODS)}")
        return method
    if method not in PYRAMID_METHODS + BASELINES:
        raise InvalidArgumentError(f"{call}: unknown method {method!r}; choose from "
                                   f"{', '.join(PYRAMID_METHODS + BASELINES)} or pass a "
                                   "fxcfp.eval.PyramidMethod")
    if method in PYRAMID_METHODS:
        return PyramidMethod(method, method)
    return method


def layer_map_node(info: LayerInfo) -> tuple[str, int]:
    """The FX node a weighted layer's maps are drawn on and its channel dim (batched): the
    layer's input, or a classifier's pre-pool tensor (``LayerInfo.map_node``)."""
    return info.map_node, info.map_channel_dim


def _channels_first(value: torch.Tensor, dim: int) -> torch.Tensor:
    """One sample's ``C x ...`` from a batched activation with channels at ``dim``."""
    return value[0].movedim(dim - 1, 0).double()


def baseline_map(method: str, recorded: Recorded, node: str, dim: int, cls: int, *,
                 seed: int = 0) -> torch.Tensor:
    """One baseline's map at ``node`` (its positions' shape, not upsampled)."""
    activation = _channels_first(recorded.activations[node], dim)
    if method == "activation":
        return activation.mean(0).float().cpu()
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(activation.shape[1:], generator=generator)
    gradient = _channels_first(recorded.gradients(cls)[node], dim)
    if method == "gradcam":
        weights = gradient.reshape(gradient.shape[0], -1).mean(1)
        return torch.relu(torch.tensordot(weights, activation, dims=1)).float().cpu()
    if method == "grad_x_input":
        return torch.relu((gradient * activation).sum(0)).float().cpu()
    raise InvalidArgumentError(f"fxcfp.eval: unknown method {method!r}; choose from "
                               f"{', '.join(PYRAMID_METHODS + BASELINES)}")


def _pyramid_map(pyramid: Pyramid, layer: str, mode: str) -> torch.Tensor:
    try:
        return pyramid.layer_map(layer, mode=mode)  # type: ignore[arg-type]
    except FxcfpError:
        # a layer without an expanded kernel has no map: it is drawn blank, and scored so
        return torch.zeros(())


def saliency_maps(model: nn.Module, clip: torch.Tensor, cls: int | None = None, *,
                  methods: Sequence[Method] = PYRAMID_METHODS + BASELINES,
                  layers: Sequence[str] | None = None, pyramid: Pyramid | None = None,
                  threshold: float = THRESHOLD, upsample: bool = True, seed: int = 0,
                  recorded: Recorded | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Maps of ``cls`` in ``clip`` for every layer and method, treated identically.

    Args:
        model: a CNN fxcfp can analyse; it is not changed.
        clip: ``C x T x H x W`` (or ``1 x C x T x H x W``).
        cls: the class; ``None``: the top class (or ``pyramid``'s target).
        methods: ``"paper"``, ``"evidence"`` (the pyramid's map modes), a
            :class:`PyramidMethod`, and :data:`BASELINES`.
        layers: layer names (default: every weighted layer of the pyramid).
        pyramid: a pyramid of this clip and class to reuse for the methods without options
            (default: ``fxcfp.analyze``).
        threshold: the pyramids' threshold when they are computed here.
        upsample: resize every map with fxcfp's own upsampling to the clip's ``T x H x W``
            (cubic spline, scaled to ``[0, 1]``); otherwise the map's own resolution.
        seed: seeds the random baseline (mixed with the layer's name).
        recorded: activations recorded before (internal reuse).

    Returns:
        ``maps[layer][method name]``, float32 cpu tensors.
    """
    import fxcfp

    call = "fxcfp.eval.saliency_maps"
    checked = [as_method(call, m) for m in methods]
    inputs = batched(call, model, clip)
    if pyramid is None:
        pyramid = fxcfp.analyze(model, inputs, cls, threshold=threshold)
    cls = pyramid.target
    plan = pyramid._plan
    infos = {info.name: info for info in plan.layers}
    names = list(infos) if layers is None else list(layers)
    for name in names:
        if name not in infos:
            raise InvalidArgumentError(
                f"{call}: no weighted layer {name!r}; the model's are "
                f"{', '.join(list(infos)[:8])}{', ...' if len(infos) > 8 else ''}")
    where = {name: layer_map_node(infos[name]) for name in names}
    if recorded is None and any(isinstance(m, str) for m in checked):
        recorded = record(model, plan.traced.gm, [inputs],
                          sorted({node for node, _ in where.values()}))
    # one pyramid per set of analyze options; each mode's maps fetched in one pass
    pyramids: dict[tuple[tuple[str, Any], ...], Pyramid] = {(): pyramid}
    for method in checked:
        if isinstance(method, PyramidMethod):
            if method.options not in pyramids:
                options = {"threshold": threshold, **dict(method.options)}
                pyramids[method.options] = fxcfp.analyze(model, inputs, cls, **options)
            chosen = pyramids[method.options]
            drawn = [n for n in names if n in {level.name for level in chosen.layers}]
            if drawn:
                chosen.prefetch_maps(drawn, mode=method.mode)  # type: ignore[arg-type]
    size = tuple(inputs.shape[2:])
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name in names:
        node, dim = where[name]
        out[name] = {}
        for method in checked:
            if isinstance(method, PyramidMethod):
                low = _pyramid_map(pyramids[method.options], name, method.mode)
            else:
                assert recorded is not None  # recorded above for any baseline method
                low = baseline_map(method, recorded, node, dim, cls,
                                   seed=zlib.crc32(f"{seed}/{name}".encode()))
            out[name][method_name(method)] = _upsample(low, size) if upsample else low
    return out
