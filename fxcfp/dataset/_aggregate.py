"""Per-class tallies of many pyramids: which kernels a class relies on, and which classes share
them.

A :class:`Tally` adds pyramids one at a time and merges with another tally by addition, so a
dataset split over processes, GPUs or nodes merges to exactly what one process computes: counts
are integers and scores are summed in fixed point (units of 2^-30; a score lies in [0, 1]), so
the order of the additions cannot change a bit of the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from .._backstep import UNREACHED
from .._files import atomic_write
from .._pyramid import Pyramid

__all__ = ["ClassTally", "Tally", "write_aggregates"]

_UNIT = float(2**30)
# compact a class's edge lists once this many clips are waiting
_PENDING = 32


def _fixed(score: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(score, dtype=np.float64) * _UNIT).astype(np.int64)


@dataclass
class ClassTally:
    """One class: how many clips, and per kernel (global id) and per edge how many of them
    selected it, with the sum of its scores."""

    clips: int
    kernels: np.ndarray
    score: np.ndarray
    edge_keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    edge_clips: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    edge_score: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def compact(self) -> None:
        if not self.pending:
            return
        keys = np.concatenate([self.edge_keys] + [p[0] for p in self.pending])
        clips = np.concatenate([self.edge_clips] + [p[1] for p in self.pending])
        score = np.concatenate([self.edge_score] + [p[2] for p in self.pending])
        self.pending = []
        self.edge_keys, inverse = np.unique(keys, return_inverse=True)
        self.edge_clips = _int_sum(inverse, clips, self.edge_keys.size)
        self.edge_score = _int_sum(inverse, score, self.edge_keys.size)


def _int_sum(inverse: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, inverse, values)
    return out


@dataclass
class Tally:
    """Per-class tallies over one id space (one model and clip shape).

    Attributes:
        total_ids: kernels of every layer plus the clip's channels.
        names: layer names then input names, as ``id_owner`` indexes them.
        id_owner: per global id, the index into ``names``.
        id_channel: per global id, its channel.
        order: per entry of ``names``, its position from the class down (0: the classifier).
        classes: class index -> its tally.
    """

    total_ids: int
    names: tuple[str, ...]
    id_owner: np.ndarray
    id_channel: np.ndarray
    classes: dict[int, ClassTally] = field(default_factory=dict)

    @classmethod
    def like(cls, pyramid: Pyramid) -> Tally:
        plan = pyramid._plan
        return cls(plan.total_ids, plan.names, plan.id_owner, plan.id_channel)

    def add(self, pyramid: Pyramid) -> None:
        """Count one pyramid for its target class."""
        depth = pyramid._depth
        selected = depth < UNREACHED
        edges = pyramid._edges
        node_score = np.zeros(self.total_ids)
        np.maximum.at(node_score, edges.dst, edges.score)
        node_score[depth == 0] = 1.0  # the root, as in Pyramid.graph
        entry = self.classes.get(pyramid.target)
        if entry is None:
            entry = ClassTally(0, np.zeros(self.total_ids, np.int64),
                               np.zeros(self.total_ids, np.int64))
            self.classes[pyramid.target] = entry
        entry.clips += 1
        entry.kernels += selected
        entry.score += np.where(selected, _fixed(node_score), 0)
        keys = edges.src.astype(np.int64) * self.total_ids + edges.dst
        entry.pending.append((keys, np.ones(keys.size, np.int64), _fixed(edges.score)))
        if len(entry.pending) >= _PENDING:
            entry.compact()

    def merge(self, other: Tally) -> None:
        """Add ``other``'s tallies (another shard of the same dataset) to these."""
        if other.total_ids != self.total_ids or other.names != self.names:
            raise ValueError("explain-dataset: the shards were analysed with different models")
        for cls, theirs in other.classes.items():
            theirs.compact()
            mine = self.classes.get(cls)
            if mine is None:
                self.classes[cls] = theirs
                continue
            mine.clips += theirs.clips
            mine.kernels += theirs.kernels
            mine.score += theirs.score
            mine.pending.append((theirs.edge_keys, theirs.edge_clips, theirs.edge_score))
            mine.compact()

    def __getstate__(self) -> dict[str, Any]:
        for entry in self.classes.values():
            entry.compact()
        return self.__dict__


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "class"


