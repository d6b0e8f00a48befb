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

import torch
from torch import nn

from .._errors import InvalidArgumentError
from .._maps import upsample as _upsample
from ._model import Recorded, batched, record

__all__ = ["BASELINES", "PYRAMID_METHODS", "layer_map_node", "saliency_maps", "baseline_map"]

BASELINES = ("gradcam", "grad_x_input", "activation", "random")
PYRAMID_METHODS = ("paper", "evidence")


def layer_map_node(info: object) -> tuple[str, int]:
    """The FX node a weighted layer's maps are drawn on and its channel dim (batched)."""
    # TODO(faith merge): LayerInfo.map_node / map_channel_dim; the layer input until then
    node = getattr(info, "map_node", None) or info.input_node  # type: ignore[attr-defined]
    dim = getattr(info, "map_channel_dim", None)
    return node, (info.channel_dim if dim is None else dim)  # type: ignore[attr-defined]


def _channels_first(value: torch.Tensor, dim: int) -> torch.Tensor:
    """One sample's ``C x ...`` from a batched activation with channels at ``dim``."""
    return value[0].movedim(dim - 1, 0).double()


def baseline_map(method: str, recorded: Recorded, node: str, dim: int, cls: int, *,
                 seed: int = 0) -> torch.Tensor:
    """One baseline's map at ``node`` (its positions' shape, not upsampled)."""
    activation = _channels_first(recorded.activations[node], dim)
    if method == "activation":
        return activation.mean(0).float()
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(activation.shape[1:], generator=generator)
    gradient = _channels_first(recorded.gradients(cls)[node], dim)
    if method == "gradcam":
        weights = gradient.reshape(gradient.shape[0], -1).mean(1)
        return torch.relu(torch.tensordot(weights, activation, dims=1)).float()
    if method == "grad_x_input":
        return torch.relu((gradient * activation).sum(0)).float()
    raise InvalidArgumentError(f"fxcfp.eval: unknown method {method!r}; choose from "
                               f"{', '.join(PYRAMID_METHODS + BASELINES)}")


def _pyramid_map(pyramid: object, layer: str, method: str) -> torch.Tensor:
    from .._errors import FxcfpError

    try:
        if method == "paper":
            try:
                return pyramid.layer_map(layer, mode="paper")  # type: ignore[attr-defined]
            except TypeError:  # TODO(faith merge): before map modes existed
                return pyramid.layer_map(layer)  # type: ignore[attr-defined]
        return pyramid.layer_map(layer, mode=method)  # type: ignore[attr-defined]
    except FxcfpError:
        # a layer without an expanded kernel has no map: it is drawn blank, and scored so
        return torch.zeros(())


def saliency_maps(model: nn.Module, clip: torch.Tensor, cls: int | None = None, *,
                  methods: Sequence[str] = PYRAMID_METHODS + BASELINES,
                  layers: Sequence[str] | None = None, pyramid: object | None = None,
                  threshold: float = 0.6, upsample: bool = True, seed: int = 0,
                  recorded: Recorded | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Maps of ``cls`` in ``clip`` for every layer and method, treated identically.

    Args:
        model: a CNN fxcfp can analyse; it is not changed.
        clip: ``C x T x H x W`` (or ``1 x C x T x H x W``).
        cls: the class; ``None``: the top class.
        methods: any of ``"paper"``, ``"evidence"`` (the pyramid's maps) and
            :data:`BASELINES`.
        layers: layer names (default: every weighted layer of the pyramid).
        pyramid: a pyramid of this clip and class to reuse (default: ``fxcfp.analyze``).
        threshold: the pyramid's threshold when it is computed here.
        upsample: resize every map with fxcfp's own upsampling to the clip's ``T x H x W``
            (cubic spline, scaled to ``[0, 1]``); otherwise the map's own resolution.
        seed: seeds the random baseline (mixed with the layer's name).
        recorded: activations recorded before (internal reuse).

    Returns:
        ``maps[layer][method]``, float32 cpu tensors.
    """
    import fxcfp

    unknown = [m for m in methods if m not in PYRAMID_METHODS + BASELINES]
    if unknown:
        raise InvalidArgumentError(f"fxcfp.eval.saliency_maps: unknown method {unknown[0]!r}; "
                                   f"choose from {', '.join(PYRAMID_METHODS + BASELINES)}")
    inputs = batched("fxcfp.eval.saliency_maps", model, clip)
    if pyramid is None:
        pyramid = fxcfp.analyze(model, inputs, cls, threshold=threshold)
    cls = pyramid.target  # type: ignore[attr-defined]
    plan = pyramid._plan  # type: ignore[attr-defined]
    infos = {info.name: info for info in plan.layers}
    names = list(infos) if layers is None else list(layers)
    for name in names:
        if name not in infos:
            raise InvalidArgumentError(
                f"fxcfp.eval.saliency_maps: no weighted layer {name!r}; the model's are "
                f"{', '.join(list(infos)[:8])}{', ...' if len(infos) > 8 else ''}")
    where = {name: layer_map_node(infos[name]) for name in names}
    if recorded is None and any(m in BASELINES for m in methods):
        recorded = record(model, plan.traced.gm, [inputs],
                          sorted({node for node, _ in where.values()}))
    if any(m in PYRAMID_METHODS for m in methods):
        # one targeted forward for every layer's paper map instead of one per layer
        drawn = [n for n in names if n in {level.name for level in pyramid.layers}]  # type: ignore[attr-defined]
        if drawn:
            pyramid.prefetch_maps(drawn)  # type: ignore[attr-defined]
    size = tuple(inputs.shape[2:])
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name in names:
        node, dim = where[name]
        out[name] = {}
        for method in methods:
            if method in PYRAMID_METHODS:
                low = _pyramid_map(pyramid, name, method)
            else:
                low = baseline_map(method, recorded, node, dim, cls,
                                   seed=zlib.crc32(f"{seed}/{name}".encode()))
            out[name][method] = _upsample(low, size) if upsample else low
    return out
