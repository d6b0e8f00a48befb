"""The report's class dependency graph: which kernels to show, and where to draw them.

Every level of the pyramid is a row, the class on top and the clip's channels at the bottom. A
level shows its ``limit`` kernels that the kernels shown above rely on most, so the drawn graph
stays connected (a click always lights something), and every edge between shown kernels is
drawn, also across levels that are not neighbours (residual shortcuts). The layout is Graphviz's
layered ``dot`` where the ``graphviz`` binding and its program are installed, and a plain one
(rows, kernels spread evenly) where they are not.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from fxcfp.render._common import Level, lookup_table

__all__ = ["GraphEdge", "GraphLayout", "ShownKernel", "choose_kernels", "dot_available",
           "graph_rows", "layout", "node_view", "panel"]

# a panel lists this many linked kernels before summing up the rest
_LIST_LIMIT = 40
# a row title longer than this is cut from the left (the end of a layer name tells most)
_TITLE_LIMIT = 30


@dataclass(frozen=True)
class ShownKernel:
    """A kernel (or an input channel) drawn in the graph.

    Attributes:
        key: The networkx node key, ``"<layer>:<channel>"``.
        layer: Its layer's name.
        row: The graph row: the level's index in ``Pyramid.layers``; inputs come last.
        channel: The kernel's index in its layer.
        reliance: What its colour shows: the sum of the gate scores of the edges from the
            kernels above that select it, over the largest such sum in its level (in ``[0, 1]``).
        dom_id: Its element id in the page.
        is_input: A channel of the clip, not a kernel.
    """

    key: str
    layer: str
    row: int
    channel: int
    reliance: float
    dom_id: str
    is_input: bool = False


@dataclass(frozen=True)
class GraphEdge:
    """An edge from a kernel to one it depends on, with its gate score and drawn path."""

    source: str
    target: str
    score: float
    path: str


@dataclass(frozen=True)
class GraphLayout:
    """Where everything goes: node centres, edge paths, row heights, the drawing's size."""

    width: float
    height: float
    positions: dict[str, tuple[float, float]]
    edges: tuple[GraphEdge, ...]
    rows: tuple[tuple[str, float], ...]
    engine: str


def choose_kernels(
    graph: nx.DiGraph, layers: Sequence[Level], limit: int
) -> tuple[list[list[ShownKernel]], list[tuple[str, str, float]]]:
    """The kernels shown per row and the edges between them (DOM ids, gate score).

    A level's kernels are ranked by how much the kernels already shown above rely on them (the
    sum of the gate scores of those edges), then by how much every kernel above relies on them,
    so the graph drawn is connected wherever the pyramid is.
    """
    reliance: dict[str, float] = {}
    rows: list[list[ShownKernel]] = []
    shown: dict[str, str] = {}
    for row, layer in enumerate(layers):
        keys = [f"{layer.name}:{int(k)}" for k in layer.kernels]
        for key in keys:
            reliance[key] = _reliance(graph, key)
        top = max((reliance[key] for key in keys), default=0.0)

        def rank(key: str) -> tuple[float, float, int]:
            linked = sum(_edge_score(graph, parent, key) for parent in _predecessors(graph, key)
                         if parent in shown)
            return (-linked, -reliance[key], _channel(key))

        picked = sorted(keys, key=rank)[:limit]
        nodes = []
        for key in sorted(picked, key=_channel):
            shown[key] = f"k{len(shown)}"
            nodes.append(ShownKernel(key, layer.name, row, _channel(key),
                                     _share(reliance[key], top), shown[key]))
        rows.append(nodes)
    # the clip's channels the shown kernels read, as the base of the graph
    inputs: dict[str, set[str]] = {}
    for key in list(shown):
        for child in _successors(graph, key):
            name = str(graph.nodes[child].get("layer", child.rsplit(":", 1)[0]))
            if name.startswith("input"):
                inputs.setdefault(name, set()).add(child)
    for name in sorted(inputs):
        keys = sorted(inputs[name], key=_channel)
        values = {key: _reliance(graph, key) for key in keys}
        top = max(values.values(), default=0.0)
        nodes = []
        for key in keys:
            shown[key] = f"k{len(shown)}"
            nodes.append(ShownKernel(key, name, len(rows), _channel(key),
                                     _share(values[key], top), shown[key], is_input=True))
        rows.append(nodes)
    edges = [(shown[key], shown[child], _edge_score(graph, key, child))
             for key in shown for child in _successors(graph, key) if child in shown]
    return rows, edges


