"""Saving, loading and pickling pyramids, and the edge-list export."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import zipfile

import networkx as nx
import numpy as np
import pytest
import torch

import fxcfp
from fxcfp._io import VERSION, pyramid_state
from tests.models import (
    MODELS,
    assert_unchanged,
    make_resnet3d,
    make_two_stream,
    snapshot,
)


def _analysed(name: str = "resnet3d", **options):
    model, shape = MODELS[name]()
    clip = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    return model, clip, fxcfp.analyze(model, clip, threshold=0.5, **options)


def _same(loaded: fxcfp.Pyramid, original: fxcfp.Pyramid) -> None:
    assert loaded.layers == original.layers
    assert loaded.summary() == original.summary()
    assert loaded.num_edges == original.num_edges
    assert loaded.num_kernels == original.num_kernels
    assert loaded.root == original.root
    assert (loaded.target, loaded.probability, loaded.threshold, loaded.max_depth,
            loaded.top_k) == (original.target, original.probability, original.threshold,
                              original.max_depth, original.top_k)
    assert torch.equal(loaded.logits, original.logits)
    a, b = loaded.graph, original.graph
    assert nx.utils.graphs_equal(a, b)  # nodes, edges and every attribute
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    assert {(u, v): d for u, v, d in a.edges(data=True)} == {
        (u, v): d for u, v, d in b.edges(data=True)}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_without_the_model_is_identical(name, tmp_path):
    _, _, pyramid = _analysed(name)
    path = tmp_path / "p.fxcfp"
    pyramid.save(path)
    loaded = fxcfp.load_pyramid(path)
    assert isinstance(loaded, fxcfp.SavedPyramid) and isinstance(loaded, fxcfp.Pyramid)
    _same(loaded, pyramid)


def test_round_trip_keeps_depth_and_top_k_options(tmp_path):
    _, _, pyramid = _analysed(max_depth=2, top_k=1)
    pyramid.save(tmp_path / "p.fxcfp")
    _same(fxcfp.load_pyramid(tmp_path / "p.fxcfp"), pyramid)


def test_maps_need_the_model_and_come_back_with_it(tmp_path):
    model, clip, pyramid = _analysed()
    pyramid.save(tmp_path / "p.fxcfp")
    loaded = fxcfp.load_pyramid(tmp_path / "p.fxcfp")
    layer = pyramid.layers[1].name
    with pytest.raises(fxcfp.InvalidArgumentError, match="loaded without its model"):
        loaded.layer_map(layer)
    with pytest.raises(fxcfp.InvalidArgumentError, match="kernel maps are not saved"):
        loaded.kernel_map(layer, pyramid.layers[1].kernels[0])
    snap = snapshot(model)
    live = fxcfp.load_pyramid(tmp_path / "p.fxcfp", model=model, clip=clip)
    assert_unchanged(model, snap)
    assert torch.equal(live.layer_map(layer, upsample=True),
                       pyramid.layer_map(layer, upsample=True))
    kernel = pyramid.layers[1].kernels[0]
    assert torch.equal(live.kernel_map(layer, kernel), pyramid.kernel_map(layer, kernel))
    _same(live, pyramid)


def test_saved_maps_draw_without_the_model(tmp_path):
    _, _, pyramid = _analysed()
    pyramid.save(tmp_path / "p.fxcfp", maps="paper")
    loaded = fxcfp.load_pyramid(tmp_path / "p.fxcfp")
    for level in pyramid.layers[:-1]:
        assert torch.equal(loaded.layer_map(level.name), pyramid.layer_map(level.name))
        assert torch.equal(loaded.temporal_profile(level.name),
                           pyramid.temporal_profile(level.name))
    with pytest.raises(fxcfp.InvalidArgumentError, match="no 'evidence' map"):
        loaded.layer_map(pyramid.layers[0].name, mode="evidence")


def test_a_map_mode_the_pyramid_does_not_take_is_refused(tmp_path):
    _, _, pyramid = _analysed()
    with pytest.raises(fxcfp.FxcfpError, match="'nonsense'"):
        pyramid.save(tmp_path / "p.fxcfp", maps="nonsense")
    assert not (tmp_path / "p.fxcfp").exists()


def test_inputs_saved_make_the_clip_unneeded(tmp_path):
    model, _, pyramid = _analysed()
    pyramid.save(tmp_path / "p.fxcfp", inputs=True)
    live = fxcfp.load_pyramid(tmp_path / "p.fxcfp", model=model)
    layer = pyramid.layers[2].name
    assert torch.equal(live.layer_map(layer), pyramid.layer_map(layer))
    with pytest.raises(fxcfp.InvalidArgumentError, match="need the clip"):
        fxcfp.load_pyramid(_saved_plain(pyramid, tmp_path), model=model)


def _saved_plain(pyramid, tmp_path):
    path = tmp_path / "plain.fxcfp"
    pyramid.save(path)
    return path


def test_another_model_is_refused(tmp_path):
    model, clip, pyramid = _analysed()
    path = _saved_plain(pyramid, tmp_path)
    other, shape = MODELS["chain3d"]()
    with pytest.raises(fxcfp.InvalidArgumentError, match="does not match the saved pyramid"):
        fxcfp.load_pyramid(path, model=other, clip=torch.randn(shape))
    retrained, _ = make_resnet3d()
    with torch.no_grad():
        retrained.layer2.conv1.weight.mul_(2)
    with pytest.raises(fxcfp.InvalidArgumentError, match="weights differ"):
        fxcfp.load_pyramid(path, model=retrained, clip=clip)


def test_pickle_crosses_processes_and_maps_return_with_the_model():
    model, clip, pyramid = _analysed()
    restored = pickle.loads(pickle.dumps(pyramid))
    _same(restored, pyramid)
    layer = pyramid.layers[1].name
    live = restored.with_model(model)  # the pickle carries the clip
    assert torch.equal(live.layer_map(layer), pyramid.layer_map(layer))
    # through a real process boundary
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        summary = pool.apply(_summary_of, (pyramid,))
    assert summary == pyramid.summary()


def _summary_of(pyramid: fxcfp.Pyramid) -> str:
    return pyramid.summary()


def test_two_input_pyramid_round_trips(tmp_path):
    model, shapes = make_two_stream()
    clips = [torch.randn(s, generator=torch.Generator().manual_seed(1)) for s in shapes]
    pyramid = fxcfp.analyze(model, clips, threshold=0.3)
    pyramid.save(tmp_path / "p.fxcfp", inputs=True)
    loaded = fxcfp.load_pyramid(tmp_path / "p.fxcfp")
    _same(loaded, pyramid)
    live = fxcfp.load_pyramid(tmp_path / "p.fxcfp", model=model)
    layer = pyramid.layers[0].name
    assert torch.equal(live.layer_map(layer), pyramid.layer_map(layer))


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    _, _, pyramid = _analysed()
    path = _saved_plain(pyramid, tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.fxcfp"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(fxcfp.PyramidFileError, match="corrupt or truncated"):
        fxcfp.load_pyramid(truncated)
    text = tmp_path / "text.fxcfp"
    text.write_text("hello")
    with pytest.raises(fxcfp.PyramidFileError, match="not a readable fxcfp pyramid"):
        fxcfp.load_pyramid(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(fxcfp.PyramidFileError, match="not an fxcfp pyramid"):
        fxcfp.load_pyramid(other)
    with pytest.raises(fxcfp.PyramidFileError, match="no such file"):
        fxcfp.load_pyramid(tmp_path / "missing.fxcfp")


def test_a_missing_array_is_a_clear_error(tmp_path):
    _, _, pyramid = _analysed()
    meta, arrays = pyramid_state(pyramid)
    del arrays["passing/kernel"]
    path = tmp_path / "partial.fxcfp"
    payload = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as file:  # a file, so numpy adds no .npz suffix
        np.savez(file, meta=payload, **arrays)
    with pytest.raises(fxcfp.PyramidFileError, match="incomplete or corrupt"):
        fxcfp.load_pyramid(path)


def test_another_format_version_is_refused(tmp_path):
    _, _, pyramid = _analysed()
    meta, arrays = pyramid_state(pyramid)
    meta["version"] = VERSION + 1
    path = tmp_path / "future.fxcfp"
    with open(path, "wb") as file:
        np.savez(file, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(fxcfp.PyramidFileError, match=f"format version {VERSION + 1}"):
        fxcfp.load_pyramid(path)


def test_the_file_holds_no_pickled_object(tmp_path):
    _, _, pyramid = _analysed()
    path = _saved_plain(pyramid, tmp_path)
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                assert not read(member)[2].hasobject, name


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_edge_list_matches_the_graph(suffix, tmp_path):
    _, _, pyramid = _analysed()
    path = tmp_path / f"edges{suffix}"
    pyramid.to_edge_list(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            names = data["layer_names"].tolist()
            rows = zip([names[i] for i in data["src_layer"]], data["src_channel"].tolist(),
                       [names[i] for i in data["dst_layer"]], data["dst_channel"].tolist(),
                       data["score"].tolist())
            edges = {(f"{a}:{b}", f"{c}:{d}"): s for a, b, c, d, s in rows}
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
        edges = {(f"{a}:{b}", f"{c}:{d}"): s for a, b, c, d, s in zip(
            table["src_layer"], table["src_channel"], table["dst_layer"],
            table["dst_channel"], table["score"])}
    graph = pyramid.graph
    assert len(edges) == graph.number_of_edges() == pyramid.num_edges
    for (u, v), score in edges.items():
        assert graph.edges[u, v]["score"] == pytest.approx(score, rel=1e-7)


def test_edge_list_refuses_an_unknown_suffix(tmp_path):
    _, _, pyramid = _analysed()
    with pytest.raises(fxcfp.InvalidArgumentError, match=r"\.npz or \.parquet"):
        pyramid.to_edge_list(tmp_path / "edges.csv")


@pytest.mark.parametrize("options", [{"contrast": "runner-up"}, {"gate": "evidence"},
                                     {"contrast": 0, "gate": "evidence"}])
def test_contrastive_and_gated_pyramids_round_trip(options, tmp_path):
    model, clip, pyramid = _analysed(**options)
    pyramid.save(tmp_path / "p.fxcfp")
    loaded = fxcfp.load_pyramid(tmp_path / "p.fxcfp")
    _same(loaded, pyramid)
    assert (loaded.contrast, loaded.gate) == (pyramid.contrast, pyramid.gate)
    live = fxcfp.load_pyramid(tmp_path / "p.fxcfp", model=model, clip=clip)
    _same(live, pyramid)
    layer = pyramid.layers[0].name
    assert torch.equal(live.layer_map(layer, mode="evidence"),
                       pyramid.layer_map(layer, mode="evidence"))


def test_contrastive_pyramid_and_evidence_maps_round_trip(tmp_path):
    model, clip, _ = _analysed()
    pyramid = fxcfp.analyze(model, clip, threshold=0.5, contrast="runner-up")
    assert pyramid.contrast is not None
    pyramid.save(tmp_path / "p.fxcfp", maps=("paper", "evidence"))
    loaded = fxcfp.load_pyramid(tmp_path / "p.fxcfp")
    _same(loaded, pyramid)
    assert loaded.contrast == pyramid.contrast
    layer = pyramid.layers[1].name
    for mode in ("paper", "evidence"):
        assert torch.equal(loaded.layer_map(layer, mode=mode), pyramid.layer_map(layer, mode=mode))
    live = fxcfp.load_pyramid(tmp_path / "p.fxcfp", model=model, clip=clip)
    assert live.contrast == pyramid.contrast
    torch.testing.assert_close(live.layer_map(layer, mode="evidence"),
                               pyramid.layer_map(layer, mode="evidence"))


def test_a_loaded_pyramid_saves_again_unchanged(tmp_path):
    _, _, pyramid = _analysed()
    pyramid.save(tmp_path / "a.fxcfp", maps="paper")
    again = fxcfp.load_pyramid(tmp_path / "a.fxcfp")
    again.save(tmp_path / "b.fxcfp", maps="paper")
    twice = fxcfp.load_pyramid(tmp_path / "b.fxcfp")
    _same(twice, pyramid)
    layer = pyramid.layers[1].name
    assert torch.equal(twice.layer_map(layer), pyramid.layer_map(layer))
