"""Saving and loading pyramids: one compact, versioned, code-free file per pyramid.

A saved pyramid is a NumPy ``.npz`` archive (read with ``allow_pickle=False``, so loading runs no
code): arrays for the depths, the pooled inputs, the channel maps and the passing
``(kernel, channel, score)`` pairs of every expanded kernel, and one JSON document with the
layer table, the target, the options and the format version. The passing pairs are the gate's
own result, so a loaded pyramid rebuilds the graph, the edge counts and ``summary()`` exactly,
without the model; maps need the model and the clip again (or maps saved with ``maps=``).

Pickling a :class:`~fxcfp.Pyramid` goes through the same state (with the clip, without the
model), so a pyramid crosses process boundaries; :meth:`SavedPyramid.with_model` gives the maps
back.

The conversion is driven by the dataclass fields of :class:`~fxcfp.Pyramid`: every field has one
entry in :data:`_FIELDS` (how to save it, how to rebuild it), and a field without an entry is an
error at save time rather than a silently lost value.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._backstep import UNREACHED
from ._errors import FxcfpError, InvalidArgumentError, PyramidFileError
from ._files import atomic_write
from ._plan import LayerInfo, Plan
from ._pyramid import PassingPairs, Pyramid

if TYPE_CHECKING:
    from torch import nn

__all__ = ["FORMAT", "VERSION", "PyramidFileError", "SavedPyramid", "load_pyramid",
           "save_pyramid", "write_edge_list"]

FORMAT = "fxcfp-pyramid"
# Bump on any change a reader of the previous version would misread.
VERSION = 1
_META = "meta.json"


# --- the fields ----------------------------------------------------------------------------------

# Fields saved as plain JSON values; the rest are rebuilt by the functions below. A field added
# to Pyramid must be added here (save_pyramid refuses an unknown one, so a test catches it).
_PLAIN = ("target", "probability", "threshold", "max_depth", "top_k", "contrast", "gate")
# plain fields a file of this version may lack (written before they existed), and their value
_PLAIN_DEFAULTS = {"contrast": None, "gate": "paper"}
_DERIVED = ("logits", "_plan", "_model", "_depth", "_pooled", "_tensors", "_inputs", "_sample",
            "_counted", "_channel_keep")


def _check_fields() -> None:
    names = [f.name for f in dataclasses.fields(Pyramid) if f.init]  # not the cache
    unknown = [n for n in names if n not in _PLAIN + _DERIVED]
    if unknown:
        raise FxcfpError(
            f"Pyramid.save: fxcfp does not know how to save the Pyramid field(s) "
            f"{', '.join(unknown)}; this is a bug in fxcfp (add them to fxcfp/_io.py _PLAIN or "
            "_DERIVED)")


def _smallest_int(values: np.ndarray) -> np.ndarray:
    """``values`` in the narrowest integer type that holds them (the files stay small)."""
    if values.size == 0:
        return values.astype(np.int32)
    low, high = int(values.min()), int(values.max())
    for kind in (np.int8, np.int16, np.int32):
        info = np.iinfo(kind)
        if info.min <= low and high <= info.max:
            return values.astype(kind)
    return values.astype(np.int64)


def _scores(values: np.ndarray) -> np.ndarray:
    """Scores as float32 where that is exact (they come from float32 tensors), else float64."""
    narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow.astype(np.float64), values) else values


def _layer_row(layer: LayerInfo, weight_sum: float | None) -> dict[str, Any]:
    row = {f.name: getattr(layer, f.name) for f in dataclasses.fields(LayerInfo)
           if f.name != "sources"}
    row["input_shape"] = list(row["input_shape"])
    row["weight_sum"] = weight_sum
    return row


def pyramid_state(pyramid: Pyramid, *, maps: Any = None, inputs: bool = False
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON metadata and the arrays that describe ``pyramid`` (see the module docstring)."""
    _check_fields()
    plan = pyramid._plan
    meta: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    from . import __version__
    meta["fxcfp"] = __version__
    fields = {f.name for f in dataclasses.fields(Pyramid)}
    for name in _PLAIN:
        if name in fields:
            meta[name] = getattr(pyramid, name)
    arrays: dict[str, np.ndarray] = {
        "depth": _smallest_int(np.minimum(pyramid._depth, UNREACHED)),
        "logits": pyramid.logits.detach().cpu().numpy(),
        "output_sources": _smallest_int(plan.output_sources.numpy()),
    }
    tensors = pyramid._tensors
    # the model's own pooled weights (a contrastive pyramid's root row is a difference)
    weight_sums = ([float(plan.pooled_weight(layer).to(t.weight.dtype).double().sum())
                    for layer, t in zip(plan.layers, tensors)] if tensors
                   else list(pyramid._cache.weight_sums or [None] * len(plan.layers)))
    meta["layers"] = [_layer_row(layer, s) for layer, s in zip(plan.layers, weight_sums)]
    meta["input_names"] = list(plan.input_names)
    meta["input_ranges"] = [list(r) for r in plan.input_ranges]
    meta["input_shapes"] = [list(s) for s in plan.input_shapes]
    meta["total_ids"] = plan.total_ids
    meta["trace"] = pyramid.trace_method
    kernel, channel, score, offsets = [], [], [], [0]
    for index, layer in enumerate(plan.layers):
        arrays[f"sources/{index}"] = _smallest_int(layer.sources.numpy())
        arrays[f"pooled/{index}"] = pyramid._pooled[index].detach().cpu().numpy()
        passing = pyramid._passing(index)
        kernel.append(passing.kernel)
        channel.append(passing.channel)
        score.append(passing.score)
        offsets.append(offsets[-1] + passing.kernel.size)
    arrays["passing/kernel"] = _smallest_int(np.concatenate(kernel))
    arrays["passing/channel"] = _smallest_int(np.concatenate(channel))
    arrays["passing/score"] = _scores(np.concatenate(score))
    arrays["passing/offsets"] = np.asarray(offsets, dtype=np.int64)
    # every layer's edges, counted once here, so a loaded pyramid needs no weights to count
    arrays["edge_counts"] = np.asarray(pyramid._edge_counts, dtype=np.int64)
    keep = pyramid._channel_keep
    meta["channel_keep"] = keep is not None
    for index, mask in enumerate(keep or ()):
        arrays[f"keep/{index}"] = np.asarray(mask, dtype=bool)  # the evidence gate's channels
    meta["maps"] = {}
    for mode in _modes(maps):
        layers = []
        for level in pyramid.layers:
            index = plan.layer_index(level.name)
            if pyramid._passing(index).kernel.size == 0:
                continue  # a level at max_depth, not expanded: it has no map
            arrays[f"maps/{mode}/{index}"] = _layer_map(pyramid, level.name, mode).numpy()
            layers.append(level.name)
        meta["maps"][mode] = layers
    meta["inputs"] = bool(inputs)
    if inputs:
        saved = pyramid._cache.saved_inputs
        if pyramid._inputs:
            sample = pyramid._sample
            saved = [x[sample: sample + 1].detach().cpu().numpy() for x in pyramid._inputs]
        if saved is None:
            raise InvalidArgumentError(
                "Pyramid.save: inputs=True, but this pyramid was loaded without its clip; pass "
                "clip= to fxcfp.load_pyramid first")
        for k, x in enumerate(saved):
            arrays[f"inputs/{k}"] = np.asarray(x)
    return meta, arrays


