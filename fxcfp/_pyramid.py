"""The result of an analysis: a class feature pyramid for one clip and one class."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch

from . import _fused
from ._backstep import UNREACHED, LayerTensors, gate, normalised
from ._capture import record
from ._errors import GraphTooLargeError, InvalidArgumentError
from ._evidence import MAP_MODE_HELP, check_choice, record_evidence
from ._files import atomic_write, dump_json
from ._maps import temporal_profile, upsample

if TYPE_CHECKING:
    import networkx as nx

    from ._capture import MapCapture
    from ._plan import Plan

__all__ = ["GRAPH_EDGE_LIMIT", "MAP_MODES", "EdgeArrays", "LayerSelection", "MapMode",
           "PassingPairs", "Pyramid", "check_maps"]

MapMode = Literal["paper", "evidence"]
MAP_MODES: tuple[MapMode, ...] = ("paper", "evidence")


def _check_mode(call: str, mode: Any, option: str = "mode") -> MapMode:
    return cast(MapMode, check_choice(call, option, mode, "a map mode", MAP_MODE_HELP))


def check_maps(call: str, maps: Any) -> MapMode | None:
    """``fxcfp.analyze``'s ``maps=``: ``None`` or a map mode."""
    return None if maps is None else _check_mode(call, maps, "maps")


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
class EdgeArrays:
    """The class dependency graph's edges as parallel arrays of global ids (the plan's id
    space: kernels of every layer, then the clip's channels): from ``src`` to ``dst`` with the
    normalised gate ``score``."""

    src: np.ndarray
    dst: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class PassingPairs:
    """The passing ``(kernel, input channel)`` pairs of one layer's expanded kernels, with their
    normalised scores (the maps and the edges are made from these): parallel arrays."""

    kernel: np.ndarray
    channel: np.ndarray
    score: np.ndarray


GRAPH_EDGE_LIMIT = 5_000_000
# passing pairs a pyramid keeps for its maps (24 bytes each)
_PASSING_BUDGET = 10_000_000


@dataclass
class _Cache:
    """What a pyramid computes on first use and keeps: its one mutable part, so the fields a
    user reads stay frozen. A pyramid made with :func:`dataclasses.replace` starts empty.

    Attributes:
        passing: per layer index, its passing pairs (while they fit ``_PASSING_BUDGET``).
        passing_kept: pairs held in ``passing``.
        maps: per map mode, what its maps are made of: ``(channel ids, channels x ...)`` per
            ``(node, channel dim)`` the maps are drawn on.
        saved_maps: a pyramid loaded from a file (:class:`fxcfp.SavedPyramid`): per mode, the
            layer maps the file holds, by layer index.
        saved_inputs: the clip the file holds, per model input (``None``: not saved).
        weight_sums: the file's pooled-weight sums per layer, checked when a model is attached.
        trace_method: the file's trace method (a loaded plan has no traced graph).
    """

    passing: dict[int, PassingPairs] = field(default_factory=dict)
    passing_kept: int = 0
    maps: dict[str, dict[tuple[str, int], tuple[np.ndarray, torch.Tensor]]] = field(
        default_factory=lambda: {mode: {} for mode in MAP_MODES})
    saved_maps: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    saved_inputs: list[np.ndarray] | None = None
    weight_sums: list[float | None] | None = None
    trace_method: str | None = None