def layout(
    rows: Sequence[Sequence[ShownKernel]],
    titles: Sequence[str],
    edges: Sequence[tuple[str, str, float]],
    *,
    engine: str = "auto",
) -> GraphLayout:
    """Place the graph: Graphviz ``dot`` (``engine="dot"`` or ``"auto"`` where it is installed),
    else one row per level with the kernels spread evenly (``"plain"``)."""
    if engine in ("auto", "dot") and dot_available():
        try:
            return _dot_layout(rows, titles, edges)
        except Exception:  # a dot that crashes or prints no layout: draw the plain one
            if engine == "dot":
                raise
    return _plain_layout(rows, titles, edges)


def dot_available() -> bool:
    """Whether the ``graphviz`` binding and its ``dot`` program are both installed."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


_NODE_R = 9.0  # a kernel's circle, px
_MARGIN_LEFT = 210.0  # the row titles
_MARGIN = 20.0  # above, below and right of the drawing
_PLAIN_STEP, _PLAIN_ROW = 26.0, 46.0  # the plain layout: between kernels, between rows
_PLAIN_TOP = 30.0  # the plain layout's first row
_BEND = 0.45  # how far an edge's curve leaves its end points, as a share of the rows between


def _dot_layout(
    rows: Sequence[Sequence[ShownKernel]],
    titles: Sequence[str],
    edges: Sequence[tuple[str, str, float]],
) -> GraphLayout:
    import graphviz

    dot = graphviz.Digraph(engine="dot")
    dot.attr(rankdir="TB", nodesep="0.12", ranksep="0.32", splines="true", newrank="true")
    dot.attr("node", shape="circle", width="0.26", height="0.26", fixedsize="true", label="")
    for index, row in enumerate(rows):
        # an invisible anchor per row, chained, keeps the rows in order whatever the edges are
        with dot.subgraph() as rank:
            rank.attr(rank="same")
            rank.node(f"row{index}", style="invis", width="0.01", height="0.01")
            for node in row:
                rank.node(node.dom_id)
        if index:
            dot.edge(f"row{index - 1}", f"row{index}", style="invis", weight="50")
    for source, target, _ in edges:
        dot.edge(source, target)
    data = json.loads(dot.pipe(format="json").decode("utf-8"))
    x0, y0, x1, y1 = (float(v) for v in data["bb"].split(","))
    height = y1 - y0
    # dot measures in points with y upwards; the page's y runs down
    names = {obj["_gvid"]: obj["name"] for obj in data.get("objects", [])}
    positions: dict[str, tuple[float, float]] = {}
    row_y: dict[int, float] = {}
    for obj in data.get("objects", []):
        if "pos" not in obj:  # the rank=same subgraphs are objects too
            continue
        x, y = (float(v) for v in obj["pos"].split(","))
        point = (_MARGIN_LEFT + x - x0, height - (y - y0) + _MARGIN)
        if obj["name"].startswith("row"):
            row_y[int(obj["name"][3:])] = point[1]
        else:
            positions[obj["name"]] = point
    paths: dict[tuple[str, str], str] = {}
    for edge in data.get("edges", []):
        tail, head = names[edge["tail"]], names[edge["head"]]
        if tail.startswith("row"):
            continue
        paths[(tail, head)] = _spline(edge.get("pos", ""), x0, y0, height)
    drawn = tuple(
        GraphEdge(s, t, score, paths.get((s, t)) or _curve(positions[s], positions[t]))
        for s, t, score in edges
    )
    return GraphLayout(_MARGIN_LEFT + (x1 - x0) + _MARGIN, height + 2 * _MARGIN, positions, drawn,
                       tuple((titles[i], row_y[i]) for i in range(len(rows))), "dot")


def _spline(pos: str, x0: float, y0: float, height: float) -> str:
    """dot's ``pos`` of an edge (``[e,x,y] [s,x,y] p0 p1 p2 p3 ...``, cubic Bezier control
    points) as an SVG path in page coordinates."""
    points = []
    end = None
    for part in pos.split():
        fields = part.split(",")
        if fields[0] == "e":
            end = (float(fields[1]), float(fields[2]))
        elif fields[0] != "s":
            points.append((float(fields[0]), float(fields[1])))
    if len(points) < 4 or (len(points) - 1) % 3:
        return ""

    def page(point: tuple[float, float]) -> str:
        return f"{_MARGIN_LEFT + point[0] - x0:.1f},{height - (point[1] - y0) + _MARGIN:.1f}"

    parts = [f"M{page(points[0])}"]
    for i in range(1, len(points), 3):
        parts.append(f"C{page(points[i])} {page(points[i + 1])} {page(points[i + 2])}")
    if end is not None:
        parts.append(f"L{page(end)}")
    return " ".join(parts)


def _plain_layout(
    rows: Sequence[Sequence[ShownKernel]],
    titles: Sequence[str],
    edges: Sequence[tuple[str, str, float]],
) -> GraphLayout:
    step, row_h = _PLAIN_STEP, _PLAIN_ROW
    widest = max((len(row) for row in rows), default=1)
    width = _MARGIN_LEFT + step * widest + 2 * _MARGIN
    positions: dict[str, tuple[float, float]] = {}
    row_y = []
    for index, row in enumerate(rows):
        y = _PLAIN_TOP + index * row_h
        first = _MARGIN_LEFT + (step * widest - step * (len(row) - 1)) / 2
        for i, node in enumerate(row):
            positions[node.dom_id] = (first + i * step, y)
        row_y.append((titles[index], y))
    drawn = tuple(GraphEdge(s, t, score, _curve(positions[s], positions[t]))
                  for s, t, score in edges)
    return GraphLayout(width, _PLAIN_TOP + len(rows) * row_h, positions, drawn, tuple(row_y),
                       "plain")


def _curve(start: tuple[float, float], end: tuple[float, float]) -> str:
    (x1, y1), (x2, y2) = start, end
    bend = (y2 - y1) * _BEND
    return (f"M{x1:.1f},{y1 + _NODE_R:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} "
            f"{x2:.1f},{y2 - _NODE_R:.1f}")


def _reliance(graph: nx.DiGraph, key: str) -> float:
    parents = _predecessors(graph, key)
    if not parents:  # the class: everything relies on it
        return 1.0
    return sum(_edge_score(graph, parent, key) for parent in parents)


def _share(value: float, top: float) -> float:
    return float(value / top) if top > 0 else 0.0


def _predecessors(graph: nx.DiGraph, key: str) -> list[str]:
    return list(graph.predecessors(key)) if key in graph else []


def _successors(graph: nx.DiGraph, key: str) -> list[str]:
    return list(graph.successors(key)) if key in graph else []


def _edge_score(graph: nx.DiGraph, source: str, target: str) -> float:
    data = graph.get_edge_data(source, target) or {}
    fallback = graph.nodes[target].get("score", 0.0) if target in graph else 0.0
    return float(data.get("score", fallback))


def _channel(key: str) -> int:
    return int(key.rsplit(":", 1)[1])


# --- what the page shows of the graph ------------------------------------------------------


def graph_rows(rows: Sequence[Sequence[ShownKernel]], titles: Sequence[str],
               placed: GraphLayout) -> list[dict[str, Any]]:
    """Each row's title (cut to fit), height and the DOM ids of its kernels."""
    out = []
    for index, ((title, y), row) in enumerate(zip(placed.rows, rows, strict=True)):
        out.append({"index": index, "title": _clip(title), "full": titles[index], "y": y,
                    "count": len(row), "ids": " ".join(node.dom_id for node in row)})
    return out


