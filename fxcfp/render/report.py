"""One self-contained HTML page that explains a prediction with its Class Feature Pyramid.

The page is drawn from Jinja2 templates shipped in ``fxcfp/render/templates`` (markup, style
and script each in its own file); this module computes what they show: what is explained
(model, weights, input, options), the levels as H.264 videos with one still frame shared by
all of them, the class dependency graph laid out by Graphviz, and one table of levels.
"""

from __future__ import annotations

import base64
import io
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fxcfp._defaults import TOP_CLASSES
from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp._files import atomic_write
from fxcfp.render._graph_view import ShownKernel, choose_kernels, layout
from fxcfp.render.overlay import _lookup_table
from fxcfp.render.pyramid_views import (
    _FPS,
    DEFAULT_MAPS,
    check_maps,
    draw_map,
    pyramid_levels,
    slug,
)
from fxcfp.render.pyramid_views import render_with_frames as _render

__all__ = ["write_report", "RANDOM_WEIGHTS"]

_TOP = TOP_CLASSES
# the banner a report of an untrained model carries, whatever it is mailed on as
RANDOM_WEIGHTS = "random weights — not an explanation of a trained model"
_WEBP_QUALITY = 82
# libwebp's fastest method: a still of a few hundred pixels square encodes in about a millisecond
# a panel lists this many linked kernels before summing up the rest
_LIST_LIMIT = 40
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
    if graph_engine not in ("auto", "dot", "plain"):
        raise InvalidArgumentError(
            f"write_report(graph_engine={graph_engine!r}): choose 'auto', 'dot' or 'plain'."
        )
    maps = check_maps(maps, "write_report")
    target_name = names[int(pyramid.target)]
    contrast = getattr(pyramid, "contrast", None)
    contrast_name = None if contrast is None else names[int(contrast)]
    result, pixels = _render(
        pyramid, out_dir, frames=frames, clip=clip, mean=mean, std=std, alpha=alpha,
        cmap=cmap, formats=("mp4",), max_levels=max_levels, progress=progress,
        where="write_report", class_name=target_name, contrast_name=contrast_name, maps=maps,
    )
    root = Path(out_dir)
    image = all(len(p) == 1 for p in pixels)
    media = _Media(root, embed)
    layers = tuple(pyramid.layers)
    index_of = {layer.name: i for i, layer in enumerate(layers)}
    # one frame for every still: the frame holding the most of all drawn maps, per input
    shared = _shared_frames(result.levels, pixels)
    levels = []
    for level in result.levels:
        layer = layers[index_of[level.layer]]
        frame = shared[level.pathway]
        assert level.drawn is not None  # _render keeps every overlay it draws
        still = media.webp(level.drawn[frame], f"levels/{index_of[level.layer]:02d}_"
                           f"{slug(level.layer)}.webp")
        levels.append({
            "index": index_of[level.layer], "name": layer.name, "pathway": level.pathway,
            "kept": len(layer.kernels), "total": layer.total, "edges": layer.edges,
            "video": None if image or level.mp4 is None else media.file(level.mp4, "video/mp4"),
            "still": still, "frame": frame, "profile": _profile(level.profile, level.peak_frame),
        })
    # the graph: every level, not only the drawn ones
    graph = pyramid.graph
    pyramid_levels(pyramid, None, where="write_report")
    rows, edges = choose_kernels(graph, layers, int(max_kernels_per_layer))
    titles = [f"{i} · {layer.name}" for i, layer in enumerate(layers)]
    titles += [row[0].layer for row in rows[len(layers):]]
    placed = layout(rows, titles, edges, engine=graph_engine)
    drawn_names = {level.layer for level in result.levels}
    kernels = [node for row in rows for node in row]
    pictures = _kernel_pictures(pyramid, kernels, drawn_names, layers, pixels, shared, media,
                                alpha=alpha, cmap=cmap, maps=maps)
    shown = {k.key: k for k in kernels}
    skipped = set(result.skipped)
    panels = [_panel(graph, node, pictures.get(node.key), shown, index_of, skipped | drawn_names)
              for node in kernels if not node.is_input]
    context = {
        "title": f"{target_name} · Class Feature Pyramid",
        "maps": maps,
        "map_words": _MAP_WORDS[maps],
        "contrast": _contrast(pyramid, probabilities, names, levels),
        "target": target_name,
        "probability": float(pyramid.probability),
        "asked": _asked(identity),
        "top": _top(probabilities, names, int(pyramid.target)),
        "banner": _banner(identity),
        "random_weights": RANDOM_WEIGHTS,
        "facts": _facts(identity, pyramid, image),
        "levels": levels,
        "image": image,
        "multi": len({level["pathway"] for level in levels}) > 1,
        "frames": [len(p) for p in pixels],
        "fps": _FPS,
        "shared": shared,
        "colorbar": _colorbar(cmap),
        "scale": _SCALE,
        "rows": _graph_rows(rows, titles, placed),
        "edges": [{"source": e.source, "target": e.target, "score": e.score, "path": e.path,
                   "opacity": 0.2 + 0.6 * max(0.0, min(1.0, e.score))} for e in placed.edges],
        "graph": placed,
        "nodes": [_node(node, placed, cmap, node.key in pictures) for node in kernels],
        "panels": panels,
        "kernels_per_level": int(max_kernels_per_layer),
        "summary": _summary(pyramid, layers, drawn_names, result.skipped),
        "skipped": result.skipped,
        "files": _files(root, result, media),
        "embed": embed,
        "css": _asset("report.css"),
        "script": _asset("report.js"),
    }
    page = _template().render(**context)
    path = root / "report.html"
    with atomic_write(path) as file:
        file.write(page)
    return path


