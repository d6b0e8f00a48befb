"""The back-step against the dense back-step it replaced (tests/dense_backstep.py), bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

import fxcfp
from fxcfp._backstep import CHUNK, UNREACHED, LayerTensors, backstep, gate, normalised
from tests.dense_backstep import assert_matches_dense, dense_backstep, dense_gate
from tests.strategies import architectures


def _network(seed: int, batch: int) -> tuple[list[LayerTensors], list[torch.Tensor],
                                              torch.Tensor, int]:
    """A random layered graph of wide layers: each channel map draws up to three producers from
    every earlier layer and the input, so kernels of one layer lie at many depths; pooled inputs
    with dead (zero) channels and ties, some layers grouped, one depth-wise."""
    gen = torch.Generator().manual_seed(seed)

    def pick(options: list[int]) -> int:
        return options[int(torch.randint(len(options), (1,), generator=gen))]

    next_id = pick([3, 40])
    produced = [torch.arange(next_id)]
    layers, pooled = [], []
    in_channels = next_id
    for index in range(5):
        out_channels = pick([1, 70, 300, 520]) if index < 4 else pick([10, 200])
        groups = pick([1, 1, 1, 2]) if in_channels % 2 == 0 and out_channels % 2 == 0 else 1
        if index == 2 and in_channels == out_channels:
            groups = in_channels  # depth-wise
        ids = torch.cat(produced)
        width = pick([1, 2, 3])
        sources = ids[torch.randint(ids.numel(), (in_channels, width), generator=gen)]
        sources[torch.rand(in_channels, width, generator=gen) < 0.2] = -1
        sources[:, 0] = ids[torch.randint(ids.numel(), (in_channels,), generator=gen)]
        weight = torch.randn(out_channels, in_channels // groups, generator=gen)
        a = torch.rand(batch, in_channels, generator=gen)
        a[:, torch.rand(in_channels, generator=gen) < 0.1] = 0.0  # dead channels
        a[:, : in_channels // 10] = 0.5  # ties
        group_of_kernel = (None if groups == 1
                           else torch.arange(out_channels) // (out_channels // groups))
        layers.append((next_id, groups, weight, group_of_kernel, sources))
        pooled.append(a)
        produced.append(torch.arange(next_id, next_id + out_channels))
        next_id += out_channels
        in_channels = out_channels
    total = next_id
    tensors = []
    for first, groups, weight, group_of_kernel, sources in layers:
        members = (sources >= 0).sum(1).to(torch.int32)
        tensors.append(LayerTensors(first, groups, weight, group_of_kernel,
                                    torch.where(sources < 0, total, sources), members))
    last = layers[-1][0]
    roots = last + torch.randint(in_channels, (batch, 2), generator=gen)
    return tensors, pooled, roots, total


def _counted_prefix(layer: LayerTensors, a: torch.Tensor, depth: torch.Tensor, visited: int,
                    limit: int, threshold: float, top_k: int | None) -> int:
    """The dense count of edges over a layer's first ``visited`` kernels in ascending depth."""
    out_channels, per_group = layer.weight.shape
    kernel_depth = depth[layer.first_id: layer.first_id + out_channels]
    order = torch.sort(kernel_depth, stable=True).indices[:visited]
    rows = order[kernel_depth[order] < limit]
    if rows.numel() == 0:
        return 0
    passed = dense_gate(a[None], layer, threshold, top_k, rows)[3][0]
    r, cand = passed.nonzero(as_tuple=True)
    channel = (rows[r] // (out_channels // layer.groups)) * per_group + cand
    return int(layer.members[channel].sum())


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("threshold", "max_depth", "top_k"),
                         [(0.6, None, None), (0.0, None, None), (0.3, 2, None),
                          (1.0, None, None), (0.5, None, 3), (0.6, 3, None)])
