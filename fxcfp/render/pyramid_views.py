"""A whole pyramid to files: every level drawn over the frames, as stills, GIFs and MP4s.

:func:`render_pyramid` is the one place that turns pyramid levels into pictures;
:func:`fxcfp.render.write_report` builds its HTML page on top of what it writes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from fxcfp._defaults import ANIMATION_FPS
from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp._evidence import DEFAULT_MAPS
from fxcfp.render.figures import contact_sheet, pyramid_figure
from fxcfp.render.frames import resolve_frames
from fxcfp.render.overlay import _check_alpha, _check_cmap, overlay
from fxcfp.render.writers import save_frames_png, save_gif, save_mp4, save_png

__all__ = ["DEFAULT_MAPS", "MAP_MODES", "RenderedLevel", "RenderResult", "render_pyramid"]

FORMATS = ("png", "gif", "mp4")
MAP_MODES = ("evidence", "paper")
_MODE_WORDS = {"evidence": "evidence maps", "paper": "paper maps"}
_FPS = ANIMATION_FPS
# encoder threads; a few are enough to keep zlib, LZW and x264 busy beside the colouring
WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class RenderedLevel:
    """The files of one pyramid level (one layer).

    Attributes:
        layer: The layer's name, as in ``Pyramid.layers``.
        pathway: Index of the model input whose frames the map is drawn over.
        frames: One PNG per frame (empty unless ``"png"`` was among the formats).
        gif: The looping animation, or ``None``.
        mp4: The H.264 video, or ``None``.
        profile: The drawn map's mass per frame, summing to 1 (all zeros for a constant map):
            the pyramid's temporal profile, on the frames it was drawn over.
        peak_frame: The frame holding the most of the map (shown in ``pyramid.png``); the
            middle frame of a constant map.
        drawn: The ``T x H x W x 3`` overlay itself, kept so the report can cut stills from it
            without decoding a file.
    """

    layer: str
    pathway: int
    frames: tuple[Path, ...]
    gif: Path | None
    mp4: Path | None
    profile: tuple[float, ...]
    peak_frame: int
    drawn: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_pyramid` wrote.

    Attributes:
        out_dir: The folder everything was written under.
        levels: One entry per rendered level, in pyramid order (closest to the class first).
        contact_sheet: ``contact_sheet.png``: every level (rows) over evenly spaced frames.
        pyramid: ``pyramid.png``: the levels drawn as a pyramid, each at its peak frame.
        skipped: Layers of the pyramid with no map to draw: their kernels lie at ``max_depth``
            and were not expanded, so no input channel was selected for them.
    """

    out_dir: Path
    levels: tuple[RenderedLevel, ...]
    contact_sheet: Path
    pyramid: Path
    skipped: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written, figures first."""
        paths: list[Path] = [self.contact_sheet, self.pyramid]
        for level in self.levels:
            paths.extend(level.frames)
            paths.extend(p for p in (level.gif, level.mp4) if p is not None)
        return tuple(paths)


def render_pyramid(
    pyramid: Any,
    out_dir: str | os.PathLike[str],
    *,
    frames: np.ndarray | Sequence[np.ndarray] | None = None,
    clip: torch.Tensor | Sequence[torch.Tensor] | None = None,
    mean: Sequence[float] | Sequence[Sequence[float]] | None = None,
    std: Sequence[float] | Sequence[Sequence[float]] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    formats: Sequence[str] = FORMATS,
    max_levels: int | None = None,
    progress: bool = False,
    maps: str = DEFAULT_MAPS,
) -> RenderResult:
    """Draw every level of a pyramid over the clip's frames and write the pictures.

    Each level's layer-wise map (upsampled to the clip) is blended over the frames of the input
    it belongs to; the figures' titles say which map mode is drawn. Written under ``out_dir``: ``levels/NN_<layer>/frame_000.png ...`` (``"png"``),
    ``levels/NN_<layer>.gif`` (``"gif"``), ``levels/NN_<layer>.mp4`` (``"mp4"``), and always
    ``contact_sheet.png`` and ``pyramid.png``.

    Args:
        pyramid: The :class:`fxcfp.Pyramid` to draw.
        out_dir: Folder to write into; created when missing.
        frames: The pixels to draw over: ``T x H x W x 3`` ``uint8`` (the same crop as the clip),
            or a list with one such array per model input. Maps whose size differs from the
            frames' are resampled (linearly) to the frames.
        clip: Instead of ``frames``: the normalised ``C x T x H x W`` clip (or a list, one per
            input), turned into frames with :func:`fxcfp.render.to_frames`.
        mean: The clip's normalisation mean (per channel, or a list of those per input).
        std: The clip's normalisation standard deviation (same forms as ``mean``).
        alpha: Weight of the heat map colour, in ``[0, 1]``.
        cmap: A matplotlib colormap name.
        formats: Which per-level files to write, any of ``"png"``, ``"gif"``, ``"mp4"``.
        max_levels: Draw this many levels, spread from the class to the deepest; ``None``: all.
        progress: Show a tqdm progress bar.
        maps: ``"evidence"`` (the default: the selected channels weighted by each voxel's
            contribution to the class score, ``Pyramid.layer_map(..., mode="evidence")``) or
            ``"paper"`` (SPEC's maps: the selected channels' activations).

    Returns:
        A :class:`RenderResult` listing the files.

    Example:
        >>> import fxcfp  # doctest: +SKIP
        >>> pyramid = fxcfp.analyze(model, clip, threshold=0.6)  # doctest: +SKIP
        >>> result = render_pyramid(pyramid, "out", clip=clip, mean=MEAN, std=STD)  # doctest: +SKIP
        >>> result.pyramid  # doctest: +SKIP
        PosixPath('out/pyramid.png')
    """
    result, _ = render_with_frames(
        pyramid,
        out_dir,
        frames=frames,
        clip=clip,
        mean=mean,
        std=std,
        alpha=alpha,
        cmap=cmap,
        formats=formats,
        max_levels=max_levels,
        progress=progress,
        where="render_pyramid",
        maps=maps,
    )
    return result


def render_with_frames(
    pyramid: Any,
    out_dir: str | os.PathLike[str],
    *,
    frames: Any,
    clip: Any,
    mean: Any,
    std: Any,
    alpha: float,
    cmap: str,
    formats: Sequence[str],
    max_levels: int | None,
    progress: bool,
    where: str,
    class_name: str | None = None,
    contrast_name: str | None = None,
    maps: str = DEFAULT_MAPS,
) -> tuple[RenderResult, list[np.ndarray]]:
    """:func:`render_pyramid`, also handing back the frames of each input (for the report)."""
    alpha = _check_alpha(alpha, where)
    _check_cmap(cmap)
    maps = check_maps(maps, where)
    wanted = _check_formats(formats)
    layers = pyramid_levels(pyramid, max_levels, where=where)
    prefetch = getattr(pyramid, "prefetch_maps", None)
    if callable(prefetch):  # one pass for every level drawn, not one per level
        prefetch([layer.name for layer in layers], mode=maps)
    pixels = resolve_frames(pyramid, frames=frames, clip=clip, mean=mean, std=std, where=where)
    root = Path(out_dir)
    level_dir = root / "levels"
    level_dir.mkdir(parents=True, exist_ok=True)
    title = figure_title(pyramid, maps, class_name, contrast_name)
    # zlib, GIF's LZW and x264 all release the GIL: encode level k while level k+1 is coloured
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        pending = []
        skipped: list[str] = []
        sheet_rows: list[tuple[str, np.ndarray]] = []
        peaks: list[tuple[str, np.ndarray]] = []
        position = {id(layer): i for i, layer in enumerate(pyramid.layers)}
        for layer in tqdm(layers, desc="fxcfp render", unit="level", disable=not progress):
            index = position[id(layer)]  # file names keep the level's place in the pyramid
            pathway = int(getattr(layer, "pathway", 0))
            heat = optional_map(pyramid.layer_map, layer.name, mode=maps)
            if heat is None:
                skipped.append(layer.name)
                continue
            drawn, used = draw_map(heat, pixels[pathway], alpha=alpha, cmap=cmap)
            profile = frame_profile(used)
            peak = peak_frame(profile)
            stem = level_dir / f"{index:02d}_{slug(layer.name)}"
            job = pool.submit(_write_level, drawn, stem, wanted)
            pending.append((layer.name, pathway, profile, peak, job, drawn))
            sheet_rows.append((layer.name, drawn))
            peaks.append((f"{layer.name}\n{level_caption(layer)}", drawn[peak]))
        if not pending:
            raise InvalidArgumentError(
                f"{where}: none of the pyramid's levels has a map to draw (their kernels lie at "
                "max_depth and were not expanded). Hint: raise max_depth in fxcfp.analyze."
            )
        sheet = pool.submit(lambda: save_png(contact_sheet(sheet_rows, title=title),
                                             root / "contact_sheet.png"))
        figure = save_png(pyramid_figure(peaks, title=title), root / "pyramid.png")
        rendered = tuple(
            RenderedLevel(name, pathway, *job.result(), profile, peak, drawn)
            for name, pathway, profile, peak, job, drawn in pending
        )
        sheet_path = sheet.result()
    return RenderResult(root, rendered, sheet_path, figure, tuple(skipped)), pixels


def optional_map(method: Any, *args: Any, mode: str) -> torch.Tensor | None:
    """``method(*args, upsample=True, mode=mode)``, or ``None`` where the pyramid has no map.

    The pyramid refuses (``InvalidArgumentError``) a layer or kernel at ``max_depth``: it was
    reached but not expanded, so no input channel was selected for it.
    """
    try:
        return method(*args, upsample=True, mode=mode)
    except InvalidArgumentError:
        return None


def check_maps(maps: Any, where: str) -> str:
    """The map mode a picture draws, or an error naming the call and the choices."""
    if not isinstance(maps, str) or maps not in MAP_MODES:
        raise InvalidArgumentError(
            f"{where}(maps={maps!r}): unknown map mode; use maps='evidence' (each voxel "
            "weighted by its contribution to the class score) or maps='paper' (SPEC's maps)."
        )
    return maps


def figure_title(pyramid: Any, maps: str, class_name: str | None = None,
                 contrast_name: str | None = None) -> str:
    """Two lines over a figure: the class (and the class it is contrasted with), and which
    maps are drawn, so that a picture never hides its mode."""
    name = class_name or f"class {pyramid.target}"
    contrast = getattr(pyramid, "contrast", None)
    if contrast is not None:
        name = f"{name}, not {contrast_name or f'class {contrast}'}"
    return f"{name}  (p = {float(pyramid.probability):.3f})\n{_MODE_WORDS[maps]}"


def _write_level(
    drawn: np.ndarray, stem: Path, wanted: frozenset[str]
) -> tuple[tuple[Path, ...], Path | None, Path | None]:
    """Write one level's files: ``stem/frame_*.png``, ``stem.gif``, ``stem.mp4`` as wanted."""
    pngs = tuple(save_frames_png(drawn, stem)) if "png" in wanted else ()
    gif = save_gif(drawn, stem.with_name(stem.name + ".gif"), fps=_FPS) if "gif" in wanted else None
    mp4 = save_mp4(drawn, stem.with_name(stem.name + ".mp4"), fps=_FPS) if "mp4" in wanted else None
    return pngs, gif, mp4