def _modes(maps: Any) -> tuple[str, ...]:
    if maps is None:
        return ()
    modes = (maps,) if isinstance(maps, str) else tuple(maps)
    if not all(isinstance(m, str) for m in modes):
        raise InvalidArgumentError(
            f"Pyramid.save: maps must be None, a map mode such as 'paper', or a list of modes; "
            f"got {maps!r}")
    return modes


def _layer_map(pyramid: Pyramid, layer: str, mode: str) -> torch.Tensor:
    """One layer's map in ``mode``; ``paper`` is the default of every fxcfp version."""
    if mode == "paper":
        try:
            return pyramid.layer_map(layer, mode="paper")
        except TypeError:
            return pyramid.layer_map(layer)  # a version without map modes: paper's maps only
    try:
        # any str on purpose: a mode this version does not know is layer_map's to refuse
        return pyramid.layer_map(layer, mode=mode)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgumentError(
            f"Pyramid.save: maps={mode!r} is not a map mode of this fxcfp version (it has "
            "'paper')") from None


# --- writing and reading ---------------------------------------------------------------------------


def save_pyramid(pyramid: Pyramid, path: str | os.PathLike[str], *, maps: Any = None,
                 inputs: bool = False) -> Path:
    """Write ``pyramid`` to ``path`` (see :meth:`fxcfp.Pyramid.save`)."""
    meta, arrays = pyramid_state(pyramid, maps=maps, inputs=inputs)
    return write_state(path, meta, arrays)


