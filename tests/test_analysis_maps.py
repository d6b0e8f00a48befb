"""``fxcfp.analyze(..., maps=...)``: the maps recorded by the analysis's own forward pass are
those ``Pyramid.prefetch_maps`` records with a forward of its own, bit for bit (issue #10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fxcfp
from fxcfp import _analyzer
from tests.models import MODELS, assert_unchanged, make_resnet3d, make_two_stream, snapshot
from tests.test_evidence import Block, frozen_in_training

MODES = ("paper", "evidence")


class EditsInPlace(nn.Module):
    """Edits its input and the tensors the maps are drawn on in place, after a layer read them."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 5, 3, padding=1)
        self.b = nn.Conv3d(5, 5, 3, padding=1)
        self.c = nn.Conv3d(5, 4, 1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu_(self.a(x))
        x.mul_(2)  # the clip, after layer a read it
        b = self.b(a)
        a.add_(b)  # layer b's input, after b read it
        c = self.c(torch.relu(a))
        return self.fc(c.mean((2, 3, 4)))


def _seeded(build, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build().eval()


def _assert_same_maps(plain: fxcfp.Pyramid, recorded: fxcfp.Pyramid, mode: str) -> None:
    """The analysis agrees bit for bit, and so does every map of every expanded level."""
    assert torch.equal(plain.logits, recorded.logits)
    assert all(torch.equal(a, b) for a, b in zip(plain._pooled, recorded._pooled, strict=True))
    assert (plain.depths == recorded.depths).all()
    assert plain.num_edges == recorded.num_edges and plain.layers == recorded.layers
    kept = dict(recorded._cache.maps[mode])  # before any map is drawn
    plain.prefetch_maps(None, mode=mode)
    expected = plain._cache.maps[mode]
    assert kept.keys() == expected.keys() and kept
    for key, (ids, data) in expected.items():
        assert (kept[key][0] == ids).all(), key
        assert kept[key][1].device.type == "cpu" and kept[key][1].grad_fn is None, key
        assert torch.equal(kept[key][1], data), key
    for level in plain.layers:
        passing = plain.passing_pairs(level.name)
        if passing.kernel.size == 0:
            continue
        assert torch.equal(plain.layer_map(level.name, mode=mode),
                           recorded.layer_map(level.name, mode=mode)), level.name
        for kernel in sorted(set(passing.kernel.tolist()))[:3]:
            assert torch.equal(plain.kernel_map(level.name, kernel, mode=mode),
                               recorded.kernel_map(level.name, kernel, mode=mode))
    assert recorded._cache.maps[mode].keys() == kept.keys()  # drawing recorded nothing more


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_maps_of_the_analysis_forward_equal_prefetch_maps(name, mode):
    model, shape = MODELS[name]()
    clip = torch.randn(shape[1:], generator=torch.Generator().manual_seed(1))
    plain = fxcfp.Analyzer(model).analyze(clip, threshold=0.5)
    # a fresh Analyzer: its first call (the trace's channel-map pass) and a warm one
    analyzer = fxcfp.Analyzer(model)
    first = analyzer.analyze(clip, threshold=0.5, maps=mode)
    _assert_same_maps(plain, first, mode)
    _assert_same_maps(fxcfp.analyze(model, clip, threshold=0.5),
                      analyzer.analyze(clip, threshold=0.5, maps=mode), mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", [{}, {"contrast": "runner-up"}, {"gate": "evidence"},
                                     {"contrast": 3, "gate": "evidence", "top_k": 2},
                                     {"max_depth": 2}], ids=str)
def test_maps_with_in_place_relus_contrasts_and_the_evidence_gate(options, mode):
    model = _seeded(Block)
    clip = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    _assert_same_maps(fxcfp.analyze(model, clip, 0, threshold=0.3, **options),
                      fxcfp.analyze(model, clip, 0, threshold=0.3, maps=mode, **options), mode)


def test_maps_of_a_model_that_edits_its_input_and_map_tensors_in_place():
    model = _seeded(EditsInPlace)
    clip = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(3))
    before = clip.clone()
    recorded = fxcfp.analyze(model, clip, threshold=0.2, maps="paper")
    assert torch.equal(clip, before)
    _assert_same_maps(fxcfp.analyze(model, clip, threshold=0.2), recorded, "paper")
    # layer a reads the clip itself: its map is drawn on the clip, not on the doubled copy
    counts = torch.bincount(torch.from_numpy(recorded.passing_pairs("a").channel),
                            minlength=3).float()
    assert torch.allclose(recorded.layer_map("a"), torch.tensordot(counts, clip, dims=1),
                          atol=1e-5)
    # its edits after a layer read its input leave no gradient to take: said by name, both ways
    snap = snapshot(model)
    for call in (lambda: fxcfp.analyze(model, clip, threshold=0.2, maps="evidence"),
                 lambda: fxcfp.analyze(model, clip, threshold=0.2).prefetch_maps(
                     mode="evidence")):
        with pytest.raises(fxcfp.UnsupportedModelError,
                           match=r"edits in place a tensor its backward pass needs.*"
                                 r"mode='paper'"):
            call()
    assert_unchanged(model, snap)


