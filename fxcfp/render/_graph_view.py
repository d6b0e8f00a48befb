"""The report's class dependency graph: the kernels shown per level, their links, their panels."""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from html import escape
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fxcfp.render._svg import GraphNode, GraphRow, kernel_href
from fxcfp.render.pyramid_views import WORKERS, draw_map, optional_map
from fxcfp.render.writers import gif_bytes

# a panel lists this many linked kernels before summing up the rest
_LIST_LIMIT = 40


def kernel_graph(
    pyramid: Any,
    graph: Any,
    layers: Sequence[Any],
    pixels: list[np.ndarray],
    limit: int,
    alpha: float,
    cmap: str,
    progress: bool,
    maps: str = "paper",
) -> tuple[list[GraphRow], list[tuple[str, str, float]], list[str]]:
    """The graph's rows and edges, and one HTML panel per clickable kernel (its kernel-wise map
    in the ``maps`` mode)."""
    ids: dict[str, str] = {}
    rows: list[GraphRow] = []
    chosen: list[tuple[Any, GraphNode]] = []
    for layer in layers:
        keys = [f"{layer.name}:{int(k)}" for k in layer.kernels]
        keys.sort(key=lambda key: -_score(graph, key))
        nodes = []
        for key in keys[:limit]:
            ids[key] = f"k{len(ids)}"
            node = GraphNode(key, _channel(key), _score(graph, key), ids[key], True)
            nodes.append(node)
            chosen.append((layer, node))
        caption = f"{min(limit, len(keys))} of {len(layer.kernels)} kept · {layer.total} in all"
        rows.append(GraphRow(layer.name, caption, tuple(nodes)))
    # the input channels the shown kernels read, as the base of the graph
    inputs: dict[str, set[str]] = {}
    for key in list(ids):
        for child in _successors(graph, key):
            name = str(graph.nodes[child].get("layer", child.rsplit(":", 1)[0]))
            if name.startswith("input"):
                inputs.setdefault(name, set()).add(child)
    for name in sorted(inputs):
        keys = sorted(inputs[name], key=lambda key: (-_score(graph, key), _channel(key)))[:limit]
        nodes = []
        for key in sorted(keys, key=_channel):
            ids[key] = f"k{len(ids)}"
            nodes.append(GraphNode(key, _channel(key), _score(graph, key), ids[key], False))
        rows.append(GraphRow(name, "input channels", tuple(nodes)))
    edges = []
    for key, dom_id in ids.items():
        for child in _successors(graph, key):
            if child in ids:
                edges.append((dom_id, ids[child], _edge_score(graph, key, child)))

    def animate(heat: torch.Tensor | None, pathway: int) -> bytes | None:
        if heat is None:
            return None
        return gif_bytes(draw_map(heat, pixels[pathway], alpha=alpha, cmap=cmap)[0])

    # maps come from the pyramid on this thread (it need not be thread-safe); colouring and GIF
    # encoding release the GIL, so they run on workers, a bounded number of maps in flight
    gifs: list[bytes | None] = []
    in_flight: deque[Future[bytes | None]] = deque()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for layer, node in tqdm(chosen, desc="fxcfp kernels", unit="kernel", disable=not progress):
            heat = optional_map(pyramid.kernel_map, layer.name, node.channel, mode=maps)
            in_flight.append(pool.submit(animate, heat, int(getattr(layer, "pathway", 0))))
            if len(in_flight) > 2 * WORKERS:
                gifs.append(in_flight.popleft().result())
        gifs.extend(job.result() for job in in_flight)
    panels = [
        _kernel_panel(graph, layer, node, gif, ids)
        for (layer, node), gif in zip(chosen, gifs, strict=True)
    ]
    return rows, edges, panels


def _kernel_panel(
    graph: Any, layer: Any, node: GraphNode, gif: bytes | None, ids: dict[str, str]
) -> str:
    depth = graph.nodes[node.key].get("depth", layer.depth) if node.key in graph else layer.depth
    children = sorted(
        _successors(graph, node.key), key=lambda child: -_edge_score(graph, node.key, child)
    )
    parents = sorted(
        (p for p in graph.predecessors(node.key)) if node.key in graph else (),
        key=lambda parent: -_edge_score(graph, parent, node.key),
    )
    return (
        f'<section class="kernel-panel" data-node="{escape(node.key)}" hidden>'
        f"<h3>{escape(node.key)}</h3>"
        f'<div class="score">channel {node.channel} of {escape(layer.name)} · depth {depth} · '
        f"score {node.score:.3f}</div>"
        f"{_kernel_picture(node.key, gif)}"
        f"<h4>Depends on ({len(children)})</h4>"
        f"{_link_list(graph, [(c, _edge_score(graph, node.key, c)) for c in children], ids)}"
        f"<h4>Used by ({len(parents)})</h4>"
        f"{_link_list(graph, [(p, _edge_score(graph, p, node.key)) for p in parents], ids)}"
        "</section>"
    )


def _kernel_picture(key: str, gif: bytes | None) -> str:
    if gif is None:
        return (
            '<p class="score">No kernel-wise map: this kernel lies at max_depth and was not '
            "expanded.</p>"
        )
    return (
        f'<img alt="kernel-wise map of {escape(key)}" src="{data_uri(gif, "image/gif")}">'
        '<div class="score">kernel-wise map: the mean of the activations this kernel depends '
        "on</div>"
    )


def _link_list(graph: Any, items: list[tuple[str, float]], ids: dict[str, str]) -> str:
    if not items:
        return '<p class="score">none</p>'
    entries = []
    for key, score in items[:_LIST_LIMIT]:
        has_panel = key in ids and not str(graph.nodes[key].get("layer", "")).startswith("input")
        name = (
            f'<a class="child-link" href="{kernel_href(key)}">{escape(key)}</a>'
            if has_panel
            else escape(key)
        )
        entries.append(f'<li>{name} <span class="score">{score:.3f}</span></li>')
    if len(items) > _LIST_LIMIT:
        entries.append(f'<li class="score">… and {len(items) - _LIST_LIMIT} more</li>')
    return f"<ul>{''.join(entries)}</ul>"


def data_uri(data: bytes, mime: str) -> str:
    """``data`` as a ``data:`` URI, so the page needs no file beside it."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _successors(graph: Any, key: str) -> list[str]:
    return list(graph.successors(key)) if key in graph else []


def _score(graph: Any, key: str) -> float:
    return float(graph.nodes[key].get("score", 0.0)) if key in graph else 0.0


def _edge_score(graph: Any, source: str, target: str) -> float:
    data = graph.get_edge_data(source, target) or {}
    return float(data.get("score", _score(graph, target)))


def _channel(key: str) -> int:
    return int(key.rsplit(":", 1)[1])