def write_state(path: str | os.PathLike[str], meta: dict[str, Any],
                arrays: dict[str, np.ndarray]) -> Path:
    """Write what :func:`pyramid_state` returned to ``path``, atomically and synced: the slow
    half of a save (compression, the disk), which reads nothing of the pyramid, so a dataset
    run does it on a writer thread while the next batch is analysed."""
    path = Path(path)
    with atomic_write(path, binary=True) as file:
        _write_npz(file, meta, arrays)
    return path


def _write_npz(file: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    payload = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    # Any: numpy's stubs would read a key of **arrays as its allow_pickle flag
    entries: dict[str, Any] = {_META.removesuffix(".json"): payload, **arrays}
    np.savez_compressed(file, **entries)


def _read_npz(source: str | os.PathLike[str] | bytes, call: str
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    where = "the pickled pyramid" if isinstance(source, bytes) else f"'{source}'"
    try:
        # a handle of our own: np.load leaves the file it opened open when the zip is truncated
        with (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")) as handle, \
                np.load(handle, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise PyramidFileError(f"{call}: no such file: {where}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise PyramidFileError(
            f"{call}: {where} is not a readable fxcfp pyramid file ({type(err).__name__}: "
            f"{err}); it is corrupt or truncated, or another kind of file. Hint: save it again "
            "with Pyramid.save") from None
    raw = arrays.pop(_META.removesuffix(".json"), None)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8")) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PyramidFileError(
            f"{call}: {where} is an .npz archive but not an fxcfp pyramid (no '{FORMAT}' "
            "metadata). Hint: pass a file written by Pyramid.save")
    if meta.get("version") != VERSION:
        raise PyramidFileError(
            f"{call}: {where} is format version {meta.get('version')} (written by fxcfp "
            f"{meta.get('fxcfp')}); this fxcfp reads version {VERSION}. Hint: load it with the "
            "fxcfp version that wrote it, or analyse the clip again")
    return meta, arrays


def _plan_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Plan:
    """A model-free plan: the layer table and the id tables, no traced graph."""
    layers = []
    names = {f.name for f in dataclasses.fields(LayerInfo)}
    for index, row in enumerate(meta["layers"]):
        fields = {key: value for key, value in row.items() if key in names}
        fields["input_shape"] = tuple(fields["input_shape"])
        fields["sources"] = torch.from_numpy(arrays[f"sources/{index}"].astype(np.int64))
        layers.append(LayerInfo(**fields))
    input_names = tuple(meta["input_names"])
    input_ranges = tuple(tuple(r) for r in meta["input_ranges"])
    total = int(meta["total_ids"])
    id_owner = np.empty(total, dtype=np.int64)
    id_channel = np.empty(total, dtype=np.int64)
    ranges = [(layer.first_id, layer.out_channels) for layer in layers] + list(input_ranges)
    for owner, (first, count) in enumerate(ranges):
        id_owner[first: first + count] = owner
        id_channel[first: first + count] = np.arange(count)
    return Plan(
        traced=None, layers=tuple(layers), capture=None,  # type: ignore[arg-type]
        pooled_index=tuple(range(len(layers))),
        output_sources=torch.from_numpy(arrays["output_sources"].astype(np.int64)),
        total_ids=total, input_names=input_names, input_ranges=input_ranges,
        input_shapes=tuple(tuple(s) for s in meta["input_shapes"]),
        id_owner=id_owner, id_channel=id_channel,
        names=tuple(layer.name for layer in layers) + input_names,
    )


def _passing_from_state(arrays: dict[str, np.ndarray], layers: int) -> dict[int, PassingPairs]:
    offsets = arrays["passing/offsets"]
    kernel = arrays["passing/kernel"].astype(np.int64)
    channel = arrays["passing/channel"].astype(np.int64)
    score = arrays["passing/score"].astype(np.float64)
    return {i: PassingPairs(kernel[offsets[i]: offsets[i + 1]], channel[offsets[i]: offsets[i + 1]],
                        score[offsets[i]: offsets[i + 1]]) for i in range(layers)}


class SavedPyramid(Pyramid):
    """A pyramid rebuilt from a file or a pickle, without its model.

    Everything structural works as on the original (``layers``, ``graph``, ``num_edges``,
    ``summary()``, the exports); maps come from the maps saved with ``save(..., maps=...)``, or
    from :meth:`with_model`.
    """

    def with_model(self, model: nn.Module, clip: Any = None) -> Pyramid:
        """The same pyramid with its model (and clip) again, so every map works.

        Args:
            model: the model that was analysed (checked against the saved layer table and
                pooled weights).
            clip: the clip analysed (``C x T x H x W``, batched, or a list per pathway); not
                needed when the pyramid was saved or pickled with its inputs.
        """
        return _attach(self, model, clip, "SavedPyramid.with_model")

    def _saved_map(self, call: str, layer: str, mode: str) -> torch.Tensor:
        index = self._layer(layer)
        saved = self._cache.saved_maps.get(mode, {})
        if index not in saved:
            modes = ", ".join(sorted(self._cache.saved_maps)) or "none"
            raise InvalidArgumentError(
                f"{call}: this pyramid was loaded without its model, and no {mode!r} map of "
                f"layer {layer!r} was saved (saved map modes: {modes}). Hint: "
                "fxcfp.load_pyramid(path, model=model, clip=clip), or save it with "
                f"Pyramid.save(path, maps={mode!r})")
        return saved[index]

    def layer_map(self, layer: str, *, upsample: bool = False, mode: str = "paper",
                  **options: Any) -> torch.Tensor:
        feature_map = self._saved_map("Pyramid.layer_map", layer, mode).clone()
        return self._finish(self._layer(layer), feature_map, upsample)

    def kernel_map(self, layer: str, kernel: int, *, upsample: bool = False,
                   **options: Any) -> torch.Tensor:
        raise InvalidArgumentError(
            f"Pyramid.kernel_map: kernel {kernel} of {layer!r}: this pyramid was loaded without "
            "its model, and kernel maps are not saved. Hint: fxcfp.load_pyramid(path, "
            "model=model, clip=clip) or SavedPyramid.with_model(model, clip)")

    def prefetch_maps(self, layers: Any = None, **options: Any) -> None:
        return None  # the saved maps are all there is

    def _pair_edges(self, index: int, rows: np.ndarray) -> int:
        # the edges of kernels ``rows`` from the saved passing pairs: without the model there
        # are no weights to run the gate again on, and the pairs are the gate's own result
        passing = self._passing(index)
        members = (self._plan.layers[index].sources >= 0).sum(1).numpy()
        return int(members[passing.channel[np.isin(passing.kernel, rows)]].sum())


def _counted_from_state(arrays: dict[str, np.ndarray], plan: Plan
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """The saved edge counts as the back-step's ``(edges, visited)``: every kernel visited."""
    if "edge_counts" not in arrays:
        return None
    visited = np.asarray([layer.out_channels for layer in plan.layers], dtype=np.int64)
    return arrays["edge_counts"].astype(np.int64), visited


def pyramid_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray], *,
                       model: nn.Module | None = None, clip: Any = None,
                       call: str = "fxcfp.load_pyramid") -> Pyramid:
    """Rebuild a pyramid from :func:`pyramid_state`'s output."""
    try:
        plan = _plan_from_state(meta, arrays)
        passing = _passing_from_state(arrays, len(plan.layers))
        values: dict[str, Any] = {name: meta[name] if name not in _PLAIN_DEFAULTS
                  else meta.get(name, _PLAIN_DEFAULTS[name]) for name in _PLAIN}
        keep = (tuple(arrays[f"keep/{i}"].astype(bool) for i in range(len(plan.layers)))
                if meta.get("channel_keep") else None)
        pyramid = SavedPyramid(
            **values, logits=torch.from_numpy(arrays["logits"]), _plan=plan,
            _model=None, _depth=arrays["depth"].astype(np.int32),  # type: ignore[arg-type]
            _pooled=tuple(torch.from_numpy(arrays[f"pooled/{i}"])
                          for i in range(len(plan.layers))),
            _tensors=(), _inputs=(), _sample=0, _channel_keep=keep,
            _counted=_counted_from_state(arrays, plan))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise PyramidFileError(
            f"{call}: the pyramid file is incomplete or corrupt ({type(err).__name__}: {err}). "
            "Hint: save it again with Pyramid.save") from None
    cache = pyramid._cache
    cache.passing = passing
    cache.passing_kept = sum(p.kernel.size for p in passing.values())
    cache.weight_sums = [row.get("weight_sum") for row in meta["layers"]]
    cache.trace_method = meta.get("trace")
    for mode, names in meta.get("maps", {}).items():
        cache.saved_maps[mode] = {plan.layer_index(n): torch.from_numpy(arrays[
            f"maps/{mode}/{plan.layer_index(n)}"]) for n in names}
    if meta.get("inputs"):
        cache.saved_inputs = [arrays[f"inputs/{k}"] for k in range(len(plan.input_shapes))]
    if model is not None:
        return _attach(pyramid, model, clip, call)
    if clip is not None:
        raise InvalidArgumentError(f"{call}: clip= needs model= too (maps run the model)")
    return pyramid


def _attach(saved: SavedPyramid, model: nn.Module, clip: Any, call: str) -> Pyramid:
    """A live :class:`Pyramid` on ``model``: the plan traced again and checked against the saved
    layer table, the clip as analysed, the passing pairs as saved."""
    from ._analyzer import _cached_analyzer
    from ._checks import prepare_inputs

    state = saved._cache
    if clip is None:
        if state.saved_inputs is None:
            raise InvalidArgumentError(
                f"{call}: the maps need the clip that was analysed; pass clip=, or save the "
                "pyramid with Pyramid.save(path, inputs=True)")
        clip = [torch.from_numpy(x) for x in state.saved_inputs]
        if len(clip) == 1:
            clip = clip[0]
    analyzer = _cached_analyzer(model, call)
    inputs, as_list = prepare_inputs(call, model, clip, batched=False)
    from ._capture import eval_mode
    with eval_mode(model):
        plan, _ = analyzer._plan(inputs, as_list)  # the plan, and a capture we do not need
    _check_same(saved, plan, call)
    pooled = tuple(p.to(inputs[0].device) for p in saved._pooled)
    tensors = tuple(analyzer._layer_tensors(plan, inputs[0].device, pooled[0].dtype))
    sums = state.weight_sums or []
    for layer, tensor, expected in zip(plan.layers, tensors, sums):
        actual = float(tensor.weight.double().sum())
        if expected is not None and not np.isclose(actual, expected, rtol=1e-6, atol=1e-9):
            raise InvalidArgumentError(
                f"{call}: the model's weights differ from the ones analysed (layer "
                f"{layer.name!r}: pooled weights sum to {actual:.6g}, the file says "
                f"{expected:.6g}). Hint: pass the model as it was when the pyramid was made")
    contrast = getattr(saved, "contrast", None)
    if contrast is not None:
        from ._contrast import contrast_tensors  # the root row is the class difference

        tensors = tuple(contrast_tensors(call, list(tensors), plan.output_sources,
                                         saved.target, contrast))
    if saved._channel_keep is not None:  # the evidence gate's closed channels link nowhere
        from ._gate import gated_tensors
        tensors = gated_tensors(tensors, saved._channel_keep, plan.total_ids)
    values = {f.name: getattr(saved, f.name) for f in dataclasses.fields(Pyramid) if f.init}
    values.update(_plan=plan, _model=model, _pooled=pooled, _tensors=tensors,
                  _inputs=tuple(inputs), _sample=0)
    live = Pyramid(**values)
    live._cache.passing = dict(state.passing)
    live._cache.passing_kept = state.passing_kept
    return live


def _check_same(saved: Pyramid, plan: Plan, call: str) -> None:
    mine = saved._plan
    if plan.total_ids != mine.total_ids or len(plan.layers) != len(mine.layers):
        raise InvalidArgumentError(
            f"{call}: the model does not match the saved pyramid ({len(plan.layers)} weighted "
            f"layers and {plan.total_ids} channels here, {len(mine.layers)} and "
            f"{mine.total_ids} in the file). Hint: pass the model that was analysed")
    for new, old in zip(plan.layers, mine.layers):
        if (new.name, new.first_id, new.out_channels, new.in_channels, new.groups) != (
                old.name, old.first_id, old.out_channels, old.in_channels, old.groups) or \
                not torch.equal(new.sources, old.sources):
            raise InvalidArgumentError(
                f"{call}: the model does not match the saved pyramid at layer {old.name!r} "
                f"(here: {new.name!r}, {new.out_channels} kernels). Hint: pass the model that "
                "was analysed")


def load_pyramid(path: str | os.PathLike[str], model: nn.Module | None = None, *,
                 clip: Any = None) -> Pyramid:
    """Read a pyramid written by :meth:`fxcfp.Pyramid.save`.

    Args:
        path: the file.
        model: the model that was analysed; with it (and the clip) the maps work again. Without
            it, everything but the maps works, and maps saved with ``save(..., maps=...)``.
        clip: the clip analysed, when the file does not hold it (``save(..., inputs=True)``).

    Returns:
        The pyramid: a :class:`SavedPyramid` without a model, a :class:`~fxcfp.Pyramid` with one.

    Raises:
        PyramidFileError: not a pyramid file, another format version, or a corrupt file.

    Example:
        >>> import pathlib, tempfile, torch, torchvision, fxcfp
        >>> model = torchvision.models.video.r3d_18()
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "p.fxcfp"
        >>> fxcfp.analyze(model, torch.randn(3, 8, 56, 56)).save(path)
        >>> print(fxcfp.load_pyramid(path).summary())
        class ... (p=...), threshold 0.6, max_depth none: ... kernels in ... layers, ... edges
        ...
    """
    meta, arrays = _read_npz(path, "fxcfp.load_pyramid")
    return pyramid_from_state(meta, arrays, model=model, clip=clip)


# --- pickling -----------------------------------------------------------------------------------


def _unpickle(payload: bytes) -> Pyramid:
    meta, arrays = _read_npz(payload, "pickle.loads")
    return pyramid_from_state(meta, arrays, call="pickle.loads")


def reduce_pyramid(pyramid: Pyramid) -> tuple[Any, tuple[bytes]]:
    """``Pyramid.__reduce__``: the saved state with the clip, no code and no model."""
    buffer = io.BytesIO()
    meta, arrays = pyramid_state(pyramid, inputs=bool(pyramid._inputs) or
                                 pyramid._cache.saved_inputs is not None)
    # maps a loaded pyramid carries travel with it
    for mode, saved in pyramid._cache.saved_maps.items():
        meta["maps"][mode] = [pyramid._plan.layers[i].name for i in saved]
        for index, value in saved.items():
            arrays[f"maps/{mode}/{index}"] = value.numpy()
    _write_npz(buffer, meta, arrays)
    return _unpickle, (buffer.getvalue(),)


# --- edge lists ---------------------------------------------------------------------------------


def edge_table(pyramid: Pyramid) -> dict[str, np.ndarray]:
    """The class dependency graph's edges as columns: ``src_layer``/``dst_layer`` (indices into
    ``layer_names``), ``src_channel``/``dst_channel`` and ``score``; built one layer at a time,
    so no networkx graph is needed."""
    plan = pyramid._plan
    columns: dict[str, list[np.ndarray]] = {k: [] for k in (
        "src_layer", "src_channel", "dst_layer", "dst_channel", "score")}
    for index in range(len(plan.layers)):
        if pyramid._expanded(index).size == 0:
            continue
        edges = pyramid._layer_edges(index)
        columns["src_layer"].append(plan.id_owner[edges.src])
        columns["src_channel"].append(plan.id_channel[edges.src])
        columns["dst_layer"].append(plan.id_owner[edges.dst])
        columns["dst_channel"].append(plan.id_channel[edges.dst])
        columns["score"].append(edges.score)
    out = {}
    for key, parts in columns.items():
        joined = np.concatenate(parts) if parts else np.empty(0)
        out[key] = _scores(joined.astype(np.float64)) if key == "score" else _smallest_int(
            joined.astype(np.int64))
    return out


def write_edge_list(pyramid: Pyramid, path: str | os.PathLike[str]) -> Path:
    """Write the edges as ``.npz`` or ``.parquet`` (by the suffix): see
    :meth:`fxcfp.Pyramid.to_edge_list`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".parquet"):
        raise InvalidArgumentError(
            f"Pyramid.to_edge_list: '{path}' must end in .npz or .parquet (the two edge-list "
            "formats)")
    table = edge_table(pyramid)
    names = np.array(pyramid._plan.names)
    if suffix == ".npz":
        with atomic_write(path, binary=True) as file:
            members: dict[str, Any] = {"layer_names": names, **table}
            np.savez_compressed(file, **members)
        return path
    pa, pq = _pyarrow("Pyramid.to_edge_list")
    dictionary = pa.array(names.tolist(), pa.string())
    columns = {}
    for key, values in table.items():
        if key.endswith("_layer"):
            indices = pa.array(values.astype(np.int32))
            columns[key] = pa.DictionaryArray.from_arrays(indices, dictionary)
        else:
            columns[key] = pa.array(values)
    with atomic_write(path, binary=True) as file:
        pq.write_table(pa.table(columns), file, compression="zstd")
    return path


def _pyarrow(call: str) -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise FxcfpError(
            f"{call}: Parquet files need pyarrow ({err}). Hint: pip install 'fxcfp[dataset]', "
            "or write .npz") from err
    return pa, pq