def test_early_exit_equals_the_dense_back_step(seed, threshold, max_depth, top_k):
    tensors, pooled, roots, total = _network(seed, batch=3)
    options = {"threshold": threshold, "max_depth": max_depth, "top_k": top_k}
    found = backstep(tensors, pooled, roots, total, **options)
    assert torch.equal(found.depth, dense_backstep(tensors, pooled, roots, total, **options))
    # the sync-free (GPU) form on the same inputs, and its counts are whole layers'
    dense = backstep(tensors, pooled, roots, total, sync=False, **options)
    assert torch.equal(dense.depth, found.depth)
    assert bool((dense.visited == torch.tensor([t.weight.shape[0] for t in tensors])).all())
    limit = UNREACHED if max_depth is None else max_depth
    for b in range(roots.shape[0]):
        for index, layer in enumerate(tensors):
            visited = int(found.visited[b, index])
            assert int(found.edges[b, index]) == _counted_prefix(
                layer, pooled[index][b], found.depth[b], visited, limit, threshold, top_k)
            assert int(dense.edges[b, index]) == _counted_prefix(
                layer, pooled[index][b], dense.depth[b], layer.weight.shape[0], limit,
                threshold, top_k)


def test_the_early_exit_skips_kernels_and_max_depth_skips_layers():
    tensors, pooled, roots, total = _network(3, batch=1)
    wide = [i for i, t in enumerate(tensors) if t.weight.shape[0] > 2 * CHUNK and t.groups == 1]
    assert wide
    found = backstep(tensors, pooled, roots, total, threshold=0.0, max_depth=None, top_k=None)
    # at threshold 0 a kernel selects every channel it can: the first chunk settles them all
    for i in wide:
        if bool((found.depth[0, tensors[i].first_id:][: tensors[i].weight.shape[0]]
                 < UNREACHED).all()):
            assert int(found.visited[0, i]) == CHUNK
    shallow = backstep(tensors, pooled, roots, total, threshold=0.0, max_depth=1, top_k=None)
    assert int(shallow.edges[0, :-1].sum()) == 0  # only the root layer was expanded


class _NoHostReads(TorchFunctionMode):
    """Fails on anything that would wait for a GPU: reading a value back on the host."""

    BANNED = {torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu,
              torch.Tensor.numpy, torch.Tensor.nonzero, torch.nonzero, torch.Tensor.__int__,
              torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.any, torch.Tensor.all}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.BANNED:
            raise AssertionError(f"the back-step read the host: {func}")
        return func(*args, **(kwargs or {}))


def test_the_gpu_form_never_reads_the_host():
    tensors, pooled, roots, total = _network(5, batch=2)
    for max_depth, top_k in ((None, None), (2, 3)):
        with _NoHostReads():
            found = backstep(tensors, pooled, roots, total, threshold=0.6, max_depth=max_depth,
                             top_k=top_k, sync=False)
        assert torch.equal(found.depth, dense_backstep(
            tensors, pooled, roots, total, threshold=0.6, max_depth=max_depth, top_k=top_k))


@settings(deadline=None, max_examples=12)
@given(architectures(), st.integers(0, 2**31 - 1))
def test_pyramids_of_random_architectures_match_the_dense_back_step(arch, seed):
    model, shape = arch
    clip = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    pyramid = fxcfp.analyze(model, clip, threshold=0.5)
    assert_matches_dense(pyramid, thresholds=(0.0, 0.6), depths=(None, 2), top_ks=(None, 2))


def test_gate_is_eq_1_and_2_with_exact_ends():
    pooled = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    weight = torch.tensor([[0.5, 0.1, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0]])
    layer = LayerTensors(0, 1, weight, None, torch.zeros(4, 1, dtype=torch.long))
    scores, low, span, passed = gate(pooled, layer, 0.6, None)
    n = normalised(scores, low, span)
    expected = (scores - scores.amin(-1, keepdim=True)) / (
        scores.amax(-1, keepdim=True) - scores.amin(-1, keepdim=True))
    assert torch.allclose(n, expected)
    assert torch.equal(passed, n >= 0.6)
    assert torch.equal(gate(pooled, layer, 1.0, None)[3][0], n[0] == 1.0)
    assert bool(gate(pooled, layer, 0.0, None)[3].all())
    # top_k keeps the best passing channels, lower index first on ties
    assert gate(pooled, layer, 0.0, 2)[3][0].sum(-1).tolist() == [2, 2]
    assert gate(pooled, layer, 0.0, 2)[3][0, 1].tolist() == [False, False, True, True]