def level_caption(layer: Any) -> str:
    """One line about a level: how many kernels were kept, its depth and links."""
    return (
        f"{len(layer.kernels)} of {layer.total} kernels · depth {layer.depth} · {layer.edges} links"
    )


def pyramid_levels(pyramid: Any, max_levels: int | None, *, where: str) -> tuple[Any, ...]:
    """The levels to draw: the pyramid's layers, or ``max_levels`` of them spread evenly from the
    class down to the deepest level, so that a short pyramid still reaches the clip's edges."""
    layers = getattr(pyramid, "layers", None)
    if layers is None or not callable(getattr(pyramid, "layer_map", None)):
        raise InvalidTypeError(
            f"{where}(pyramid=...) takes an fxcfp Pyramid (from fxcfp.analyze), got "
            f"{type(pyramid).__name__}."
        )
    if max_levels is not None:
        if isinstance(max_levels, bool) or not isinstance(max_levels, (int, np.integer)):
            raise InvalidTypeError(f"{where}(max_levels=...) takes an int or None.")
        if max_levels < 1:
            raise InvalidArgumentError(f"{where}(max_levels={max_levels}) must be at least 1.")
    layers = tuple(layers)
    if max_levels is not None and max_levels < len(layers):
        picks = np.unique(np.round(np.linspace(0, len(layers) - 1, max_levels)).astype(int))
        chosen = tuple(layers[i] for i in picks)
    else:
        chosen = layers
    if not chosen:
        raise InvalidArgumentError(
            f"{where}: the pyramid has no levels to draw. Hint: lower the threshold in "
            "fxcfp.analyze so that some kernels pass."
        )
    return chosen