class SampleRows(Sequence[torch.Tensor]):
    """One clip's rows of a batch's pooled layer inputs (``batched[layer][sample]``), taken when
    read: a pyramid reads the rows of the layers it recomputes, and indexing every layer's at
    construction cost 0.3 ms a call on the 66 layers of timm's regnety_002."""

    __slots__ = ("_batched", "_sample")

    def __init__(self, batched: Sequence[torch.Tensor], sample: int) -> None:
        self._batched = batched
        self._sample = sample

    def __len__(self) -> int:
        return len(self._batched)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(p[self._sample] for p in self._batched[index])
        return self._batched[index][self._sample]


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
        contrast: for a contrastive pyramid ("why ``target`` and not ``contrast``"), the other
            class: the root is scored with the classifier's row difference and evidence maps
            differentiate ``y_target - y_contrast``; ``None`` otherwise.
        gate: ``"paper"`` or ``"evidence"`` (see :func:`fxcfp.analyze`).
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
    _pooled: Sequence[torch.Tensor] = field(repr=False, compare=False)
    _tensors: tuple[LayerTensors, ...] = field(repr=False, compare=False)
    _inputs: tuple[torch.Tensor, ...] = field(repr=False, compare=False)
    _sample: int = field(repr=False, compare=False)
    # last, with defaults: the class the target is contrasted with (None: no contrast), the
    # gate, and the evidence gate's open input channels per layer (None: the paper's gate)
    contrast: int | None = None
    # per layer, the edges the back-step counted and how many kernels (in ascending depth) it
    # visited (:class:`fxcfp._backstep.Backstep`); ``None``: nothing counted yet
    _counted: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False,
                                                           compare=False)
    gate: str = "paper"
    _channel_keep: tuple[np.ndarray, ...] | None = field(default=None, repr=False,
                                                         compare=False)
    _cache: _Cache = field(default_factory=_Cache, init=False, repr=False, compare=False)

    # --- structure -------------------------------------------------------------------------

    def _expanded(self, index: int) -> np.ndarray:
        layer = self._plan.layers[index]
        limit = UNREACHED if self.max_depth is None else self.max_depth
        return np.flatnonzero(self._depth[layer.first_id: layer.first_id + layer.out_channels]
                              < limit)

    def _passing(self, index: int) -> PassingPairs:
        """One layer's passing pairs, recomputed with the back-step's own gate on the analysis's
        device, so both agree on every channel (nothing is stored per edge)."""
        cache = self._cache.passing
        if index in cache:
            return cache[index]
        layer, pooled, tensors = self._plan.layers[index], self._pooled[index], self._tensors[index]
        rows = self._expanded(index)
        if rows.size == 0:
            empty = np.empty(0, np.int64)
            return PassingPairs(empty, empty, np.empty(0))
        rows_t = torch.from_numpy(rows).to(pooled.device)
        scores, low, span, passed = gate(pooled[None], tensors, self.threshold, self.top_k, rows_t)
        r, cand = passed[0].nonzero(as_tuple=True)
        n = normalised(scores[0, r, cand], low[0, r, 0], span[0, r, 0]).double().cpu().numpy()
        kernel = rows[r.cpu().numpy()]
        per_group_kernels = layer.out_channels // layer.groups
        channel = (kernel // per_group_kernels) * tensors.weight.shape[1] + cand.cpu().numpy()
        if self._channel_keep is not None:
            # the evidence gate closed these channels: they link to no kernel (fxcfp/_gate.py)
            kept = self._channel_keep[index][channel]
            kernel, channel, n = kernel[kept], channel[kept], n[kept]
        result = PassingPairs(kernel, channel, n)
        if self._cache.passing_kept + kernel.size <= _PASSING_BUDGET:
            # a huge pyramid is recomputed, not hoarded
            cache[index] = result
            self._cache.passing_kept += kernel.size
        return result

    def _layer_edges(self, index: int) -> EdgeArrays:
        """The edges leaving one layer's kernels (SPEC step 7)."""
        layer, passing = self._plan.layers[index], self._passing(index)
        targets = layer.sources[torch.from_numpy(passing.channel)].numpy()  # E x K
        valid = targets >= 0
        counts = valid.sum(1)
        src = np.repeat(layer.first_id + passing.kernel, counts)
        dst, score = targets[valid], np.repeat(passing.score, counts)
        if layer.shared_sources and src.size:
            # several passing channels leading to one kernel (a flatten): one edge, largest score
            key = src * np.int64(self._plan.total_ids) + dst
            order = np.lexsort((-score, key))
            key, src, dst, score = key[order], src[order], dst[order], score[order]
            first = np.ones(key.size, dtype=bool)
            first[1:] = key[1:] != key[:-1]
            src, dst, score = src[first], dst[first], score[first]
        return EdgeArrays(src, dst, score)

    def _pair_edges(self, index: int, rows: np.ndarray) -> int:
        """Edges leaving the kernels ``rows`` of a layer without shared sources: each passing
        pair gives one per member of its channel's map. The back-step's own gate, dense over
        these rows only, and no pair is listed."""
        if rows.size == 0:
            return 0
        pooled, tensors = self._pooled[index], self._tensors[index]
        rows_t = torch.from_numpy(rows).to(pooled.device)
        members = tensors.members
        if members is None:  # a layer tensor made without counts
            members = (self._plan.layers[index].sources >= 0).sum(1).to(pooled.device)
        extension = _fused.extension()
        if extension is not None and _fused.usable(tensors, pooled, self.top_k):
            return int(extension.count_rows(pooled.contiguous(), tensors.weight.contiguous(),
                                            rows_t, self.threshold, members.to(torch.int32)))
        passed = gate(pooled[None], tensors, self.threshold, self.top_k, rows_t)[3][0]
        if tensors.group_of_kernel is None:
            per_pair = members[None]
        else:  # a grouped kernel's passing channel c is channel c of its own group
            per_pair = members.view(tensors.groups, -1)[tensors.group_of_kernel[rows_t]]
        return int((passed * per_pair).sum())

    @cached_property
    def _edge_counts(self) -> np.ndarray:
        """Edges leaving each layer. The back-step counted those of every kernel it visited;
        the kernels its early exit skipped (the last in ascending depth) are counted here, and
        a layer where one producer feeds several input channels from its de-duplicated edges."""
        counts = np.zeros(len(self._plan.layers), dtype=np.int64)
        limit = UNREACHED if self.max_depth is None else self.max_depth
        for index, layer in enumerate(self._plan.layers):
            if self._expanded(index).size == 0:
                continue
            if layer.shared_sources:
                counts[index] = self._layer_edges(index).src.size
                continue
            counted, visited = (0, 0) if self._counted is None else (
                int(self._counted[0][index]), int(self._counted[1][index]))
            if visited < layer.out_channels:
                depth = self._depth[layer.first_id: layer.first_id + layer.out_channels]
                # the back-step's order: a stable sort by depth, the same permutation here
                rest = np.argsort(depth, kind="stable")[visited:]
                counted += self._pair_edges(index, np.sort(rest[depth[rest] < limit]))
            counts[index] = counted
        return counts

    @property
    def num_edges(self) -> int:
        """Edges of the class dependency graph, counted without building it."""
        return int(self._edge_counts.sum())

    @property
    def num_kernels(self) -> int:
        """Nodes of the class dependency graph: kernels and clip channels in the pyramid."""
        return int((self._depth < UNREACHED).sum())

    @cached_property
    def _edges(self) -> EdgeArrays:
        parts = [self._layer_edges(i) for i in range(len(self._plan.layers))
                 if self._expanded(i).size]
        if not parts:
            empty = np.empty(0, np.int64)
            return EdgeArrays(empty, empty, np.empty(0))
        return EdgeArrays(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("src", "dst", "score")))

    def _node_key(self, node_id: int) -> str:
        return f"{self._plan.names[self._plan.id_owner[node_id]]}:{self._plan.id_channel[node_id]}"

    @cached_property
    def layers(self) -> tuple[LayerSelection, ...]:
        """The levels of the pyramid, deepest in the network (closest to the class) first."""
        counts = self._edge_counts
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

    # --- read-only views of the arrays (for tools and tests) --------------------------------

    @property
    def depths(self) -> np.ndarray:
        """Back-steps from the class to every kernel and clip channel, by global id (each
        layer's kernels, then the clip's channels, as in :class:`EdgeArrays`); ``-1`` outside
        the pyramid. A copy."""
        return np.where(self._depth < UNREACHED, self._depth, -1).astype(np.int64)

    def kernel_depths(self, layer: str) -> np.ndarray:
        """Back-steps from the class to each kernel of ``layer`` (``-1``: not in the pyramid)."""
        info = self._plan.layers[self._layer(layer)]
        return self.depths[info.first_id: info.first_id + info.out_channels]

    def passing_pairs(self, layer: str) -> PassingPairs:
        """The ``(kernel, input channel)`` pairs of ``layer`` that pass the gate, from its
        expanded kernels, with their normalised scores: what its maps and edges are made of."""
        return self._passing(self._layer(layer))

    def pooled_input(self, layer: str) -> torch.Tensor:
        """The input of ``layer`` for this clip, averaged over every dim but the channel dim
        (SPEC "pooled input"): what the gate scores its kernels with."""
        return self._pooled[self._layer(layer)]

    def edge_arrays(self) -> EdgeArrays:
        """Every edge of the class dependency graph as arrays, without networkx (their memory:
        24 bytes an edge; :attr:`num_edges` counts them first)."""
        return self._edges

    @property
    def trace_method(self) -> str | None:
        """How the model's graph was captured: ``"fx"`` (symbolic tracing) or ``"export"``
        (``torch.export``); ``None`` for a loaded pyramid whose file does not say."""
        traced = self._plan.traced
        return traced.method if traced is not None else self._cache.trace_method

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The class dependency graph (SPEC "The result"), built on first access: see
        :meth:`to_networkx`."""
        return self.to_networkx()

    def to_networkx(self, *, max_edges: int | None = GRAPH_EDGE_LIMIT) -> nx.DiGraph:
        """Build the class dependency graph: edges point from a kernel to the kernels it depends
        on. ``max_depth``/``top_k`` of ``None`` are stored as ``-1`` so the graph round-trips
        through GraphML.

        Args:
            max_edges: refuse (:class:`GraphTooLargeError`) above this many edges; a networkx
                edge costs some hundred bytes, and a full-depth pyramid of a deep network at a
                low threshold has tens of millions. ``None``: no limit.
        """
        if max_edges is not None and self.num_edges > max_edges:
            raise GraphTooLargeError(
                f"Pyramid.graph: the pyramid has {self.num_edges:,} edges, more than "
                f"max_edges={max_edges:,} that a networkx graph should hold in memory. Hint: "
                "analyse with a higher threshold, a max_depth or a top_k (fxcfp.analyze(..., "
                "max_depth=3, top_k=5)), read Pyramid.layers / summary(), or call "
                "Pyramid.to_networkx(max_edges=None) if you have the memory."
            )
        import networkx as nx  # on first use: its import is 0.3 s, half of analyze's imports

        edges = self._edges
        graph: nx.DiGraph = nx.DiGraph(
            target=self.target, threshold=float(self.threshold),
            max_depth=-1 if self.max_depth is None else self.max_depth,
            top_k=-1 if self.top_k is None else self.top_k, probability=float(self.probability),
            contrast=-1 if self.contrast is None else self.contrast)
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
        """Write :attr:`graph` as GraphML, atomically (a failed write leaves no partial file)."""
        import networkx as nx

        graph = self.graph
        with atomic_write(path, binary=True) as file:
            nx.write_graphml(graph, file)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :attr:`graph` as strict node-link JSON (``nodes``, ``edges``, ``graph``
        attributes; no ``NaN``), atomically."""
        import networkx as nx

        dump_json(nx.node_link_data(self.graph, edges="edges"), path)

    def save(self, path: str | os.PathLike[str], *, maps: str | tuple[str, ...] | None = None,
             inputs: bool = False) -> None:
        """Write the pyramid to one compact file that :func:`fxcfp.load_pyramid` reads (see
        :mod:`fxcfp._io`): graph, layers, counts and summary come back without the model.

        Args:
            path: the file (``.fxcfp`` by convention; an ``.npz`` archive, no pickled code).
            maps: map modes (``"paper"``, or any mode :meth:`layer_map` takes) whose layer maps
                to store too, so a loaded pyramid draws them without the model.
            inputs: store the analysed clip as well, so ``load_pyramid(path, model=model)``
                needs no ``clip=``.
        """
        from ._io import save_pyramid  # the io module imports this one

        save_pyramid(self, path, maps=maps, inputs=inputs)

    def to_edge_list(self, path: str | os.PathLike[str]) -> None:
        """Write the edges as columns ``src_layer, src_channel, dst_layer, dst_channel, score``
        to ``.parquet`` (layers dictionary-encoded) or ``.npz`` (layer indices into
        ``layer_names``): compact where GraphML of millions of edges is not."""
        from ._io import write_edge_list

        write_edge_list(self, path)

    def __reduce__(self) -> tuple:
        # pickles through the saved state (with the clip, without the model): no code, and a
        # pyramid crosses process boundaries; SavedPyramid.with_model(model) gives maps back
        from ._io import reduce_pyramid

        return reduce_pyramid(self)

    def summary(self) -> str:
        """A text table: per layer, kernels selected of total, and edges."""
        levels = self.layers
        name_width = max([len("layer")] + [len(level.name) for level in levels])
        kernels = sum(len(level.kernels) for level in levels)
        depth = "none" if self.max_depth is None else str(self.max_depth)
        versus = "" if self.contrast is None else f" and not class {self.contrast}"
        lines = [
            f"class {self.target}{versus} (p={self.probability:.3f}), threshold {self.threshold}, "
            f"max_depth {depth}: {kernels} kernels in {len(levels)} layers, "
            f"{self.num_edges} edges",
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

    def prefetch_maps(self, layers: list[str] | tuple[str, ...] | None = None, *,
                      mode: MapMode = "paper") -> None:
        """Capture, in one pass, what the maps of ``layers`` (default: every expanded layer) are
        made of. The maps call this themselves; call it first when drawing many levels.

        ``mode="paper"``: one targeted forward keeping the passing input channels.
        ``mode="evidence"``: one forward and one backward keeping ``ds/dA * A`` of the passing
        channels (see :mod:`fxcfp._evidence`). Only one clip's passing channels are kept, on
        the host.
        """
        mode = _check_mode("Pyramid.prefetch_maps", mode)
        indices = (range(len(self._plan.layers)) if layers is None
                   else [self._layer(name) for name in layers])
        self._fill_maps(indices, mode, lambda requests: self._record(requests, mode))

    def _fill_maps(self, indices: Iterable[int], mode: MapMode,
                   record: Callable[[dict[str, dict[int, torch.Tensor]]],
                                    dict[tuple[str, int], torch.Tensor]]) -> None:
        """Record with ``record`` (``node -> channel dim -> channel ids`` to ``(node, dim) ->
        channels x ...``) the passing channels of ``indices`` the cache of ``mode`` lacks:
        :meth:`prefetch_maps` runs a forward for them, ``fxcfp.analyze(..., maps=mode)`` takes
        them from its own (:class:`fxcfp._capture.MapCapture`)."""
        cache = self._cache.maps[mode]
        merged: dict[tuple[str, int], np.ndarray] = {}
        for index in indices:
            channels = self._passing(index).channel
            if channels.size == 0:
                continue
            # layers that read one activation (a conv and its shortcut) share one request
            key = self._source_key(index)
            have = cache.get(key, (np.empty(0, np.int64), None))[0]
            if np.isin(channels, have).all():
                continue
            merged[key] = np.union1d(merged.get(key, have), channels)
        if not merged:
            return
        requests: dict[str, dict[int, torch.Tensor]] = {}
        for (node, dim), ids in merged.items():
            requests.setdefault(node, {})[dim] = torch.from_numpy(ids)
        found = record(requests)
        for key, ids in merged.items():
            cache[key] = (ids, found[key])

    def _take_maps(self, capture: MapCapture) -> None:
        """Store what :meth:`prefetch_maps` of every layer would record in ``capture.mode``,
        taken from the analysis's own forward (``fxcfp.analyze(..., maps=...)``)."""
        self._fill_maps(range(len(self._plan.layers)), cast(MapMode, capture.mode),
                        lambda requests: capture.record(requests, self._sample, self.target,
                                                        self.contrast))

    def _record(self, requests: dict[str, dict[int, torch.Tensor]], mode: MapMode
                ) -> dict[tuple[str, int], torch.Tensor]:
        if mode == "paper":
            return record(self._plan, self._inputs, requests, self._sample)
        inputs, sample = list(self._inputs), self._sample
        if self._plan.traced.method == "fx":  # a symbolic trace runs any batch size
            inputs, sample = [x[sample: sample + 1] for x in inputs], 0
        # the graph runs an eval-mode view: its own flags, never the caller's, are the ones set
        return record_evidence(self._plan.traced.gm, inputs, requests, sample, self.target,
                               self.contrast)

    def _source_key(self, index: int) -> tuple[str, int]:
        # a classifier's maps are drawn on the pre-pool tensor (SPEC "Maps of a layer without
        # location"): its channels are the classifier's input channels, one to one
        layer = self._plan.layers[index]
        return layer.map_node, layer.map_channel_dim

    def _weighted_sum(self, index: int, channels: np.ndarray, weights: np.ndarray,
                      mode: MapMode) -> torch.Tensor:
        """``sum_k weights[k] * X[channels[k]]``, with ``X`` the captured activations (paper) or
        ``ds/dA * A`` (evidence, then rectified): one matrix-vector product, no copy."""
        key = self._source_key(index)
        cache = self._cache.maps[mode]
        if key not in cache or not np.isin(channels, cache[key][0]).all():
            # paper: one targeted forward for this layer; evidence: the pyramid's one
            # backward, for every expanded layer at once
            self.prefetch_maps([self._plan.layers[index].name] if mode == "paper" else None,
                               mode=mode)
        ids, data = cache[key]
        full = np.zeros(len(ids))
        np.add.at(full, np.searchsorted(ids, channels), weights)
        summed = torch.tensordot(torch.from_numpy(full).to(data.dtype), data, dims=1).float()
        # evidence: the voxels that raise the score, as Grad-CAM keeps its positive part
        return summed if mode == "paper" else summed.clamp_min(0)

    def _finish(self, index: int, feature_map: torch.Tensor, up: bool) -> torch.Tensor:
        if not up:
            return feature_map
        shape = self._plan.input_shapes[self._plan.layers[index].pathway]
        return upsample(feature_map, tuple(shape[2:]))

    def kernel_map(self, layer: str, kernel: int, *, upsample: bool = False,
                   mode: MapMode = "paper") -> torch.Tensor:
        """Kernel-wise map of ``(layer, kernel)``.

        Args:
            layer: a layer name from :attr:`layers`.
            kernel: one of that layer's selected kernels that was expanded.
            upsample: resize to the clip's ``T x H x W`` (cubic spline, scaled to [0, 1]).
            mode: ``"paper"`` (SPEC): the mean of the kernel's passing input channels.
                ``"evidence"``: ``relu(mean over passing i of ds/dA[i] * A[i])``, each voxel
                weighted by its first-order contribution to the class's margin over its
                rivals, ``s = y_target - sum_{k != target} q_k y_k`` with ``q`` the softmax of
                the other logits (all of it on the contrast class for a contrastive pyramid):
                softmax-neutral, and evidence every class shares cancels. See
                :mod:`fxcfp._evidence` for why and what was measured.

        Returns:
            A float32 cpu tensor: the shape of the tensor the layer is drawn on (its input, or
            a classifier's pre-pool tensor) without its channel dim, or the clip's with upsample.
        """
        mode = _check_mode("Pyramid.kernel_map", mode)
        index = self._layer(layer)
        passing = self._passing(index)
        kernels, mine = passing.kernel, passing.channel[passing.kernel == kernel]
        if mine.size == 0:
            raise InvalidArgumentError(
                f"Pyramid.kernel_map: kernel {kernel} of layer {layer!r} selected no input "
                "channel (it is not in the pyramid, or lies at max_depth and was not expanded); "
                f"expanded kernels of this layer: {sorted(set(kernels.tolist()))[:12]}"
            )
        feature_map = self._weighted_sum(index, mine, np.full(mine.size, 1.0 / mine.size), mode)
        return self._finish(index, feature_map, upsample)

    def layer_map(self, layer: str, *, upsample: bool = False,
                  mode: MapMode = "paper") -> torch.Tensor:
        """Layer-wise map of ``layer``.

        ``mode="paper"`` (SPEC): the sum over passing ``(kernel, channel)`` pairs of the
        channel's activation, so a channel counts once per kernel that selected it.
        ``mode="evidence"``: ``relu(sum over passing (j, i) of ds/dA[i] * A[i])``, the same
        channels and counts with each voxel weighted by its contribution to the class's margin
        over its rivals ``s`` (see :meth:`kernel_map`). ``upsample`` as in :meth:`kernel_map`.
        """
        mode = _check_mode("Pyramid.layer_map", mode)
        index = self._layer(layer)
        channels = self._passing(index).channel
        if channels.size == 0:
            raise InvalidArgumentError(
                f"Pyramid.layer_map: layer {layer!r} has no expanded kernel in this pyramid")
        # a channel counts once per kernel that selected it
        summed = self._weighted_sum(index, channels, np.ones(channels.size), mode)
        return self._finish(index, summed, upsample)

    def temporal_profile(self, layer: str, *, mode: MapMode = "paper") -> torch.Tensor:
        """The upsampled layer map's mass per frame (sums to 1; zeros for a constant map)."""
        return temporal_profile(self.layer_map(layer, upsample=True, mode=mode))

    def __repr__(self) -> str:
        layers = sum(bool((self._depth[layer.first_id: layer.first_id + layer.out_channels]
                           < UNREACHED).any()) for layer in self._plan.layers)
        return (f"Pyramid(target={self.target}, probability={self.probability:.3f}, "
                f"layers={layers}, kernels={self.num_kernels})")