def test_per_sample_rows_gate_like_shared_rows():
    torch.manual_seed(0)
    pooled = torch.rand(2, 8)
    layer = LayerTensors(0, 2, torch.randn(6, 4), torch.arange(6) // 3,
                         torch.zeros(8, 1, dtype=torch.long))
    rows = torch.tensor([[5, 0, 3], [1, 4, 2]])
    per_sample = gate(pooled, layer, 0.5, None, rows)[3]
    for b in range(2):
        assert torch.equal(per_sample[b], gate(pooled[b:b + 1], layer, 0.5, None, rows[b])[3][0])
    assert np.array_equal(per_sample.shape, (2, 3, 4))


def _extension():
    from fxcfp import _fused

    module = _fused.wait()
    if module is None:
        pytest.skip(f"the fused pass cannot be built here: {_fused._state['error']}")
    return module


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("threshold", "max_depth"),
                         [(0.6, None), (0.0, None), (0.3, 2), (1.0, None), (0.6, 3)])
@pytest.mark.parametrize("count", [True, False])
def test_the_fused_pass_equals_the_torch_path(seed, threshold, max_depth, count):
    _extension()
    tensors, pooled, roots, total = _network(seed, batch=3)
    options = {"threshold": threshold, "max_depth": max_depth, "top_k": None}
    fused = backstep(tensors, pooled, roots, total, fused=True, count=count, **options)
    plain = backstep(tensors, pooled, roots, total, fused=False, **options)
    assert torch.equal(fused.depth, plain.depth)
    assert torch.equal(fused.depth, dense_backstep(tensors, pooled, roots, total, **options))
    limit = UNREACHED if max_depth is None else max_depth
    for b in range(roots.shape[0]):
        for index, layer in enumerate(tensors):
            visited = int(fused.visited[b, index])
            if count and layer.members is not None:
                # every expanded kernel counted: the pyramid has nothing left to count
                assert visited == layer.weight.shape[0]
            assert int(fused.edges[b, index]) == _counted_prefix(
                layer, pooled[index][b], fused.depth[b], visited, limit, threshold, None)


def test_the_fused_gate_keeps_the_ends_and_nan():
    module = _extension()
    pooled = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    weight = torch.tensor([[0.5, 0.1, 0.3, 0.2], [1.0, 1.0, 1.0, 1.0], [1.0, float("nan"), 1, 1],
                           [float("inf"), 1.0, 1.0, 1.0], [0.0, -0.0, 0.0, 0.0]])
    layer = LayerTensors(0, 1, weight, None, torch.zeros(4, 1, dtype=torch.long))
    members = torch.ones(4, dtype=torch.int32)
    for threshold in (0.0, 0.25, 0.6, 1.0):
        passed = gate(pooled, layer, threshold, None)[3][0]
        for row in range(weight.shape[0]):
            edges = module.count_rows(pooled[0], weight, torch.tensor([row]), threshold, members)
            assert edges == int(passed[row].sum()), (threshold, row)
        # and through the back-step: kernel `row` at depth 0 gives its passing channels depth 1
        for row in range(weight.shape[0]):
            one = LayerTensors(4, 1, weight[row:row + 1], None, torch.arange(4)[:, None], members)
            found = backstep([one], [pooled], torch.tensor([[4]]), 5, threshold=threshold,
                             max_depth=None, top_k=None, fused=True)
            assert torch.equal(found.depth[0, :4] == 1, passed[row]), (threshold, row)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("threshold", "max_depth", "count"),
                         [(0.6, None, False), (0.0, None, True), (0.3, 2, True), (1.0, None, False)])
def test_the_one_call_equals_the_per_layer_calls(seed, threshold, max_depth, count, monkeypatch):
    _extension()
    from fxcfp import _fused

    tensors, pooled, roots, total = _network(seed, batch=3)
    options = {"threshold": threshold, "max_depth": max_depth, "top_k": None, "count": count}
    whole = backstep(tensors, pooled, roots, total, fused=True, **options)
    # the per-layer C++ calls (what a back-step with an uncovered layer takes): the same code
    # per layer and sample, so the very same kernels are visited
    monkeypatch.setattr(_fused, "plan", lambda module, layers: None)
    per_layer = backstep(tensors, pooled, roots, total, fused=True, **options)
    assert torch.equal(whole.depth, per_layer.depth)
    assert torch.equal(whole.edges, per_layer.edges)
    assert torch.equal(whole.visited, per_layer.visited)


