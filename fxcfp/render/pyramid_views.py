"""A whole pyramid to files: every level drawn over the frames, as stills, GIFs and MP4s.

:func:`render_pyramid` is the one place that turns pyramid levels into pictures;
:func:`fxcfp.render.write_report` builds its HTML page on top of what it writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp._maps import temporal_profile
from fxcfp.render._common import (
    DEFAULT_MAPS,
    FPS,
    MAP_MODES,
    Level,
    PyramidLike,
    check_alpha,
    check_cmap,
    check_maps,
    check_pyramid,
    figure_title,
    level_caption,
    optional_map,
    peak_frame,
    slug,
)
from fxcfp.render.figures import contact_sheet, pyramid_figure
from fxcfp.render.frames import resolve_frames
from fxcfp.render.overlay import overlay
from fxcfp.render.writers import save_frames_png, save_gif, save_mp4, save_png

if TYPE_CHECKING:
    from fxcfp._pyramid import MapMode

__all__ = ["DEFAULT_MAPS", "MAP_MODES", "DrawOptions", "RenderedLevel", "RenderResult",
           "draw_levels", "figure_title", "pyramid_levels", "render_pyramid"]

FORMATS = ("png", "gif", "mp4")
# encoder threads; a few are enough to keep zlib, LZW and x264 busy beside the colouring
WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class DrawOptions:
    """How the levels are drawn, checked once, in the words of the public call that asked.

    Attributes:
        where: The public call (``"render_pyramid"``, ``"write_report"``), named in errors.
        alpha: Weight of the heat map colour, in ``[0, 1]``.
        cmap: A matplotlib colormap name.
        maps: ``"evidence"`` or ``"paper"``.
        formats: The per-level files to write, a subset of ``("png", "gif", "mp4")``.
        max_levels: Draw this many levels, spread from the class to the deepest; ``None``: all.
        progress: Show a tqdm progress bar.
        class_name: The class's name in the figures' titles (``None``: ``class <index>``).
        contrast_name: The contrast class's name, for a contrastive pyramid.
    """

    where: str
    alpha: float = 0.5
    cmap: str = "jet"
    maps: str = DEFAULT_MAPS
    formats: frozenset[str] = frozenset(FORMATS)
    max_levels: int | None = None
    progress: bool = False
    class_name: str | None = None
    contrast_name: str | None = None

    def __post_init__(self) -> None:
        # a frozen dataclass: the checked values replace the given ones once, here
        object.__setattr__(self, "alpha", check_alpha(self.alpha, self.where))
        check_cmap(self.cmap)
        object.__setattr__(self, "maps", check_maps(self.maps, self.where))
        object.__setattr__(self, "formats", _check_formats(self.formats, self.where))
        _check_max_levels(self.max_levels, self.where)

    @property
    def mode(self) -> MapMode:
        """``maps`` as the pyramid's map-mode type."""
        return check_maps(self.maps, self.where)


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
        peak_frame: The frame holding the most of the map; the middle frame of a constant map.
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
        pyramid: ``pyramid.png``: the levels drawn as a pyramid, all on one frame (``frame``),
            which its title names.
        skipped: Layers of the pyramid with no map to draw: their kernels lie at ``max_depth``
            and were not expanded, so no input channel was selected for them.
        frame: Per model input, the one frame every level is shown on in ``pyramid.png`` (and
            in the report's stills): the frame where the drawn maps together hold the most.
    """

    out_dir: Path
    levels: tuple[RenderedLevel, ...]
    contact_sheet: Path
    pyramid: Path
    skipped: tuple[str, ...] = ()
    frame: tuple[int, ...] = ()

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written, figures first."""
        paths: list[Path] = [self.contact_sheet, self.pyramid]
        for level in self.levels:
            paths.extend(level.frames)
            paths.extend(p for p in (level.gif, level.mp4) if p is not None)
        return tuple(paths)


def render_pyramid(
    pyramid: PyramidLike,
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
    it belongs to; the figures' titles say which map mode is drawn, and ``pyramid.png`` shows
    every level on one frame, which its title names. Written under ``out_dir``:
    ``levels/NN_<layer>/frame_000.png ...`` (``"png"``),
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
        >>> import tempfile, torch, fxcfp
        >>> _ = torch.manual_seed(0)
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
        >>> clip = torch.randn(3, 4, 16, 16)  # normalised with mean 0.45, std 0.225
        >>> pyramid = fxcfp.analyze(model, clip, threshold=0.5)
        >>> result = render_pyramid(pyramid, tempfile.mkdtemp(), clip=clip, mean=[0.45] * 3,
        ...                         std=[0.225] * 3, formats=("mp4",))
        >>> result.pyramid.name, [level.layer for level in result.levels]
        ('pyramid.png', ['4', '0'])
        >>> result.levels[0].mp4.name  # the classifier's map, an H.264 video
        '00_4.mp4'
    """
    options = DrawOptions("render_pyramid", alpha=alpha, cmap=cmap, maps=maps,
                          formats=_as_set(formats), max_levels=max_levels, progress=progress)
    checked = check_pyramid(pyramid, options.where)
    pixels = resolve_frames(checked, frames=frames, clip=clip, mean=mean, std=std,
                            where=options.where)
    return draw_levels(checked, out_dir, pixels, options)


def draw_levels(pyramid: PyramidLike, out_dir: str | os.PathLike[str],
                pixels: Sequence[np.ndarray], options: DrawOptions) -> RenderResult:
    """:func:`render_pyramid` on frames already resolved (one ``T x H x W x 3`` array per
    model input): every level's files, the contact sheet and the pyramid figure.

    The maps of all drawn levels are recorded in one pass first (``Pyramid.prefetch_maps``);
    each level is then drawn once, and that one overlay feeds its files, the contact sheet,
    the pyramid figure and (in :func:`fxcfp.render.write_report`) the page's stills.
    """
    layers = pyramid_levels(pyramid, options.max_levels, where=options.where)
    mode = options.mode
    pyramid.prefetch_maps([layer.name for layer in layers], mode=mode)
    root = Path(out_dir)
    level_dir = root / "levels"
    level_dir.mkdir(parents=True, exist_ok=True)
    title = figure_title(pyramid, options.maps, options.class_name, options.contrast_name)
    position = {id(layer): i for i, layer in enumerate(pyramid.layers)}
    # zlib, GIF's LZW and x264 all release the GIL: encode level k while level k+1 is coloured
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        pending = []
        skipped: list[str] = []
        for layer in tqdm(layers, desc="fxcfp render", unit="level",
                          disable=not options.progress):
            index = position[id(layer)]  # file names keep the level's place in the pyramid
            heat = optional_map(pyramid, layer.name, mode=mode)
            if heat is None:
                skipped.append(layer.name)
                continue
            drawn, used = draw_map(heat, pixels[layer.pathway], alpha=options.alpha,
                                   cmap=options.cmap)
            profile = tuple(temporal_profile(used).tolist())
            stem = level_dir / f"{index:02d}_{slug(layer.name)}"
            job = pool.submit(_write_level, drawn, stem, options.formats)
            pending.append((index, layer, profile, job, drawn))
        if not pending:
            raise InvalidArgumentError(
                f"{options.where}: none of the pyramid's levels has a map to draw (their kernels "
                "lie at max_depth and were not expanded). Hint: raise max_depth in fxcfp.analyze."
            )
        rendered = tuple(
            RenderedLevel(layer.name, layer.pathway, *job.result(), profile,
                          peak_frame(profile), drawn)
            for _, layer, profile, job, drawn in pending
        )
        shown = shared_frames(rendered, pixels)
        sheet_rows = [(f"{index} · {layer.name}", drawn)
                      for index, layer, _, _, drawn in pending]
        sheet = pool.submit(lambda: save_png(contact_sheet(sheet_rows, title=title),
                                             root / "contact_sheet.png"))
        peaks = [(f"{layer.name}\n{level_caption(index, layer)}", drawn[shown[layer.pathway]])
                 for index, layer, _, _, drawn in pending]
        note = _frame_note(shown, pixels)
        figure = save_png(pyramid_figure(peaks, title=f"{title}\n{note}" if note else title),
                          root / "pyramid.png")
        sheet_path = sheet.result()
    return RenderResult(root, rendered, sheet_path, figure, tuple(skipped), tuple(shown))


def shared_frames(levels: Sequence[RenderedLevel], pixels: Sequence[np.ndarray]) -> list[int]:
    """Per input, the frame where the drawn maps together hold the most mass (the middle
    frame where they hold none): the one frame every level is shown on."""
    frames = []
    for pathway, frames_of in enumerate(pixels):
        mass = np.zeros(len(frames_of))
        for level in levels:
            if level.pathway == pathway and len(level.profile) == len(mass):
                mass += np.asarray(level.profile)
        frames.append(peak_frame(mass.tolist()))
    return frames


def _frame_note(shown: Sequence[int], pixels: Sequence[np.ndarray]) -> str:
    """Which frame the pyramid figure shows, in words; empty for an image model (one frame)."""
    if all(len(frames) == 1 for frames in pixels):
        return ""
    spots = [f"frame t={frame} of t=0..{len(frames) - 1}"
             + (f" (input {i})" if len(pixels) > 1 else "")
             for i, (frame, frames) in enumerate(zip(shown, pixels, strict=True))]
    return f"all levels on {', '.join(spots)} (where their maps together peak)"


def _write_level(
    drawn: np.ndarray, stem: Path, wanted: frozenset[str]
) -> tuple[tuple[Path, ...], Path | None, Path | None]:
    """Write one level's files: ``stem/frame_*.png``, ``stem.gif``, ``stem.mp4`` as wanted."""
    pngs = tuple(save_frames_png(drawn, stem)) if "png" in wanted else ()
    gif = save_gif(drawn, stem.with_name(stem.name + ".gif"), fps=FPS) if "gif" in wanted else None
    mp4 = save_mp4(drawn, stem.with_name(stem.name + ".mp4"), fps=FPS) if "mp4" in wanted else None
    return pngs, gif, mp4


def pyramid_levels(pyramid: PyramidLike, max_levels: int | None, *,
                   where: str) -> tuple[Level, ...]:
    """The levels to draw: the pyramid's layers, or ``max_levels`` of them spread evenly from the
    class down to the deepest level, so that a short pyramid still reaches the clip's edges."""
    _check_max_levels(max_levels, where)
    layers = tuple(check_pyramid(pyramid, where).layers)
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


def _check_max_levels(max_levels: object, where: str) -> None:
    if max_levels is None:
        return
    if isinstance(max_levels, bool) or not isinstance(max_levels, (int, np.integer)):
        raise InvalidTypeError(f"{where}(max_levels=...) takes an int or None.")
    if max_levels < 1:
        raise InvalidArgumentError(f"{where}(max_levels={max_levels}) must be at least 1.")


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


def _as_set(formats: Sequence[str]) -> frozenset[str]:
    return frozenset((formats,) if isinstance(formats, str) else formats)


def _check_formats(formats: frozenset[str], where: str) -> frozenset[str]:
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InvalidArgumentError(
            f"{where}(formats=...): unknown format(s) {unknown}; choose from {FORMATS}."
        )
    return frozenset(formats)
