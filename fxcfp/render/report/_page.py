"""One self-contained HTML page that explains a prediction with its Class Feature Pyramid.

The page is drawn from Jinja2 templates shipped in ``fxcfp/render/templates`` (markup, style
and script each in its own file); this module computes what they show: what is explained
(model, weights, input, options), the levels as H.264 videos with one still frame shared by
all of them, the class dependency graph laid out by Graphviz, and one table of levels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp._files import atomic_write
from fxcfp.render._common import DEFAULT_MAPS, FPS, Level, PyramidLike, check_pyramid, slug
from fxcfp.render._report_assets import asset, render
from fxcfp.render.frames import resolve_frames
from fxcfp.render.pyramid_views import DrawOptions, RenderResult, draw_levels
from fxcfp.render.report._facts import (
    RANDOM_WEIGHTS,
    asked,
    banner,
    class_names,
    contrast_section,
    facts,
    top_classes,
)
from fxcfp.render.report._graph import choose_kernels, graph_rows, layout, node_view, panel
from fxcfp.render.report._media import Media, colorbar, kernel_pictures, profile_bars

__all__ = ["write_report"]

# an edge's opacity grows with its gate score, from _EDGE_FAINT to _EDGE_FAINT + _EDGE_SPAN
_EDGE_FAINT, _EDGE_SPAN = 0.2, 0.6
# what a level's map shows, said on the page beside the pictures
_MAP_WORDS = {
    "evidence": (
        "the level's selected channels, each voxel weighted by its own first-order "
        "contribution to the class score (gradient × activation, one backward pass), counted "
        "once per kernel above that relies on the channel; only voxels that raise the score "
        "are shown"
    ),
    "paper": (
        "the activations of the level's selected channels (SPEC), counted once per kernel "
        "above that relies on the channel; they show where the layer fires, the same for "
        "every class"
    ),
}
_SCALE = (
    "Each map is scaled on its own: 0 is its weakest place, 1 its strongest. Colours compare "
    "places within one map, not one map with another."
)


def write_report(
    pyramid: PyramidLike,
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
    identity: Mapping[str, Any] | None = None,
    embed: bool = True,
    graph_engine: str = "auto",
    maps: str = DEFAULT_MAPS,
) -> Path:
    """Write ``report.html``, a single file that opens offline, plus the pictures beside it.

    The page says what it explains (model, weights, input, preprocessing, options, versions;
    a banner where the weights are random), shows the prediction and the top-5 classes, every
    drawn level as a looping H.264 video with its temporal profile (a still for an image model),
    the pyramid as one still per level on one shared frame, the class dependency graph of every
    level (Graphviz layout, pan and zoom, collapsible rows; a click shows a kernel's map, what
    it depends on and what uses it), and one table of the levels. Videos are written to
    ``levels/*.mp4`` and stills to ``levels/*.webp`` and ``kernels/*.webp``; each is embedded
    once (``embed=True``) or linked (``embed=False``: keep the folder together).

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
        max_kernels_per_layer: The graph shows at most this many kernels per level.
        max_levels: Draw this many levels' maps, spread from the class to the deepest;
            ``None``: all. The graph shows every level either way.
        progress: Show tqdm progress bars.
        identity: What the report explains, as :func:`fxcfp.cli.identity` records it (keys
            ``model``, ``weights``, ``input``, ``preprocessing``, ``options``, ``versions``,
            ``device``, ``timings``); without it the page says the model and weights are not
            stated.
        embed: Embed every video and picture (one self-contained file), or link the files.
        graph_engine: ``"auto"`` (Graphviz ``dot`` where installed), ``"dot"`` or ``"plain"``.
        maps: ``"evidence"`` (default) or ``"paper"``: which maps every picture draws (see
            :func:`fxcfp.render.render_pyramid`); the page says which. For a contrastive
            pyramid (``fxcfp.analyze(..., contrast=...)``) the page adds a "why A and not B"
            section.

    Returns:
        The path of ``report.html``.

    Example:
        >>> import tempfile, torch, fxcfp
        >>> _ = torch.manual_seed(0)
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
        >>> clip = torch.randn(3, 4, 16, 16)  # normalised with mean 0.45, std 0.225
        >>> pyramid = fxcfp.analyze(model, clip, threshold=0.5)
        >>> path = write_report(pyramid, tempfile.mkdtemp(), clip=clip, mean=[0.45] * 3,
        ...                     std=[0.225] * 3, graph_engine="plain")
        >>> path.name, "random weights" in path.read_text(encoding="utf-8")
        ('report.html', False)
    """
    checked = check_pyramid(pyramid, "write_report")
    probabilities = torch.softmax(
        torch.as_tensor(checked.logits).detach().to("cpu", torch.float64).reshape(-1), dim=0
    )
    names = class_names(labels, len(probabilities))
    if isinstance(max_kernels_per_layer, bool) or not isinstance(
        max_kernels_per_layer, (int, np.integer)
    ):
        raise InvalidTypeError("write_report(max_kernels_per_layer=...) takes an int.")
    if max_kernels_per_layer < 1:
        raise InvalidArgumentError(
            f"write_report(max_kernels_per_layer={max_kernels_per_layer}) must be at least 1."
        )
    if graph_engine not in ("auto", "dot", "plain"):
        raise InvalidArgumentError(
            f"write_report(graph_engine={graph_engine!r}): choose 'auto', 'dot' or 'plain'."
        )
    target_name = names[int(checked.target)]
    options = DrawOptions(
        "write_report", alpha=alpha, cmap=cmap, maps=maps, formats=frozenset({"mp4"}),
        max_levels=max_levels, progress=progress, class_name=target_name,
        contrast_name=None if checked.contrast is None else names[int(checked.contrast)])
    pixels = resolve_frames(checked, frames=frames, clip=clip, mean=mean, std=std,
                            where=options.where)
    result = draw_levels(checked, out_dir, pixels, options)
    root = Path(out_dir)
    image = all(len(p) == 1 for p in pixels)
    media = Media(root, embed)
    layers = tuple(checked.layers)
    index_of = {layer.name: i for i, layer in enumerate(layers)}
    # one frame for every still, the pyramid figure's: where the drawn maps together peak
    shared = list(result.frame)
    levels = _level_views(result, layers, index_of, shared, media, image)
    # the graph: every level, not only the drawn ones
    graph = checked.graph
    rows, edges = choose_kernels(graph, layers, int(max_kernels_per_layer))
    titles = [f"{i} · {layer.name}" for i, layer in enumerate(layers)]
    titles += [row[0].layer for row in rows[len(layers):]]
    placed = layout(rows, titles, edges, engine=graph_engine)
    drawn_names = {level.layer for level in result.levels}
    kernels = [node for row in rows for node in row]
    pictures = kernel_pictures(checked, kernels, drawn_names, pixels, shared, media,
                               alpha=options.alpha, cmap=cmap, mode=options.mode)
    shown = {k.key: k for k in kernels}
    skipped = set(result.skipped)
    panels = [panel(graph, node, pictures.get(node.key), shown, index_of, skipped | drawn_names)
              for node in kernels if not node.is_input]
    context = {
        "title": f"{target_name} · Class Feature Pyramid",
        "maps": options.maps,
        "map_words": _MAP_WORDS[options.maps],
        "contrast": contrast_section(checked, probabilities, names, levels),
        "target": target_name,
        "probability": float(checked.probability),
        "asked": asked(identity),
        "top": top_classes(probabilities, names, int(checked.target)),
        "banner": banner(identity),
        "random_weights": RANDOM_WEIGHTS,
        "facts": facts(identity, checked, image),
        "levels": levels,
        "image": image,
        "multi": len({level["pathway"] for level in levels}) > 1,
        "frames": [len(p) for p in pixels],
        "fps": FPS,
        "shared": shared,
        "colorbar": colorbar(cmap),
        "scale": _SCALE,
        "rows": graph_rows(rows, titles, placed),
        "edges": [{"source": e.source, "target": e.target, "score": e.score, "path": e.path,
                   "opacity": _EDGE_FAINT + _EDGE_SPAN * max(0.0, min(1.0, e.score))}
                  for e in placed.edges],
        "graph": placed,
        "nodes": [node_view(node, placed, cmap, node.key in pictures) for node in kernels],
        "panels": panels,
        "kernels_per_level": int(max_kernels_per_layer),
        "summary": _summary(checked, layers, drawn_names, result.skipped),
        "skipped": result.skipped,
        "files": _files(root, result, media),
        "embed": embed,
        "script": asset("report.js"),
    }
    page = render("report.html.j2", "write_report", **context)
    path = root / "report.html"
    with atomic_write(path) as file:
        file.write(page)
    return path


def _level_views(result: RenderResult, layers: Sequence[Level], index_of: Mapping[str, int],
                 shared: Sequence[int], media: Media, image: bool) -> list[dict[str, Any]]:
    """Each drawn level as the page shows it: its video (none for an image model), its still
    on the shared frame (cut from the overlay already drawn) and its temporal profile."""
    levels = []
    for level in result.levels:
        index = index_of[level.layer]
        layer = layers[index]
        frame = shared[level.pathway]
        assert level.drawn is not None  # draw_levels keeps every overlay it draws
        still = media.webp(level.drawn[frame], f"levels/{index:02d}_{slug(level.layer)}.webp")
        levels.append({
            "index": index, "name": layer.name, "pathway": level.pathway,
            "kept": len(layer.kernels), "total": layer.total, "edges": layer.edges,
            "video": None if image or level.mp4 is None else media.file(level.mp4, "video/mp4"),
            "still": still, "frame": frame,
            "profile": profile_bars(level.profile, level.peak_frame),
        })
    return levels


# --- the table and the files ------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    index: int
    name: str
    kept: int
    total: int
    steps: int
    links: int
    pathway: int
    drawn: bool
    expanded: bool


def _summary(pyramid: PyramidLike, layers: Sequence[Level], drawn: set[str],
             skipped: Sequence[str]) -> dict[str, Any]:
    rows = [_Row(i, layer.name, len(layer.kernels), layer.total, layer.depth, layer.edges,
                 layer.pathway, layer.name in drawn, layer.name not in skipped)
            for i, layer in enumerate(layers)]
    kept = sum(row.kept for row in rows)
    return {"rows": rows, "kept": kept,
            "edges": int(pyramid.num_edges or sum(row.links for row in rows)),
            "multi": len({row.pathway for row in rows}) > 1}


def _files(root: Path, result: RenderResult, media: Media) -> list[str]:
    names = [p.relative_to(root).as_posix() for p in (result.pyramid, result.contact_sheet)]
    names += [level.mp4.relative_to(root).as_posix() for level in result.levels if level.mp4]
    names += sorted(set(media.written))
    return names