def draw_map(
    heat: torch.Tensor | np.ndarray, frames: np.ndarray, *, alpha: float, cmap: str
) -> tuple[np.ndarray, np.ndarray]:
    """Blend an upsampled map over frames; returns ``(overlaid, the T x H x W map drawn)``.

    A 2D model's ``H x W`` map is one frame. A map whose size differs from the frames' (a slow
    pathway's fewer frames, frames at another resolution) is resampled linearly to them.
    """
    values = heat.detach().cpu().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat)
    values = values.astype(np.float32, copy=False)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise InvalidArgumentError(
            f"expected a T x H x W (or H x W) map from the pyramid, got shape {values.shape}."
        )
    target = frames.shape[:3]
    if values.shape != target and not (values.shape[0] == 1 and values.shape[1:] == target[1:]):
        factors = [t / s for t, s in zip(target, values.shape, strict=True)]
        zoomed = ndimage.zoom(values, factors, order=1, grid_mode=True, mode="nearest")
        # zoom rounds its output size: crop, or repeat the edge, to exactly the frames' size
        zoomed = zoomed[: target[0], : target[1], : target[2]]
        pads = [(0, t - z) for t, z in zip(target, zoomed.shape, strict=True)]
        values = np.clip(np.pad(zoomed, pads, mode="edge"), 0.0, 1.0)
    drawn = overlay(frames, values, alpha=alpha, cmap=cmap)
    if values.shape[0] != drawn.shape[0]:
        values = np.broadcast_to(values, drawn.shape[:3])
    return drawn, values


def frame_profile(heat: np.ndarray) -> tuple[float, ...]:
    """A ``T x H x W`` map's mass per frame, summing to 1 (all zeros for an all-zero map)."""
    mass = heat.reshape(len(heat), -1).sum(axis=1, dtype=np.float64)
    total = float(mass.sum())
    return tuple(float(m) for m in (mass / total if total > 0 else np.zeros_like(mass)))


def peak_frame(profile: Sequence[float]) -> int:
    """The frame holding the most of the map; the middle frame of a constant (all-zero) map."""
    mass = np.asarray(profile)
    return int(np.argmax(mass)) if float(mass.max()) > 0 else len(mass) // 2


def slug(name: str) -> str:
    """A file-name-safe form of a layer name (``layer4.1.conv2`` stays as it is)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned[:80] or "layer"


def _check_formats(formats: Sequence[str]) -> frozenset[str]:
    if isinstance(formats, str):
        formats = (formats,)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InvalidArgumentError(
            f"render_pyramid(formats=...): unknown format(s) {unknown}; choose from {FORMATS}."
        )
    return frozenset(formats)