def write_aggregates(tally: Tally, out: Path, *, share: float,
                     labels: tuple[str, ...] | None) -> dict[str, Any]:
    """Write the class pyramids (GraphML), ``kernel_class.parquet``, ``class_overlap.parquet``
    and ``classes.parquet`` under ``out``; return what the report draws."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    (out / "classes").mkdir(exist_ok=True)
    names = tally.names

    def label(cls: int) -> str:
        return labels[cls] if labels and 0 <= cls < len(labels) else f"class {cls}"

    classes = sorted(tally.classes)
    kept: dict[int, np.ndarray] = {}
    rows: dict[str, list[Any]] = {k: [] for k in (
        "class", "label", "layer", "channel", "clips", "class_clips", "frequency",
        "mean_score")}
    summary: dict[str, list[Any]] = {k: [] for k in ("class", "label", "clips", "kernels",
                                                     "graph")}
    for cls in classes:
        entry = tally.classes[cls]
        entry.compact()
        ids = np.flatnonzero(entry.kernels)
        frequency = entry.kernels[ids] / entry.clips
        mean = entry.score[ids] / entry.kernels[ids] / _UNIT
        rows["class"] += [cls] * ids.size
        rows["label"] += [label(cls)] * ids.size
        rows["layer"] += [names[o] for o in tally.id_owner[ids]]
        rows["channel"] += tally.id_channel[ids].tolist()
        rows["clips"] += entry.kernels[ids].tolist()
        rows["class_clips"] += [entry.clips] * ids.size
        rows["frequency"] += frequency.tolist()
        rows["mean_score"] += mean.tolist()
        keep = ids[frequency >= share]
        kept[cls] = keep
        graph_file = f"classes/{cls:04d}_{_slug(label(cls))}.graphml"
        _write_graphml(_class_graph(tally, entry, keep, cls, label(cls), share),
                       out / graph_file)
        summary["class"].append(cls)
        summary["label"].append(label(cls))
        summary["clips"].append(entry.clips)
        summary["kernels"].append(int(keep.size))
        summary["graph"].append(graph_file)
    with atomic_write(out / "kernel_class.parquet", binary=True) as file:
        pq.write_table(pa.table(rows), file)
    with atomic_write(out / "classes.parquet", binary=True) as file:
        pq.write_table(pa.table(summary), file)
    overlap = _overlap(tally, classes, kept, label)
    with atomic_write(out / "class_overlap.parquet", binary=True) as file:
        pq.write_table(pa.table(overlap), file)
    return {"classes": classes, "labels": [label(c) for c in classes], "rows": rows,
            "overlap": overlap, "share": share}


def _class_graph(tally: Tally, entry: ClassTally, keep: np.ndarray, cls: int, label: str,
                 share: float) -> nx.DiGraph:
    graph: nx.DiGraph[str] = nx.DiGraph(target=cls, label=label, clips=entry.clips,
                                        share=float(share))
    names = tally.names

    def key(i: int) -> str:
        return f"{names[tally.id_owner[i]]}:{tally.id_channel[i]}"

    for i in keep.tolist():
        graph.add_node(key(i), layer=names[tally.id_owner[i]], channel=int(tally.id_channel[i]),
                       share=float(entry.kernels[i] / entry.clips),
                       score=float(entry.score[i] / entry.kernels[i] / _UNIT))
    src, dst = np.divmod(entry.edge_keys, tally.total_ids)
    inside = np.isin(src, keep) & np.isin(dst, keep)
    for s, d, c, v in zip(src[inside].tolist(), dst[inside].tolist(),
                          entry.edge_clips[inside].tolist(), entry.edge_score[inside].tolist()):
        graph.add_edge(key(s), key(d), share=c / entry.clips, score=v / c / _UNIT)
    return graph


def _write_graphml(graph: nx.DiGraph, path: Path) -> None:
    with atomic_write(path, binary=True) as file:
        nx.write_graphml(graph, file)


def _overlap(tally: Tally, classes: list[int], kept: dict[int, np.ndarray],
             label: Any) -> dict[str, list[Any]]:
    """Jaccard of the class pyramids' kernels, per level (layer) and over all levels."""
    owner = tally.id_owner
    out: dict[str, list[Any]] = {k: [] for k in (
        "class_a", "label_a", "class_b", "label_b", "layer", "kernels_a", "kernels_b",
        "shared", "jaccard")}
    layers = list(range(len(tally.names)))
    for a_index, a in enumerate(classes):
        for b in classes[a_index:]:
            ka, kb = kept[a], kept[b]
            for layer in layers + [None]:
                sa = ka if layer is None else ka[owner[ka] == layer]
                sb = kb if layer is None else kb[owner[kb] == layer]
                union = np.union1d(sa, sb).size
                if union == 0:
                    continue  # neither class pyramid reaches this layer
                shared = np.intersect1d(sa, sb).size
                out["class_a"].append(a)
                out["label_a"].append(label(a))
                out["class_b"].append(b)
                out["label_b"].append(label(b))
                out["layer"].append("all" if layer is None else tally.names[layer])
                out["kernels_a"].append(int(sa.size))
                out["kernels_b"].append(int(sb.size))
                out["shared"].append(int(shared))
                out["jaccard"].append(shared / union)
    return out