def test_an_uncovered_layer_takes_the_torch_path_beside_the_fused_ones():
    _extension()
    tensors, pooled, roots, total = _network(4, batch=2)
    # a float64 layer: the C++ pass covers float32 only, so this back-step goes layer by layer
    first = tensors[1]
    tensors[1] = LayerTensors(first.first_id, first.groups, first.weight.double(),
                              first.group_of_kernel, first.sources, first.members)
    pooled[1] = pooled[1].double()
    options = {"threshold": 0.6, "max_depth": None, "top_k": None}
    found = backstep(tensors, pooled, roots, total, fused=True, **options)
    assert torch.equal(found.depth, dense_backstep(tensors, pooled, roots, total, **options))
    assert torch.equal(found.depth, backstep(tensors, pooled, roots, total, fused=False,
                                             **options).depth)


def test_the_one_call_takes_strided_pooled_inputs_and_refuses_other_dtypes():
    module = _extension()
    from fxcfp import _fused

    tensors, pooled, roots, total = _network(6, batch=3)
    options = {"threshold": 0.6, "max_depth": None, "top_k": None}
    found = backstep(tensors, pooled, roots, total, fused=True, **options)
    strided = [a.t().contiguous().t() for a in pooled]
    assert not strided[0].is_contiguous()
    again = backstep(tensors, strided, roots, total, fused=True, **options)
    assert torch.equal(found.depth, again.depth) and torch.equal(found.edges, again.edges)
    # a pooled input of another dtype, or int32 roots: not taken, the caller goes layer by layer
    plan = _fused.plan(module, tensors)
    assert module.backstep_all(plan, [a.double() for a in pooled], roots, total, UNREACHED,
                               0.6, False) is None
    assert module.backstep_all(plan, pooled, roots.int(), total, UNREACHED, 0.6, False) is None
    depth, edges, visited = module.backstep_all(plan, pooled, roots, total, UNREACHED, 0.6, False)
    assert torch.equal(depth, found.depth) and torch.equal(edges, found.edges)
    # a root past the sink id would write outside the depths: refused before anything is done
    with pytest.raises(RuntimeError, match="a root id outside"):
        module.backstep_all(plan, pooled, roots + total, total, UNREACHED, 0.6, False)


def test_the_extension_cache_is_per_environment_and_honours_the_cache_variables(
        tmp_path, monkeypatch):
    import sysconfig

    from fxcfp import _fused

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "torch"))
    folder = _fused.cache_directory()
    assert folder.parent == tmp_path / "torch" / "fxcfp"
    for part in (_fused.NAME, f"torch{torch.__version__}", sysconfig.get_config_var("SOABI")):
        assert part in folder.name
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _fused.cache_directory().parent == tmp_path / "xdg" / "fxcfp" / "extensions"
    assert _fused.cache_directory().name == folder.name


def test_an_interrupted_build_leaves_nothing_the_next_one_trips_on(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from fxcfp import _fused

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"build-{int(gone.stdout)}-1"  # a process that exited mid-build
    live = tmp_path / f"build-{os.getppid()}-1"  # one still building
    own = tmp_path / f"build-{os.getpid()}-2"
    for folder in (dead, live, own):
        folder.mkdir()
        (folder / "build.ninja").write_text("")
    _fused._clear_stale(tmp_path)
    assert not dead.exists() and live.exists() and own.exists()

    # a cached module that cannot be loaded (cut short by hand, a disk full) is built again
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    cached = _fused.cache_directory() / f"{_fused.NAME}{_fused._suffix()}"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF cut short")
    built = []
    monkeypatch.setattr(_fused, "_compile", lambda directory: built.append(directory) or "module")
    monkeypatch.setitem(_fused._state, "module", None)
    monkeypatch.setitem(_fused._state, "error", None)
    _fused._build()
    assert built == [cached.parent] and _fused._state["module"] == "module"
    assert _fused._state["error"] is None