# --- what is explained ------------------------------------------------------------------------


def _banner(identity: Mapping[str, Any] | None) -> str | None:
    if identity is None:
        return ("model and weights not stated (this report was written by write_report without "
                "identity=...): check what it explains before you trust it")
    trained = identity.get("weights", {}).get("trained")
    if trained is False:
        return RANDOM_WEIGHTS
    if trained is None:
        return ("weights not known: the model came from a factory fxcfp cannot inspect; pass "
                "--weights FILE to say which weights it holds")
    return None


def _contrast(pyramid: Any, probabilities: torch.Tensor, names: list[str],
              levels: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The "why A and not B" section of a contrastive pyramid (``None`` for a plain one)."""
    contrast = getattr(pyramid, "contrast", None)
    if contrast is None:
        return None
    target, other = int(pyramid.target), int(contrast)
    logits = torch.as_tensor(pyramid.logits).detach().to("cpu", torch.float64).reshape(-1)
    return {"a": names[target], "b": names[other],
            "logit_a": float(logits[target]), "logit_b": float(logits[other]),
            "p_a": float(probabilities[target]), "p_b": float(probabilities[other]),
            "still": levels[0]["still"] if levels else None,
            "rows": [(layer.name, len(layer.kernels), layer.total)
                     for layer in tuple(pyramid.layers)[:6]]}


def _asked(identity: Mapping[str, Any] | None) -> str:
    asked = (identity or {}).get("options", {}).get("class")
    return "the top class" if asked is None else f"the class asked for ({asked})"


def _facts(identity: Mapping[str, Any] | None, pyramid: Any, image: bool) -> list[tuple[str, str]]:
    """The header's rows: one line per fact, in words."""
    about = dict(identity or {})
    facts: list[tuple[str, str]] = []
    model = about.get("model")
    if model:
        facts.append(("model", f"{model.get('name')} — {model.get('class')}"
                      f"{' (image model)' if model.get('dims') == 2 else ''}"))
    weights = about.get("weights")
    if weights:
        text = str(weights.get("source", ""))
        if weights.get("file"):
            text += f" — {weights['file']}"
        if weights.get("sha256"):
            text += f", sha256 {weights['sha256']}"
        facts.append(("weights", text))
    source = about.get("input")
    if source:
        facts.append(("image" if image else "video", _input_text(source, image)))
    pre = about.get("preprocessing")
    if pre:
        resize = pre.get("resize")
        resize_text = ("short side to " + str(resize) if isinstance(resize, int)
                       else "to " + " x ".join(map(str, resize)) if resize
                       else f"short side to {pre.get('crop')}")
        facts.append(("preprocessing",
                      f"resize {resize_text}, centre crop {pre.get('crop')}, "
                      f"{pre.get('interpolation')}, normalisation {pre.get('normalization')} "
                      f"(mean {_triple(pre.get('mean'))}, std {_triple(pre.get('std'))}) — "
                      f"{pre.get('source')}"))
    options = dict(about.get("options") or {})
    options.setdefault("threshold", float(pyramid.threshold))
    options.setdefault("depth", pyramid.max_depth)
    options.setdefault("top_k", getattr(pyramid, "top_k", None))
    facts.append(("options", ", ".join(
        f"{key.replace('_', '-')} {'none' if value is None else value}"
        for key, value in options.items() if not (key == "class" and value is None))))
    versions = dict(about.get("versions") or {})
    if not versions:
        from fxcfp import __version__

        versions = {"fxcfp": __version__, "torch": torch.__version__,
                    "python": platform.python_version()}
    run = ", ".join(f"{k} {v}" for k, v in versions.items())
    device = about.get("device") or str(torch.as_tensor(pyramid.logits).device)
    timings = about.get("timings") or {}
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    facts.append(("run", f"{run}; device {device}" + (f"; {timing}" if timing else "")))
    return facts


def _input_text(source: Mapping[str, Any], image: bool) -> str:
    name = source.get("file", "?")
    frames = list(source.get("frames") or [])
    seconds = source.get("seconds")
    if source.get("kind") == "image":
        return f"{name}, a still image, {_size(source)}"
    if image or len(frames) == 1:
        at = f" at {seconds[0]:.2f} s" if seconds else ""
        return f"{name}, frame {frames[0] if frames else '?'}{at} (one still), {_size(source)}"
    span = f", {seconds[0]:.2f}–{seconds[1]:.2f} s" if seconds else ""
    return (f"{name}, {len(frames)} frames ({frames[0]}..{frames[-1]}{span}), "
            f"{_size(source)}")


def _size(source: Mapping[str, Any]) -> str:
    size = source.get("size") or []
    return " x ".join(map(str, size)) if size else ""


def _triple(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values or ()) + ")"


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


def _top(probabilities: torch.Tensor, names: list[str], target: int) -> list[dict[str, Any]]:
    top = torch.topk(probabilities, min(_TOP, len(probabilities)))
    return [{"name": names[i], "p": p, "target": i == target, "width": max(p * 160, 2)}
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


# --- pictures ---------------------------------------------------------------------------------


class _Media:
    """Every picture goes to a file beside the report, and into the page once: as a data URI
    (``embed``) or as that file's relative address."""

    def __init__(self, root: Path, embed: bool) -> None:
        self.root = root
        self.embed = embed
        self.written: list[str] = []

    def webp(self, frame: np.ndarray, name: str) -> str:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="WEBP",
                                                          quality=_WEBP_QUALITY, method=0)
        data = buffer.getvalue()
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.written.append(name)
        return self._src(data, "image/webp", name)

    def file(self, path: Path, mime: str) -> str:
        name = path.relative_to(self.root).as_posix()
        return self._src(path.read_bytes() if self.embed else b"", mime, name)

    def _src(self, data: bytes, mime: str, name: str) -> str:
        if not self.embed:
            return name
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _shared_frames(levels: Sequence[Any], pixels: Sequence[np.ndarray]) -> list[int]:
    """Per input, the frame where the drawn maps together hold the most mass."""
    frames = []
    for pathway, frames_of in enumerate(pixels):
        mass = np.zeros(len(frames_of))
        for level in levels:
            if level.pathway == pathway and len(level.profile) == len(mass):
                mass += np.asarray(level.profile)
        frames.append(int(np.argmax(mass)) if mass.max() > 0 else len(mass) // 2)
    return frames


def _kernel_pictures(
    pyramid: Any,
    kernels: Sequence[ShownKernel],
    drawn: set[str],
    layers: Sequence[Any],
    pixels: Sequence[np.ndarray],
    shared: Sequence[int],
    media: _Media,
    *,
    alpha: float,
    cmap: str,
    maps: str,
) -> dict[str, str]:
    """A still of each shown kernel's map on the shared frame, for the levels drawn.

    The still is the kernel-wise map at the layer's own time step nearest the shared frame,
    upsampled in space with the pyramid's cubic spline (``fxcfp._maps.upsample``) and scaled to
    ``[0, 1]`` on its own: one frame is drawn, so only one frame is upsampled, instead of the
    whole clip for every kernel.
    """
    from fxcfp._maps import upsample

    pathway_of = {layer.name: int(getattr(layer, "pathway", 0)) for layer in layers}
    pictures = {}
    for node in kernels:
        if node.is_input or node.layer not in drawn:
            continue
        try:
            raw = pyramid.kernel_map(node.layer, node.channel, mode=maps)
        except InvalidArgumentError:  # at max_depth: reached, not expanded
            continue
        pathway = pathway_of[node.layer]
        frames = pixels[pathway]
        frame = min(shared[pathway], len(frames) - 1)
        raw = torch.as_tensor(raw).detach().to("cpu", torch.float32)
        if raw.dim() == 3:  # T x H x W: the time step under the shared frame
            step = round(frame * (raw.shape[0] - 1) / max(len(frames) - 1, 1))
            raw = raw[step]
        heat = upsample(raw, tuple(frames.shape[1:3])) if raw.dim() == 2 else torch.zeros(
            frames.shape[1:3])
        picture, _ = draw_map(heat, frames[frame : frame + 1], alpha=alpha, cmap=cmap)
        pictures[node.key] = media.webp(picture[0],
                                        f"kernels/{slug(node.layer)}_{node.channel}.webp")
    return pictures


def _profile(profile: Sequence[float], peak: int) -> dict[str, Any]:
    mass = np.asarray(profile, dtype=np.float64)
    width, height, gap = 240, 44, 1
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
def _colorbar(cmap: str) -> list[tuple[float, str]]:
    table = _lookup_table(cmap)
    return [(i / 10, "#{:02x}{:02x}{:02x}".format(*table[round(i / 10 * 255)]))
            for i in range(11)]


# --- the graph --------------------------------------------------------------------------------


def _graph_rows(rows: Sequence[Sequence[ShownKernel]], titles: Sequence[str],
                placed: Any) -> list[dict[str, Any]]:
    out = []
    for index, ((title, y), row) in enumerate(zip(placed.rows, rows, strict=True)):
        out.append({"index": index, "title": _clip(title), "full": titles[index], "y": y,
                    "count": len(row), "ids": " ".join(node.dom_id for node in row)})
    return out


def _node(node: ShownKernel, placed: Any, cmap: str, has_picture: bool) -> dict[str, Any]:
    x, y = placed.positions[node.dom_id]
    red, green, blue = _lookup_table(cmap)[int(round(max(0.0, min(1.0, node.reliance)) * 255))]
    return {"key": node.key, "id": node.dom_id, "x": x, "y": y, "row": node.row,
            "fill": f"rgb({red},{green},{blue})", "reliance": node.reliance,
            "channel": node.channel, "input": node.is_input, "picture": has_picture}


def _panel(graph: Any, node: ShownKernel, picture: str | None, shown: Mapping[str, ShownKernel],
           index_of: Mapping[str, int], skipped: set[str]) -> dict[str, Any]:
    def linked(items: list[tuple[str, float]]) -> dict[str, Any]:
        entries = [{"key": key, "score": score, "shown": key in shown and not shown[key].is_input}
                   for key, score in sorted(items, key=lambda item: -item[1])[:_LIST_LIMIT]]
        return {"entries": entries, "more": max(0, len(items) - _LIST_LIMIT), "count": len(items)}

    children = [(c, _edge(graph, node.key, c)) for c in
                (graph.successors(node.key) if node.key in graph else ())]
    parents = [(p, _edge(graph, p, node.key)) for p in
               (graph.predecessors(node.key) if node.key in graph else ())]
    level = index_of.get(node.layer)
    if picture is None:
        note = ("not expanded: this kernel lies at max_depth" if node.layer in skipped else
                "maps are drawn for the report's levels only (--levels all draws every one)")
    else:
        note = None
    return {"key": node.key, "layer": node.layer, "level": level, "channel": node.channel,
            "reliance": node.reliance, "picture": picture, "note": note,
            "children": linked(children), "parents": linked(parents)}


def _edge(graph: Any, source: str, target: str) -> float:
    data = graph.get_edge_data(source, target) or {}
    return float(data.get("score", 0.0))


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


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


def _summary(pyramid: Any, layers: Sequence[Any], drawn: set[str],
             skipped: Sequence[str]) -> dict[str, Any]:
    rows = [_Row(i, layer.name, len(layer.kernels), layer.total, layer.depth, layer.edges,
                 int(getattr(layer, "pathway", 0)), layer.name in drawn, layer.name not in skipped)
            for i, layer in enumerate(layers)]
    kept = sum(row.kept for row in rows)
    return {"rows": rows, "kept": kept, "edges": int(getattr(pyramid, "num_edges", 0) or
                                                     sum(row.links for row in rows)),
            "multi": len({row.pathway for row in rows}) > 1}


def _files(root: Path, result: Any, media: _Media) -> list[str]:
    names = [p.relative_to(root).as_posix() for p in (result.pyramid, result.contact_sheet)]
    names += [level.mp4.relative_to(root).as_posix() for level in result.levels if level.mp4]
    names += sorted(set(media.written))
    return names


# --- templates --------------------------------------------------------------------------------


def _asset(name: str) -> str:
    from importlib.resources import files

    return (files("fxcfp.render") / "templates" / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _template() -> Any:
    try:
        import jinja2
    except ImportError as err:  # pragma: no cover - jinja2 is in the render extra
        raise InvalidArgumentError(
            "write_report needs Jinja2 for its templates. Hint: pip install 'fxcfp[render]'."
        ) from err
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fxcfp.render", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("report.html.j2")