@pytest.mark.parametrize("trace", ["fx", "export"])
@pytest.mark.parametrize("mode", MODES)
def test_maps_of_a_two_input_model_on_both_paths(mode, trace):
    model, shapes = make_two_stream()
    generator = torch.Generator().manual_seed(4)
    clips = [torch.randn(s[1:], generator=generator) for s in shapes]
    recorded = fxcfp.Analyzer(model, trace=trace).analyze(clips, threshold=0.4, maps=mode)
    assert recorded.trace_method == trace
    plain = fxcfp.Analyzer(model, trace=trace).analyze(clips, threshold=0.4)
    _assert_same_maps(plain, recorded, mode)


def test_the_maps_cost_no_forward_of_their_own():
    model, shape = make_resnet3d()
    clip = torch.randn(shape[1:], generator=torch.Generator().manual_seed(5))
    calls = []
    handle = model.stem.register_forward_hook(lambda *_: calls.append(1))
    try:
        fxcfp.analyze(model, clip, threshold=0.5)  # the first call: traced and planned
        calls.clear()
        for mode in MODES:
            pyramid = fxcfp.analyze(model, clip, threshold=0.5, maps=mode)
            for level in pyramid.layers:
                pyramid.layer_map(level.name, mode=mode)
        assert len(calls) == 2  # one forward per analysis, none for the maps
        pyramid.layer_map(pyramid.layers[0].name, mode="paper")  # the other mode: its own
        assert len(calls) == 3
    finally:
        handle.remove()


def _captures(monkeypatch) -> list:
    kept = []
    original = _analyzer.capture_maps

    def spy(*args):
        found = original(*args)
        kept.append(found[2])
        return found

    monkeypatch.setattr(_analyzer, "capture_maps", spy)
    return kept


@pytest.mark.parametrize("mode", MODES)
def test_the_model_is_unchanged_and_the_activations_dropped_also_when_the_call_raises(
        mode, monkeypatch):
    model = frozen_in_training()
    clip = torch.randn(3, 4, 8, 8)
    clip_before = clip.clone()
    snap = snapshot(model)
    captures = _captures(monkeypatch)
    pyramid = fxcfp.analyze(model, clip, threshold=0.3, maps=mode)
    assert captures and all(c._kept == {} and c._output is None for c in captures)
    assert pyramid.layer_map("a", mode=mode).shape == (4, 8, 8)
    with pytest.raises(fxcfp.InvalidArgumentError, match="cls=99 is out of range"):
        fxcfp.analyze(model, clip, 99, threshold=0.3, maps=mode)  # refused after the forward
    assert len(captures) == 2 and captures[1]._kept == {} and captures[1]._output is None
    assert_unchanged(model, snap)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(clip, clip_before) and not clip.requires_grad


def test_a_model_error_inside_the_maps_forward_is_a_model_call_error():
    class Fails(Block):
        def forward(self, x):
            if x.shape[2] == 4:
                return super().forward(x)
            raise ValueError("needs 4 frames")

    model = _seeded(Fails)
    snap = snapshot(model)
    fxcfp.analyze(model, torch.randn(3, 4, 8, 8), maps="evidence")
    with pytest.raises(fxcfp.FxcfpError, match="needs 4 frames"):
        fxcfp.analyze(model, torch.randn(3, 5, 8, 8), maps="evidence")
    assert_unchanged(model, snap)


@pytest.mark.parametrize("maps", ["Evidence", "grad", 1, True])
def test_unknown_maps_are_refused_with_the_choices(maps):
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"fxcfp.analyze: maps=.* is not a map mode; use maps='paper' .* "
                             r"or maps='evidence'"):
        fxcfp.analyze(_seeded(Block), torch.randn(3, 4, 8, 8), maps=maps)


def test_analyze_batch_refuses_maps_and_says_what_to_do():
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"fxcfp.analyze_batch: maps='paper' .* one clip only.*"
                             r"fxcfp.analyze\(model, clip, maps=...\) per clip"):
        fxcfp.analyze_batch(_seeded(Block), torch.randn(2, 3, 4, 8, 8), maps="paper")


@pytest.mark.parametrize("mode", MODES)
def test_explain_draws_its_report_from_the_analysis_forward(mode, tmp_path, monkeypatch, capsys):
    from fxcfp._pyramid import Pyramid
    from fxcfp.cli import main
    from tests.test_cli import TINY, VIDEO

    def second_forward(*_):
        raise AssertionError("a map forward of its own")

    monkeypatch.setattr(Pyramid, "_record", second_forward)
    code = main(["explain", VIDEO, "--model", TINY, "--frames", "4", "--size", "32", "--maps",
                 mode, "--levels", "3", "--kernels", "2", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"drawn: <strong>{mode} maps</strong>" in html


@pytest.mark.parametrize("mode", MODES)
def test_maps_inside_the_callers_inference_mode(mode):
    model = _seeded(Block)
    clip = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    expected = fxcfp.analyze(model, clip, threshold=0.3).layer_map("b", mode=mode)
    with torch.inference_mode():  # no autograd graph is recorded in it: the maps leave it
        recorded = fxcfp.analyze(model, clip, threshold=0.3, maps=mode).layer_map("b", mode=mode)
        later = fxcfp.analyze(model, clip, threshold=0.3).layer_map("b", mode=mode)
    assert torch.equal(recorded, expected) and torch.equal(later, expected)


def test_the_evidence_gate_inside_the_callers_inference_mode():
    model = _seeded(Block)
    clip = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    expected = fxcfp.analyze(model, clip, threshold=0.3, gate="evidence")
    with torch.inference_mode():  # the gate's backward leaves it, as the maps' does
        inside = fxcfp.analyze(model, clip, threshold=0.3, gate="evidence")
    assert np.array_equal(inside.depths, expected.depths)