def node_view(node: ShownKernel, placed: GraphLayout, cmap: str,
              has_picture: bool) -> dict[str, Any]:
    """What the page draws of one kernel: where, in which colour, and whether it has a map."""
    x, y = placed.positions[node.dom_id]
    red, green, blue = lookup_table(cmap)[int(round(max(0.0, min(1.0, node.reliance)) * 255))]
    return {"key": node.key, "id": node.dom_id, "x": x, "y": y, "row": node.row,
            "fill": f"rgb({red},{green},{blue})", "reliance": node.reliance,
            "channel": node.channel, "input": node.is_input, "picture": has_picture}


def panel(graph: nx.DiGraph, node: ShownKernel, picture: str | None,
          shown: Mapping[str, ShownKernel], index_of: Mapping[str, int],
          skipped: set[str]) -> dict[str, Any]:
    """The panel a click on a kernel opens: its map, what it depends on and what uses it."""
    def linked(items: list[tuple[str, float]]) -> dict[str, Any]:
        entries = [{"key": key, "score": score, "shown": key in shown and not shown[key].is_input}
                   for key, score in sorted(items, key=lambda item: -item[1])[:_LIST_LIMIT]]
        return {"entries": entries, "more": max(0, len(items) - _LIST_LIMIT), "count": len(items)}

    children = [(c, _edge_score(graph, node.key, c)) for c in
                (graph.successors(node.key) if node.key in graph else ())]
    parents = [(p, _edge_score(graph, p, node.key)) for p in
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


def _clip(text: str, limit: int = _TITLE_LIMIT) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]
