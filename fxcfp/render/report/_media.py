"""The report's pictures: each written once beside the page and embedded (or linked) once, the
kernels' stills drawn together, the temporal-profile bars and the colour bar."""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from fxcfp._maps import upsample
from fxcfp.render._common import PyramidLike, lookup_table, optional_map, slug
from fxcfp.render._report_assets import data_uri
from fxcfp.render.overlay import overlay
from fxcfp.render.report._graph import ShownKernel

if TYPE_CHECKING:
    from fxcfp._pyramid import MapMode

__all__ = ["Media", "colorbar", "kernel_pictures", "profile_bars"]

_WEBP_QUALITY = 82
# libwebp's fastest method: a still of a few hundred pixels square encodes in about a millisecond
_WEBP_METHOD = 0
# the temporal profile's bar chart, px
_PROFILE_W, _PROFILE_H, _PROFILE_GAP = 240, 44, 1
_COLORBAR_STOPS = 11  # 0, 0.1, ..., 1


class Media:
    """Every picture goes to a file beside the report, and into the page once: as a data URI
    (``embed``) or as that file's relative address."""

    def __init__(self, root: Path, embed: bool) -> None:
        self.root = root
        self.embed = embed
        self.written: list[str] = []

    def webp(self, frame: np.ndarray, name: str) -> str:
        """Write one ``H x W x 3`` still as ``name`` (WebP) and return its ``src``."""
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame)).save(
            buffer, format="WEBP", quality=_WEBP_QUALITY, method=_WEBP_METHOD)
        data = buffer.getvalue()
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.written.append(name)
        return self._src(data, "image/webp", name)

    def file(self, path: Path, mime: str) -> str:
        """The ``src`` of a file already written under the report's folder."""
        name = path.relative_to(self.root).as_posix()
        return self._src(path.read_bytes() if self.embed else b"", mime, name)

    def _src(self, data: bytes, mime: str, name: str) -> str:
        return data_uri(data, mime) if self.embed else name


def kernel_pictures(
    pyramid: PyramidLike,
    kernels: Sequence[ShownKernel],
    drawn: set[str],
    pixels: Sequence[np.ndarray],
    shared: Sequence[int],
    media: Media,
    *,
    alpha: float,
    cmap: str,
    mode: MapMode,
) -> dict[str, str]:
    """A still of each shown kernel's map on the shared frame, for the levels drawn.

    The still is the kernel-wise map at the layer's own time step nearest the shared frame,
    upsampled in space with the pyramid's cubic spline (``fxcfp._maps.upsample``) and scaled to
    ``[0, 1]`` on its own: one frame is drawn, so only one frame is upsampled, instead of the
    whole clip for every kernel. The stills of one input are coloured and blended over its
    shared frame in one call.
    """
    pathway_of = {layer.name: layer.pathway for layer in pyramid.layers}
    heats: dict[int, list[tuple[ShownKernel, torch.Tensor]]] = {}
    for node in kernels:
        if node.is_input or node.layer not in drawn:
            continue
        raw = optional_map(pyramid, node.layer, node.channel, mode=mode, upsample=False)
        if raw is None:  # at max_depth: reached, not expanded
            continue
        pathway = pathway_of[node.layer]
        frames = pixels[pathway]
        frame = min(shared[pathway], len(frames) - 1)
        raw = raw.detach().to("cpu", torch.float32)
        if raw.dim() == 3:  # T x H x W: the time step under the shared frame
            step = round(frame * (raw.shape[0] - 1) / max(len(frames) - 1, 1))
            raw = raw[step]
        size = tuple(frames.shape[1:3])
        heat = upsample(raw, size) if raw.dim() == 2 else torch.zeros(size)
        heats.setdefault(pathway, []).append((node, heat))
    pictures = {}
    for pathway, items in heats.items():
        frames = pixels[pathway]
        frame = min(shared[pathway], len(frames) - 1)
        stack = torch.stack([heat for _, heat in items]).numpy()
        # one frame under N maps: overlay repeats the frame over the maps
        stills = overlay(frames[frame: frame + 1], stack, alpha=alpha, cmap=cmap)
        for (node, _), still in zip(items, stills, strict=True):
            pictures[node.key] = media.webp(still, f"kernels/{slug(node.layer)}_{node.channel}.webp")
    return pictures


def profile_bars(profile: Sequence[float], peak: int) -> dict[str, Any]:
    """The bars of a level's temporal profile, the peak frame marked."""
    mass = np.asarray(profile, dtype=np.float64)
    width, height, gap = _PROFILE_W, _PROFILE_H, _PROFILE_GAP
    count = max(len(mass), 1)
    bar = max((width - gap * (count - 1)) / count, 1.0)
    top = float(mass.max(initial=0.0))
    bars = []
    for t, value in enumerate(mass):
        h = 0.0 if top <= 0 else float(value) / top * (height - 2)
        bars.append({"x": t * (bar + gap), "y": height - h, "w": bar, "h": max(h, 0.5),
                     "value": float(value), "peak": t == peak and top > 0, "t": t})
    return {"bars": bars, "width": width, "height": height, "last": count - 1}


@lru_cache(maxsize=8)
def colorbar(cmap: str) -> list[tuple[float, str]]:
    """The colour bar's stops: ``(value, "#rrggbb")`` from 0 to 1."""
    table = lookup_table(cmap)
    last = _COLORBAR_STOPS - 1
    return [(i / last, "#{:02x}{:02x}{:02x}".format(*table[round(i / last * 255)]))
            for i in range(_COLORBAR_STOPS)]
