"""The result of an analysis: a class feature pyramid for one clip and one class."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import torch

from ._backstep import UNREACHED, LayerTensors, gate, normalised
from ._errors import InvalidArgumentError
from ._maps import temporal_profile, upsample

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["LayerSelection", "Pyramid"]


@dataclass(frozen=True)
class LayerSelection:
    """One level of the pyramid: a weighted layer and its selected kernels.

    Attributes:
        name: the layer's name (module path, or FX node name for a functional call).
        kernels: the selected output channels, ascending.
        total: the layer's output channels.
        depth: the fewest back-steps from the class to any of its selected kernels.
        edges: edges leaving its selected kernels.
        pathway: the model input the layer belongs to (0 for single-input models).
    """

    name: str
    kernels: tuple[int, ...]
    total: int
    depth: int
    edges: int
    pathway: int


@dataclass(frozen=True)
class _Edges:
    """Every edge of the pyramid as parallel arrays of global ids, plus each layer's passing
    ``(kernel, input channel)`` pairs (the maps are made from these)."""

    src: np.ndarray
    dst: np.ndarray
    score: np.ndarray
    passing: tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class Pyramid:
    """A class feature pyramid: the kernels, through the whole depth of the network, that carry
    the evidence for one class in one clip.

    Heavy data stays compact (a depth per kernel, pooled activations); the networkx graph, the
    edge list and the activation maps are derived on first use.

    Attributes:
        target: the class explained.
        probability: softmax probability of ``target``.
        logits: the model's output for the clip, ``classes`` (cpu).
        threshold: the gate's threshold.
        max_depth: back-steps expanded from the class (``None``: down to the clip).
        top_k: at most this many channels selected per kernel (``None``: no limit).
    """

    target: int
    probability: float
    logits: torch.Tensor
    threshold: float
    max_depth: int | None
    top_k: int | None
    _plan: Plan = field(repr=False, compare=False)
    # the maps need a forward pass: a pyramid keeps its model alive
    _model: torch.nn.Module = field(repr=False, compare=False)
    _depth: np.ndarray = field(repr=False, compare=False)
    _pooled: tuple[torch.Tensor, ...] = field(repr=False, compare=False)
    _tensors: tuple[LayerTensors, ...] = field(repr=False, compare=False)
    _inputs: tuple[torch.Tensor, ...] = field(repr=False, compare=False)
    _sample: int = field(repr=False, compare=False)

    # --- structure -------------------------------------------------------------------------

    @cached_property
    def _edges(self) -> _Edges:
        limit = UNREACHED if self.max_depth is None else self.max_depth
        src, dst, score, passing = [], [], [], []
        for layer, pooled, tensors in zip(self._plan.layers, self._pooled, self._tensors):
            depth = self._depth[layer.first_id: layer.first_id + layer.out_channels]
            rows = np.flatnonzero(depth < limit)
            if rows.size == 0:
                passing.append((np.empty(0, np.int64), np.empty(0, np.int64)))
                continue
            # on the analysis's device, as the back-step did, so both agree on every channel
            rows_t = torch.from_numpy(rows).to(pooled.device)
            scores, low, span, passed = gate(pooled[None], tensors, self.threshold, self.top_k,
                                             rows_t)
            r, cand = passed[0].nonzero(as_tuple=True)
            n = normalised(scores[0, r, cand], low[0, r, 0], span[0, r, 0]).double().cpu()
            r, cand = r.cpu(), cand.cpu()
            kernel = torch.from_numpy(rows)[r]
            per_group_kernels = layer.out_channels // layer.groups
            channel = (kernel // per_group_kernels) * tensors.weight.shape[1] + cand
            passing.append((kernel.numpy(), channel.numpy()))
            targets = layer.sources[channel]  # E x K
            valid = targets >= 0
            counts = valid.sum(1).numpy()
            src.append(np.repeat((layer.first_id + kernel).numpy(), counts))
            dst.append(targets[valid].numpy())
            score.append(np.repeat(n.numpy(), counts))
        if not src:
            empty = np.empty(0, np.int64)
            return _Edges(empty, empty, np.empty(0), tuple(passing))
        src_a, dst_a, score_a = np.concatenate(src), np.concatenate(dst), np.concatenate(score)
        # several passing channels leading to one kernel (a flatten): one edge, largest score
        key = src_a * np.int64(self._plan.total_ids) + dst_a
        order = np.lexsort((-score_a, key))
        key, src_a, dst_a, score_a = key[order], src_a[order], dst_a[order], score_a[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = key[1:] != key[:-1]
        return _Edges(src_a[first], dst_a[first], score_a[first], tuple(passing))

    def _node_key(self, node_id: int) -> str:
        return f"{self._plan.names[self._plan.id_owner[node_id]]}:{self._plan.id_channel[node_id]}"

    @cached_property
    def layers(self) -> tuple[LayerSelection, ...]:
        """The levels of the pyramid, deepest in the network (closest to the class) first."""
        edges = self._edges
        counts = np.bincount(self._plan.id_owner[edges.src], minlength=len(self._plan.names))
        levels = []
        for index in range(len(self._plan.layers) - 1, -1, -1):
            layer = self._plan.layers[index]
            depth = self._depth[layer.first_id: layer.first_id + layer.out_channels]
            kernels = np.flatnonzero(depth < UNREACHED)
            if kernels.size == 0:
                continue
            levels.append(LayerSelection(layer.name, tuple(int(k) for k in kernels),
                                         layer.out_channels, int(depth[kernels].min()),
                                         int(counts[index]), layer.pathway))
        return tuple(levels)

    @property
    def root(self) -> str:
        """Node key of the root kernel: the classifier's output channel of the target class."""
        roots = np.flatnonzero(self._depth == 0)
        return self._node_key(int(roots[0]))

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The class dependency graph (SPEC "The result"): edges point from a kernel to the kernels
        it depends on. ``max_depth``/``top_k`` of ``None`` are stored as ``-1`` so the graph
        round-trips through GraphML."""
        edges = self._edges
        graph = nx.DiGraph(target=self.target, threshold=float(self.threshold),
                           max_depth=-1 if self.max_depth is None else self.max_depth,
                           top_k=-1 if self.top_k is None else self.top_k,
                           probability=float(self.probability))
        node_score = np.zeros(self._plan.total_ids)
        np.maximum.at(node_score, edges.dst, edges.score)
        nodes = np.flatnonzero(self._depth < UNREACHED)
        node_score[self._depth == 0] = 1.0
        keys = {int(i): self._node_key(int(i)) for i in nodes}
        names = self._plan.names
        graph.add_nodes_from(
            (keys[i], {"layer": names[self._plan.id_owner[i]],
                       "channel": int(self._plan.id_channel[i]),
                       "depth": int(self._depth[i]), "score": float(node_score[i])})
            for i in keys
        )
        graph.add_edges_from(
            (keys[s], keys[d], {"score": float(c)})
            for s, d, c in zip(edges.src.tolist(), edges.dst.tolist(), edges.score.tolist())
        )
        return graph

    def to_graphml(self, path: str | os.PathLike[str]) -> None:
        """Write :attr:`graph` as GraphML."""
        nx.write_graphml(self.graph, os.fspath(path))

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :attr:`graph` as node-link JSON (``nodes``, ``edges``, ``graph`` attributes)."""
        data = nx.node_link_data(self.graph, edges="edges")
        with open(path, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1)

    def summary(self) -> str:
        """A text table: per layer, kernels selected of total, and edges."""
        edges = self._edges
        levels = self.layers
        name_width = max([len("layer")] + [len(level.name) for level in levels])
        kernels = sum(len(level.kernels) for level in levels)
        depth = "none" if self.max_depth is None else str(self.max_depth)
        lines = [
            f"class {self.target} (p={self.probability:.3f}), threshold {self.threshold}, "
            f"max_depth {depth}: {kernels} kernels in {len(levels)} layers, "
            f"{edges.src.size} edges",
            f"{'layer'.ljust(name_width)}  depth  selected/total  edges",
        ]
        for level in levels:
            share = f"{len(level.kernels)}/{level.total}"
            lines.append(f"{level.name.ljust(name_width)}  {level.depth:5d}  {share:>14}  "
                         f"{level.edges:5d}")
        for (first, count), name in zip(self._plan.input_ranges, self._plan.input_names):
            used = int((self._depth[first: first + count] < UNREACHED).sum())
            lines.append(f"{name.ljust(name_width)}  {'':5}  {f'{used}/{count}':>14}  {'':5}")
        return "\n".join(lines)

    # --- maps ------------------------------------------------------------------------------

    def _layer(self, layer: str) -> int:
        try:
            return self._plan.layer_index(layer)
        except KeyError:
            known = ", ".join(level.name for level in self.layers[:8])
            raise InvalidArgumentError(
                f"Pyramid: no layer {layer!r} in this pyramid; its layers are {known}"
                f"{', ...' if len(self.layers) > 8 else ''} (see Pyramid.layers)"
            ) from None

    @cached_property
    def _activations(self) -> dict[tuple[str, int], tuple[np.ndarray, torch.Tensor]]:
        """The passing channels of every selected layer's input, for this clip, from one
        targeted forward pass: ``(input node, channel dim) -> (channel ids, C' x ... data)``.
        Layers that read the same activation (a block's conv and its shortcut, the branches of
        an Inception block) share one request with the union of their channels."""
        from ._analyzer import Analyzer  # the analyzer module imports this one

        merged: dict[tuple[str, int], np.ndarray] = {}
        for index, (_, channels) in enumerate(self._edges.passing):
            if channels.size:
                key = self._source_key(index)
                merged[key] = np.union1d(merged.get(key, np.empty(0, np.int64)), channels)
        requests: dict[str, dict[int, torch.Tensor]] = {}
        for (node, dim), ids in merged.items():
            requests.setdefault(node, {})[dim] = torch.from_numpy(ids)
        found = Analyzer._record(self._model, self._plan, self._inputs, requests, self._sample)
        return {key: (ids, found[key]) for key, ids in merged.items()}

    def _source_key(self, index: int) -> tuple[str, int]:
        layer = self._plan.layers[index]
        return layer.input_node, layer.channel_dim

    def _channels(self, index: int, channels: np.ndarray) -> torch.Tensor:
        ids, data = self._activations[self._source_key(index)]
        return data[np.searchsorted(ids, channels)]

    def _finish(self, index: int, feature_map: torch.Tensor, up: bool) -> torch.Tensor:
        if not up:
            return feature_map
        shape = self._plan.input_shapes[self._plan.layers[index].pathway]
        return upsample(feature_map, tuple(shape[2:]))

    def kernel_map(self, layer: str, kernel: int, *, upsample: bool = False) -> torch.Tensor:
        """Kernel-wise map of ``(layer, kernel)``: the mean of its passing input channels.

        Args:
            layer: a layer name from :attr:`layers`.
            kernel: one of that layer's selected kernels that was expanded.
            upsample: resize to the clip's ``T x H x W`` (cubic spline, scaled to [0, 1]).

        Returns:
            A float32 cpu tensor: the layer input's spatial shape, or the clip's with upsample.
        """
        index = self._layer(layer)
        kernels, channels = self._edges.passing[index]
        mine = channels[kernels == kernel]
        if mine.size == 0:
            raise InvalidArgumentError(
                f"Pyramid.kernel_map: kernel {kernel} of layer {layer!r} selected no input "
                "channel (it is not in the pyramid, or lies at max_depth and was not expanded); "
                f"expanded kernels of this layer: {sorted(set(kernels.tolist()))[:12]}"
            )
        feature_map = self._channels(index, mine).float().mean(0)
        return self._finish(index, feature_map, upsample)

    def layer_map(self, layer: str, *, upsample: bool = False) -> torch.Tensor:
        """Layer-wise map: the sum over passing ``(kernel, channel)`` pairs of the channel's
        activation, so a channel counts once per kernel that selected it."""
        index = self._layer(layer)
        _, channels = self._edges.passing[index]
        if channels.size == 0:
            raise InvalidArgumentError(
                f"Pyramid.layer_map: layer {layer!r} has no expanded kernel in this pyramid")
        ids, counts = np.unique(channels, return_counts=True)
        data = self._channels(index, ids).float()
        weights = torch.from_numpy(counts).float().reshape(-1, *([1] * (data.dim() - 1)))
        return self._finish(index, (data * weights).sum(0), upsample)

    def temporal_profile(self, layer: str) -> torch.Tensor:
        """The upsampled layer map's mass per frame (sums to 1; zeros for a constant map)."""
        return temporal_profile(self.layer_map(layer, upsample=True))

    def __repr__(self) -> str:
        return (f"Pyramid(target={self.target}, probability={self.probability:.3f}, "
                f"layers={len(self.layers)}, kernels={int((self._depth < UNREACHED).sum())})")


