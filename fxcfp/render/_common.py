"""What every module of :mod:`fxcfp.render` shares: the pyramid interface it reads, the checks
of the drawing options, the colour tables and a few small helpers.

Render reads a pyramid only through :class:`PyramidLike` (``fxcfp.Pyramid`` satisfies it; mypy
checks that below), so the render tests can draw a small synthetic stand-in
(``tests/fake_pyramid.py``) without tracing a network.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, cast

import matplotlib
import networkx as nx
import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp._evidence import DEFAULT_MAPS, MAP_MODE_HELP, check_choice

if TYPE_CHECKING:
    from fxcfp._pyramid import MapMode, Pyramid

__all__ = [
    "DEFAULT_MAPS", "FPS", "MAP_MODES", "Level", "PyramidLike", "check_alpha", "check_cmap",
    "check_maps", "check_pyramid", "figure_title", "level_caption", "lookup_table",
    "optional_map", "peak_frame", "slug",
]

MAP_MODES = ("evidence", "paper")
# what the figures' titles call each mode
MODE_WORDS = {"evidence": "evidence maps", "paper": "paper maps"}
# frames per second of every animation (a 16-frame clip loops in 2 s)
FPS = 8


class Level(Protocol):
    """One level of a pyramid, as :class:`fxcfp.LayerSelection` holds it."""

    @property
    def name(self) -> str: ...
    @property
    def kernels(self) -> tuple[int, ...]: ...
    @property
    def total(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def edges(self) -> int: ...
    @property
    def pathway(self) -> int: ...


class PyramidLike(Protocol):
    """What render reads of a pyramid: the prediction, the levels, the graph and the maps."""

    @property
    def target(self) -> int: ...
    @property
    def probability(self) -> float: ...
    @property
    def logits(self) -> torch.Tensor: ...
    @property
    def threshold(self) -> float: ...
    @property
    def max_depth(self) -> int | None: ...
    @property
    def top_k(self) -> int | None: ...
    @property
    def contrast(self) -> int | None: ...
    @property
    def layers(self) -> Sequence[Level]: ...
    @property
    def graph(self) -> nx.DiGraph: ...
    @property
    def num_edges(self) -> int: ...

    def layer_map(self, layer: str, *, upsample: bool = False,
                  mode: MapMode = "paper") -> torch.Tensor: ...

    def kernel_map(self, layer: str, kernel: int, *, upsample: bool = False,
                   mode: MapMode = "paper") -> torch.Tensor: ...

    def prefetch_maps(self, layers: list[str] | tuple[str, ...] | None = None, *,
                      mode: MapMode = "paper") -> None: ...


if TYPE_CHECKING:
    def _the_real_pyramid_is_pyramid_like(pyramid: Pyramid) -> PyramidLike:
        return pyramid  # mypy fails here when Pyramid drifts from what render reads


# what check_pyramid looks for (the protocol's members)
_MEMBERS = ("target", "probability", "logits", "layers", "graph", "layer_map", "kernel_map",
            "prefetch_maps")


def check_pyramid(pyramid: object, where: str) -> PyramidLike:
    """``pyramid`` as the interface render reads, or an error naming the call.

    The members are looked up statically: ``hasattr`` would build a real pyramid's cached
    graph just to see that it has one.
    """
    missing = object()
    if any(inspect.getattr_static(pyramid, name, missing) is missing for name in _MEMBERS):
        raise InvalidTypeError(
            f"{where}(pyramid=...) takes an fxcfp Pyramid (from fxcfp.analyze), got "
            f"{type(pyramid).__name__}."
        )
    return cast("PyramidLike", pyramid)  # its members were checked above


def check_alpha(alpha: object, where: str) -> float:
    """``alpha`` as a float in ``[0, 1]``, or an error naming the call."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)):
        raise InvalidTypeError(f"{where}(alpha=...) takes a number, got {type(alpha).__name__}.")
    value = float(alpha)
    if not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(
            f"{where}(alpha={alpha!r}): alpha must lie in [0, 1] (0 shows the frames only, 1 the "
            "heat map only)."
        )
    return value


def check_cmap(cmap: object) -> str:
    """``cmap`` when matplotlib knows it, or an error with names to try."""
    if not isinstance(cmap, str):
        raise InvalidTypeError(f"cmap takes a colormap name, got {type(cmap).__name__}.")
    if cmap not in matplotlib.colormaps:
        raise InvalidArgumentError(
            f"unknown colormap cmap={cmap!r}. Hint: use a name from matplotlib.colormaps, "
            "such as 'jet', 'viridis', 'inferno' or 'turbo'."
        )
    return cmap


def check_maps(maps: object, where: str) -> MapMode:
    """The map mode a picture draws, or an error naming the call and every choice (the words
    of every map-mode check in fxcfp, :func:`fxcfp._evidence.check_choice`)."""
    return "evidence" if check_choice(where, "maps", maps, "a map mode",
                                      MAP_MODE_HELP) == "evidence" else "paper"


@lru_cache(maxsize=32)
def lookup_table(cmap: str) -> np.ndarray:
    """The colormap sampled at 256 evenly spaced points, as ``256 x 3`` ``uint8``."""
    rgba = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))
    table = np.rint(rgba[:, :3] * 255.0).astype(np.uint8)
    table.flags.writeable = False
    return table


def optional_map(pyramid: PyramidLike, layer: str, kernel: int | None = None, *,
                 mode: MapMode, upsample: bool = True) -> torch.Tensor | None:
    """A layer's (or, with ``kernel``, a kernel's) map, or ``None`` where the pyramid has none.

    The pyramid refuses (``InvalidArgumentError``) a layer or kernel at ``max_depth``: it was
    reached but not expanded, so no input channel was selected for it.
    """
    try:
        if kernel is None:
            return pyramid.layer_map(layer, upsample=upsample, mode=mode)
        return pyramid.kernel_map(layer, kernel, upsample=upsample, mode=mode)
    except InvalidArgumentError:
        return None


def figure_title(pyramid: PyramidLike, maps: str, class_name: str | None = None,
                 contrast_name: str | None = None) -> str:
    """Two lines over a figure: the class (and the class it is contrasted with), and which
    maps are drawn, so that a picture never hides its mode."""
    name = class_name or f"class {pyramid.target}"
    if pyramid.contrast is not None:
        name = f"{name}, not {contrast_name or f'class {pyramid.contrast}'}"
    return f"{name}  (p = {float(pyramid.probability):.3f})\n{MODE_WORDS[maps]}"


def level_caption(index: int, layer: Level) -> str:
    """One line about a level, in the words the report's table uses: its place from the class
    (level 0), the kernels kept, the fewest back-steps from the class, its links."""
    steps = "1 back-step" if layer.depth == 1 else f"{layer.depth} back-steps"
    return (f"level {index} · {len(layer.kernels)} of {layer.total} kernels · {steps} · "
            f"{layer.edges} links")


def peak_frame(profile: Sequence[float]) -> int:
    """The frame holding the most of a map; the middle frame of a constant (all-zero) map.

    Example:
        >>> peak_frame([0.1, 0.6, 0.3]), peak_frame([0.0, 0.0, 0.0, 0.0])
        (1, 2)
    """
    mass = np.asarray(profile)
    return int(np.argmax(mass)) if float(mass.max()) > 0 else len(mass) // 2


def slug(name: str) -> str:
    """A file-name-safe form of a layer name (``layer4.1.conv2`` stays as it is).

    Example:
        >>> slug("layer4.1.conv2"), slug("blocks[3]/attn")
        ('layer4.1.conv2', 'blocks_3_attn')
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned[:80] or "layer"
