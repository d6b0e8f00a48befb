"""One self-contained HTML page that explains a prediction with its Class Feature Pyramid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render._graph_view import data_uri, kernel_graph
from fxcfp.render._report_assets import CSS, SCRIPT
from fxcfp.render._svg import GraphRow, graph_svg, profile_svg
from fxcfp.render.pyramid_views import (
    DEFAULT_MAPS,
    FORMATS,
    RenderResult,
    check_maps,
    level_caption,
    pyramid_levels,
)
from fxcfp.render.pyramid_views import render_with_frames as _render

__all__ = ["write_report"]

_TOP = 5
# what a level's map shows, said on the page beside the pictures
_MAP_WORDS = {
    "evidence": (
        "evidence maps: the level's selected channels, each voxel weighted by its own "
        "first-order contribution to the class score (gradient × activation, one backward "
        "pass), counted once per kernel above that relies on the channel; only voxels that "
        "raise the score are shown"
    ),
    "paper": (
        "paper maps (SPEC): the activations of the level's selected channels, counted once "
        "per kernel above that relies on the channel; they show where the layer fires, the "
        "same for every class"
    ),
}


def write_report(
    pyramid: Any,
    out_dir: str | os.PathLike[str],
    *,
    frames: np.ndarray | Sequence[np.ndarray] | None = None,
    clip: torch.Tensor | Sequence[torch.Tensor] | None = None,
    mean: Sequence[float] | Sequence[Sequence[float]] | None = None,
    std: Sequence[float] | Sequence[Sequence[float]] | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    max_kernels_per_layer: int = 8,
    max_levels: int | None = None,
    progress: bool = False,
    maps: str = DEFAULT_MAPS,
) -> Path:
    """Write ``report.html``, a single file that opens offline, plus the pictures beside it.

    The page shows the prediction and the top-5 classes, every pyramid level as an animated
    overlay with its temporal profile (the map's mass per frame), the pyramid figure and contact
    sheet, the pyramid's summary, and the class dependency graph level by level: clicking a
    kernel shows its kernel-wise map and highlights the kernels it depends on. Every image is
    embedded as a data URI and the style and script are inline, so the file can be mailed or
    archived alone. The PNG frames, GIFs, MP4s, ``contact_sheet.png`` and ``pyramid.png`` of
    :func:`fxcfp.render.render_pyramid` are written to ``out_dir`` as well.

    Args:
        pyramid: The :class:`fxcfp.Pyramid` to explain.
        out_dir: Folder to write into; created when missing.
        frames: ``T x H x W x 3`` ``uint8`` pixels to draw over (or one array per model input).
        clip: Instead of ``frames``: the normalised ``C x T x H x W`` clip (or one per input).
        mean: The clip's normalisation mean (per channel, or one list per input).
        std: The clip's normalisation standard deviation.
        labels: Class names, one per model output; ``None`` shows class indices.
        alpha: Weight of the heat map colour, in ``[0, 1]``.
        cmap: A matplotlib colormap name.
        max_kernels_per_layer: The graph shows at most this many kernels per layer, the
            highest-scoring ones.
        max_levels: Show this many levels, spread from the class to the deepest; ``None``: all.
        progress: Show tqdm progress bars.
        maps: ``"evidence"`` (default) or ``"paper"``: which maps every picture draws (see
            :func:`fxcfp.render.render_pyramid`); the page says which. For a contrastive
            pyramid (``fxcfp.analyze(..., contrast=...)``) the page adds a "why A and not B"
            panel.

    Returns:
        The path of ``report.html``.

    Example:
        >>> import fxcfp  # doctest: +SKIP
        >>> pyramid = fxcfp.analyze(model, clip, threshold=0.6)  # doctest: +SKIP
        >>> write_report(pyramid, "out", clip=clip, mean=MEAN, std=STD)  # doctest: +SKIP
        PosixPath('out/report.html')
    """
    probabilities = torch.softmax(
        torch.as_tensor(pyramid.logits).detach().to("cpu", torch.float64).reshape(-1), dim=0
    )
    names = _class_names(labels, len(probabilities))
    if isinstance(max_kernels_per_layer, bool) or not isinstance(
        max_kernels_per_layer, (int, np.integer)
    ):
        raise InvalidTypeError("write_report(max_kernels_per_layer=...) takes an int.")
    if max_kernels_per_layer < 1:
        raise InvalidArgumentError(
            f"write_report(max_kernels_per_layer={max_kernels_per_layer}) must be at least 1."
        )
    maps = check_maps(maps, "write_report")
    target_name = names[int(pyramid.target)]
    contrast = getattr(pyramid, "contrast", None)
    contrast_name = None if contrast is None else names[int(contrast)]
    result, pixels = _render(
        pyramid,
        out_dir,
        frames=frames,
        clip=clip,
        mean=mean,
        std=std,
        alpha=alpha,
        cmap=cmap,
        formats=FORMATS,
        max_levels=max_levels,
        progress=progress,
        where="write_report",
        class_name=target_name,
        contrast_name=contrast_name,
        maps=maps,
    )
    # every chosen level, drawn or not: a level at max_depth has kernels but no map
    layers = pyramid_levels(pyramid, max_levels, where="write_report")
    graph = pyramid.graph
    rows, edges, panels = kernel_graph(
        pyramid, graph, layers, pixels, int(max_kernels_per_layer), alpha, cmap, progress, maps
    )
    page = "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(target_name)} · Class Feature Pyramid</title>",
            f"<style>{CSS}</style></head><body>",
            _hero(pyramid, probabilities, names, len(layers), maps),
            "<main>",
            _contrast_section(pyramid, probabilities, names, result),
            _figures_section(result, maps),
            _levels_section(tuple(pyramid.layers), result, maps),
            _graph_section(rows, edges, panels, target_name, cmap),
            _summary_section(pyramid, tuple(pyramid.layers), result.skipped),
            _footer(result),
            f"</main><script>{SCRIPT}</script></body></html>\n",
        ]
    )
    path = Path(out_dir) / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _class_names(labels: Sequence[str] | None, count: int) -> list[str]:
    if labels is None:
        return [f"class {i}" for i in range(count)]
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise InvalidTypeError(
            f"write_report(labels=...) takes a list of class names, got {type(labels).__name__}."
        )
    if len(labels) != count:
        raise InvalidArgumentError(
            f"write_report(labels=...) has {len(labels)} names but the model has {count} "
            "classes; pass one name per output."
        )
    return [str(name) for name in labels]


def _hero(pyramid: Any, probabilities: torch.Tensor, names: list[str], levels: int,
          maps: str) -> str:
    target = int(pyramid.target)
    contrast = getattr(pyramid, "contrast", None)
    versus = "" if contrast is None else (
        f'<p class="meta">and not <strong>{escape(names[int(contrast)])}</strong>: a '
        "contrastive pyramid</p>")
    top = torch.topk(probabilities, min(_TOP, len(probabilities)))
    depth = "none" if pyramid.max_depth is None else str(pyramid.max_depth)
    rows = []
    for prob, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        mark = ' class="target"' if index == target else ""
        rows.append(
            f"<tr{mark}><td>{escape(names[index])}</td><td>{prob:.3f}</td>"
            f'<td><span class="bar" style="width:{max(prob * 160, 2):.0f}px"></span></td></tr>'
        )
    return (
        '<header class="hero"><div><h1>Class Feature Pyramid</h1>'
        f'<p class="prediction">{escape(names[target])}</p>{versus}'
        f'<p class="meta">probability {float(pyramid.probability):.3f} · threshold '
        f"{float(pyramid.threshold):g} · max depth {depth} · {levels} levels</p>"
        f'<p class="meta maps">drawn: <strong>{maps} maps</strong> — '
        f"{escape(_MAP_WORDS[maps].split(': ', 1)[1])}</p></div>"
        '<table class="top5"><tr><th>top classes</th><th>p</th><th></th></tr>'
        f"{''.join(rows)}</table></header>"
    )


def _figures_section(result: RenderResult, maps: str) -> str:
    pyramid_png = data_uri(result.pyramid.read_bytes(), "image/png")
    sheet_png = data_uri(result.contact_sheet.read_bytes(), "image/png")
    return (
        '<section id="pyramid"><h2>The pyramid</h2><p class="lead">Each level is one layer, '
        "the one closest to the class on top, drawn over the frame where its map is "
        f"strongest. The maps are {escape(_MAP_WORDS[maps])}. A classifier is drawn on the "
        "tensor before its global pool. The contact sheet shows every level over the whole "
        "clip.</p>"
        '<div class="figures">'
        f'<figure><img alt="the class feature pyramid" src="{pyramid_png}">'
        "<figcaption>pyramid.png</figcaption></figure>"
        f'<figure><img alt="contact sheet of every level over time" src="{sheet_png}">'
        "<figcaption>contact_sheet.png</figcaption></figure></div></section>"
    )


def _levels_section(layers: Sequence[Any], result: RenderResult, maps: str) -> str:
    by_name = {layer.name: (index, layer) for index, layer in enumerate(layers)}
    multi = len({level.pathway for level in result.levels}) > 1
    cards = []
    for level in result.levels:
        index, layer = by_name[level.layer]
        # a constant map has no strongest frame to point at
        peak = level.peak_frame if any(level.profile) else None
        gif = data_uri(level.gif.read_bytes(), "image/gif") if level.gif else ""
        pathway = f" · input {level.pathway}" if multi else ""
        cards.append(
            f'<div class="card"><h3><span class="level-index">{index}</span>'
            f"{escape(layer.name)}</h3>"
            f'<p class="caption">{escape(level_caption(layer))}{pathway}</p>'
            f'<img class="anim" alt="layer-wise map of {escape(layer.name)}" src="{gif}">'
            f"{profile_svg(level.profile, peak=peak)}</div>"
        )
    skipped = ""
    if result.skipped:
        names = ", ".join(escape(name) for name in result.skipped)
        skipped = (
            f'<p class="lead">Not drawn: {names}. Their kernels lie at max_depth and were not '
            "expanded, so no input channel was selected for them.</p>"
        )
    return (
        '<section id="levels"><h2>Levels</h2><p class="lead">The layer-wise map of every level '
        f"({maps} maps) over the clip, and below it the map's mass per frame (the strongest "
        "frame in red).</p>"
        f'<div class="cards">{"".join(cards)}</div>{skipped}</section>'
    )


def _contrast_section(pyramid: Any, probabilities: torch.Tensor, names: list[str],
                      result: RenderResult) -> str:
    """The "why A and not B" panel of a contrastive pyramid (nothing for a plain one)."""
    contrast = getattr(pyramid, "contrast", None)
    if contrast is None:
        return ""
    target, contrast = int(pyramid.target), int(contrast)
    logits = torch.as_tensor(pyramid.logits).detach().to("cpu", torch.float64).reshape(-1)
    a, b = escape(names[target]), escape(names[contrast])
    top = result.levels[0] if result.levels else None
    picture = ""
    if top is not None and top.gif is not None:
        picture = (f'<img class="anim" alt="where {a} gains over {b}" '
                   f'src="{data_uri(top.gif.read_bytes(), "image/gif")}">')
    rows = "".join(
        f"<tr><td>{escape(layer.name)}</td><td class=\"num\">{len(layer.kernels)}</td>"
        f'<td class="num">{layer.total}</td></tr>'
        for layer in tuple(pyramid.layers)[:6]
    )
    return (
        f'<section id="contrast"><h2>Why {a} and not {b}</h2><p class="lead">{a}: logit '
        f"{float(logits[target]):.3f}, p = {float(probabilities[target]):.3f}; {b}: logit "
        f"{float(logits[contrast]):.3f}, p = {float(probabilities[contrast]):.3f}. The class "
        "level keeps the classifier's input channels whose pooled activation times the "
        f"difference of the two classes' weights (w<sub>{a}</sub> − w<sub>{b}</sub>) is "
        "high: the channels that raise the logit difference. The levels below follow them "
        "down as the paper does, and the evidence maps differentiate the logit difference, "
        f"so they show where the clip speaks for {a} more than for {b}.</p>"
        f'<div class="figures">{picture}<table class="layers"><tr><th>level</th>'
        f"<th>kept</th><th>kernels</th></tr>{rows}</table></div></section>"
    )


def _summary_section(pyramid: Any, layers: Sequence[Any], skipped: Sequence[str]) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{escape(layer.name)}"
        f"{' (not expanded)' if layer.name in skipped else ''}</td>"
        f'<td class="num">{len(layer.kernels)}</td><td class="num">{layer.total}</td>'
        f'<td class="num">{layer.depth}</td><td class="num">{layer.edges}</td>'
        f'<td class="num">{getattr(layer, "pathway", 0)}</td></tr>'
        for i, layer in enumerate(layers)
    )
    return (
        '<section id="summary"><h2>Summary</h2><table class="layers"><tr><th>level</th>'
        "<th>layer</th><th>kept</th><th>kernels</th><th>depth</th><th>links</th>"
        f"<th>input</th></tr>{rows}</table>"
        f'<pre class="summary">{escape(str(pyramid.summary()))}</pre></section>'
    )


def _graph_section(
    rows: list[GraphRow],
    edges: list[tuple[str, str, float]],
    panels: list[str],
    target_name: str,
    cmap: str,
) -> str:
    return (
        '<section id="graph-section"><h2>Class dependency graph</h2><p class="lead">Each row '
        "is a level; each circle a kernel kept for the class (colour: its score), joined to "
        "the kernels it depends on in the layers below. Click a kernel to see its kernel-wise "
        'map and light up what it depends on.</p><div class="graph-layout"><div class="graph-box">'
        f"{graph_svg(rows, edges, class_title=target_name, cmap=cmap)}</div>"
        '<aside class="panel"><p id="kernel-hint">Click a kernel in the graph to see its map '
        f"and the kernels it depends on.</p>{''.join(panels)}</aside></div></section>"
    )


def _footer(result: RenderResult) -> str:
    root = result.out_dir
    names = [path.relative_to(root).as_posix() for path in (result.pyramid, result.contact_sheet)]
    for level in result.levels:
        names += [p.relative_to(root).as_posix() for p in (level.gif, level.mp4) if p is not None]
        if level.frames:
            names.append(level.frames[0].parent.relative_to(root).as_posix() + "/frame_*.png")
    listed = "".join(f"<li><code>{escape(name)}</code></li>" for name in names)
    return f"<footer>Written beside this report:<ul>{listed}</ul></footer>"
