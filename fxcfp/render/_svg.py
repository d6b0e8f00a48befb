"""Inline SVG for the HTML report: temporal profiles as bars, the dependency graph by level."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

import numpy as np

from fxcfp.render.overlay import _lookup_table


@dataclass(frozen=True)
class GraphNode:
    """A kernel (or input channel) drawn in the graph; ``key`` is the networkx node key."""

    key: str
    channel: int
    score: float
    dom_id: str
    has_panel: bool


@dataclass(frozen=True)
class GraphRow:
    """One row of the graph: a pyramid level, or an input's channels at the bottom."""

    title: str
    caption: str
    nodes: tuple[GraphNode, ...]


def profile_svg(profile: Sequence[float] | np.ndarray, *, peak: int | None = None) -> str:
    """A bar per frame, heights relative to the largest; the ``peak`` frame's bar stands out."""
    mass = np.asarray(profile, dtype=np.float64).reshape(-1)
    count = max(len(mass), 1)
    width, height, gap = 240, 44, 1
    bar = max((width - gap * (count - 1)) / count, 1.0)
    top = float(mass.max(initial=0.0))
    parts = [
        f'<svg class="profile" viewBox="0 0 {width} {height + 12}" width="{width}" '
        f'height="{height + 12}" role="img" aria-label="mass of the map per frame">',
        f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" class="axis"/>',
    ]
    for t, value in enumerate(mass):
        h = 0.0 if top <= 0 else float(value) / top * (height - 2)
        x = t * (bar + gap)
        kind = "bar peak" if t == peak else "bar"
        parts.append(
            f'<rect class="{kind}" x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
            f'height="{max(h, 0.5):.1f}"><title>frame {t}: {float(value):.3f}</title></rect>'
        )
    parts.append(f'<text x="0" y="{height + 11}" class="tick">0</text>')
    parts.append(
        f'<text x="{width}" y="{height + 11}" class="tick" text-anchor="end">{count - 1}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def graph_svg(
    rows: Sequence[GraphRow],
    edges: Sequence[tuple[str, str, float]],
    *,
    class_title: str,
    cmap: str,
) -> str:
    """The class dependency graph, one row per level, the class on top.

    Every kernel is an SVG link to ``#kernel=<key>``; the report's script turns that into a
    selection. Edges carry ``data-from``/``data-to`` (DOM ids) so the script can light up the
    links of the selected kernel.
    """
    table = _lookup_table(cmap)
    label_w, width, row_h, top = 190, 980, 74, 70
    area = width - label_w - 30
    widest = max((len(row.nodes) for row in rows), default=1)
    positions: dict[str, tuple[float, float]] = {}
    for r, row in enumerate(rows):
        # spacing widens down the rows, so the graph reads as a pyramid like the figure
        spread = 0.45 + 0.55 * (r / max(len(rows) - 1, 1))
        step = min(area * spread / max(widest, 1), 64.0)
        centre = label_w + area / 2
        first = centre - step * (len(row.nodes) - 1) / 2
        for i, node in enumerate(row.nodes):
            positions[node.dom_id] = (first + i * step, top + r * row_h)
    height = top + max(len(rows) - 1, 0) * row_h + 40
    class_x, class_y = label_w + area / 2, 22
    parts = [
        f'<svg id="graph" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMin meet" role="img" aria-label="class dependency graph">',
        '<g class="edges">',
    ]
    if rows:
        for node in rows[0].nodes:
            x, y = positions[node.dom_id]
            parts.append(
                f'<line class="root-edge" x1="{class_x:.1f}" y1="{class_y + 12}" '
                f'x2="{x:.1f}" y2="{y - 10:.1f}"/>'
            )
    for source, target, score in edges:
        (x1, y1), (x2, y2) = positions[source], positions[target]
        bend = (y2 - y1) * 0.45
        opacity = 0.15 + 0.5 * max(0.0, min(1.0, score))
        parts.append(
            f'<path class="edge" data-from="{source}" data-to="{target}" '
            f'd="M{x1:.1f},{y1 + 10:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} '
            f'{x2:.1f},{y2 - 10:.1f}" style="stroke-opacity:{opacity:.2f}">'
            f"<title>edge score {score:.3f}</title></path>"
        )
    parts.append("</g>")
    parts.append(
        f'<g class="class-node"><rect x="{class_x - 110:.1f}" y="{class_y - 12}" width="220" '
        f'height="26" rx="13"/><text x="{class_x:.1f}" y="{class_y + 5}" '
        f'text-anchor="middle">{escape(class_title)}</text></g>'
    )
    for r, row in enumerate(rows):
        y = top + r * row_h
        parts.append(
            f'<text class="row-title" x="8" y="{y - 2}">{escape(_clip(row.title))}</text>'
            f'<text class="row-caption" x="8" y="{y + 13}">{escape(row.caption)}</text>'
        )
        for node in row.nodes:
            x, _ = positions[node.dom_id]
            red, green, blue = table[int(round(max(0.0, min(1.0, node.score)) * 255))]
            tip = escape(f"{node.key}  score {node.score:.3f}")
            circle = (
                f'<circle cx="{x:.1f}" cy="{y}" r="10" fill="rgb({red},{green},{blue})"/>'
                f'<text x="{x:.1f}" y="{y + 24}" text-anchor="middle">{node.channel}</text>'
                f"<title>{tip}</title>"
            )
            if node.has_panel:
                parts.append(
                    f'<a class="kernel" id="{node.dom_id}" href="{kernel_href(node.key)}" '
                    f'data-node="{escape(node.key)}">{circle}</a>'
                )
            else:
                parts.append(
                    f'<g class="kernel leaf" id="{node.dom_id}" '
                    f'data-node="{escape(node.key)}">{circle}</g>'
                )
    parts.append("</svg>")
    return "".join(parts)


def kernel_href(key: str) -> str:
    """The in-page address that selects a kernel: ``#kernel=<key>`` (HTML-escaped)."""
    # keep ':' and '.' readable in the address bar; the script decodes either way
    return escape("#kernel=" + quote(key, safe=":.-_"))


def _clip(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
