"""The public calls: what they return, every bad input, and the user's model left untouched."""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxcfp


class Small3d(nn.Module):
    """conv -> bn -> relu -> residual block -> pooled linear head."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm3d(8)
        self.conv1 = nn.Conv3d(8, 8, 3, padding=1)
        self.conv2 = nn.Conv3d(8, 8, 3, padding=1, groups=2)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.conv2(F.relu(self.conv1(x))))
        return self.fc(self.drop(x.mean((2, 3, 4))))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return Small3d()


def _clip() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 4, 8, 8)


def test_analyze_returns_a_pyramid_rooted_at_the_class():
    model = _model()
    pyramid = fxcfp.analyze(model, _clip(), 2, threshold=0.5)
    assert pyramid.target == 2
    expected = torch.softmax(model.eval()(_clip()[None]), 1)[0, 2].item()
    assert pyramid.probability == pytest.approx(expected, rel=1e-5)
    assert pyramid.logits.shape == (5,)
    assert pyramid.root == "fc:2"
    assert pyramid.layers[0].name == "fc" and pyramid.layers[0].kernels == (2,)
    assert [level.name for level in pyramid.layers] == ["fc", "conv2", "conv1", "stem"]
    graph = pyramid.graph
    assert graph.nodes["fc:2"] == {"layer": "fc", "channel": 2, "depth": 0, "score": 1.0}
    assert graph.graph["target"] == 2 and graph.graph["threshold"] == 0.5
    assert nx.is_directed_acyclic_graph(graph)
    assert all(graph.nodes[n]["layer"] == "input" for n in graph if graph.out_degree(n) == 0)


def test_default_class_is_the_argmax():
    model = _model()
    pyramid = fxcfp.analyze(model, _clip())
    assert pyramid.target == int(model.eval()(_clip()[None]).argmax())


def test_residual_add_links_both_operands():
    pyramid = fxcfp.analyze(_model(), _clip(), 0, threshold=0.0)
    children = {pyramid.graph.nodes[c]["layer"] for c in pyramid.graph.successors("fc:0")}
    # fc reads relu(x + conv2(...)): both the block's conv2 and the stem reach it
    assert children == {"conv2", "stem"}


def test_grouped_conv_links_only_its_group():
    pyramid = fxcfp.analyze(_model(), _clip(), 0, threshold=0.0)
    for node in pyramid.graph:
        data = pyramid.graph.nodes[node]
        if data["layer"] != "conv2":
            continue
        group = data["channel"] // 4
        conv1_children = [c for c in pyramid.graph.successors(node)
                          if pyramid.graph.nodes[c]["layer"] == "conv1"]
        assert conv1_children
        assert {pyramid.graph.nodes[c]["channel"] // 4 for c in conv1_children} == {group}


def test_max_depth_and_top_k_limit_the_pyramid():
    model, clip = _model(), _clip()
    full = fxcfp.analyze(model, clip, 1, threshold=0.0)
    one = fxcfp.analyze(model, clip, 1, threshold=0.0, max_depth=1)
    assert max(d for _, d in one.graph.nodes(data="depth")) == 1
    assert set(one.graph) < set(full.graph)
    single = fxcfp.analyze(model, clip, 1, threshold=0.0, top_k=1)
    fc_children = list(single.graph.successors("fc:1"))
    # top_k=1 keeps one input channel of fc, which links to the kernels of both add operands
    assert {single.graph.nodes[c]["channel"] for c in fc_children} == {
        single.graph.nodes[fc_children[0]]["channel"]}


def test_graph_round_trips_through_graphml_and_json(tmp_path):
    pyramid = fxcfp.analyze(_model(), _clip(), 3, threshold=0.4)
    pyramid.to_graphml(tmp_path / "p.graphml")
    back = nx.read_graphml(tmp_path / "p.graphml")
    assert set(back.nodes) == set(pyramid.graph.nodes)
    assert set(back.edges) == set(pyramid.graph.edges)
    for node, data in pyramid.graph.nodes(data=True):
        assert back.nodes[node] == data
    assert back.graph["max_depth"] == -1 and back.graph["target"] == 3
    pyramid.to_json(tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    assert len(data["nodes"]) == pyramid.graph.number_of_nodes()
    assert len(data["edges"]) == pyramid.graph.number_of_edges()


def test_summary_lists_every_level():
    pyramid = fxcfp.analyze(_model(), _clip(), 0, threshold=0.5)
    text = pyramid.summary()
    assert text.startswith("class 0 (p=")
    for level in pyramid.layers:
        assert f"{len(level.kernels)}/{level.total}" in text
    assert "input" in text.splitlines()[-1]


def test_analyze_batch_matches_single_calls():
    model = _model()
    torch.manual_seed(3)
    clips = torch.randn(3, 3, 4, 8, 8)
    batch = fxcfp.analyze_batch(model, clips, [0, None, 4], threshold=0.5)
    assert [p.target for p in batch][0] == 0 and batch[2].target == 4
    for i, pyramid in enumerate(batch):
        single = fxcfp.analyze(model, clips[i], pyramid.target, threshold=0.5)
        assert set(single.graph.edges) == set(pyramid.graph.edges)
        assert single.probability == pytest.approx(pyramid.probability, rel=1e-4)


def test_analyzer_reuses_its_trace_and_follows_weight_updates():
    model = _model()
    analyzer = fxcfp.Analyzer(model)
    first = analyzer.analyze(_clip(), 0, threshold=0.5)
    assert len(analyzer._plans) == 1
    with torch.no_grad():
        model.fc.weight[0].neg_()
    second = analyzer.analyze(_clip(), 0, threshold=0.5)
    assert len(analyzer._plans) == 1
    assert set(first.graph.successors("fc:0")) != set(second.graph.successors("fc:0"))


@pytest.mark.parametrize("reader", ["compiled", "python"])
def test_the_pooled_weights_follow_in_place_updates_and_swapped_data(reader, monkeypatch):
    from fxcfp import _fused

    if reader == "compiled" and _fused.wait() is None:
        pytest.skip(f"the C++ extension cannot be built here: {_fused._state['error']}")
    if reader == "python":
        monkeypatch.setattr(_fused, "loaded", lambda: None)
    model = _model()
    analyzer = fxcfp.Analyzer(model)

    def pooled_fc() -> torch.Tensor:  # the pooled weight the back-step used
        pyramid = analyzer.analyze(_clip(), 0, threshold=0.5)
        return pyramid._tensors[pyramid._plan.layer_index("fc")].weight

    first = pooled_fc().clone()
    assert torch.equal(pooled_fc(), first)
    with torch.no_grad():
        model.fc.weight.mul_(2)  # an optimizer's step: the parameter's version moves
    assert torch.equal(pooled_fc(), 2 * first)
    model.fc.weight.data = -3 * first  # new memory, the version where it was
    assert torch.equal(pooled_fc(), -3 * first)
    assert len(analyzer._plans) == 1


def test_the_compiled_weight_versions_read_only_the_parameters_the_plan_was_built_with():
    from fxcfp import _fused

    extension = _fused.wait()
    if extension is None:
        pytest.skip(f"the C++ extension cannot be built here: {_fused._state['error']}")
    layer = nn.Linear(2, 3)
    owners = [(layer._parameters, "weight", layer.weight)]
    before = extension.weight_versions(owners)
    assert before == (layer.weight._version, layer.weight.data_ptr())
    with torch.no_grad():
        layer.weight.add_(1)
    assert extension.weight_versions(owners) == (before[0] + 1, before[1])
    layer.weight = nn.Parameter(torch.zeros(3, 2))  # another parameter: read in Python
    assert extension.weight_versions(owners) is None


# --- the user's model is never changed ----------------------------------------------------------


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "grad": [p.requires_grad for p in model.parameters()],
        "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks),
                   dict(m._backward_hooks)) for m in model.modules()],
    }


def _assert_same(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert before["training"] == after["training"]
    assert before["grad"] == after["grad"]
    assert before["hooks"] == after["hooks"]


def test_model_in_training_mode_is_analysed_in_eval_mode_and_left_training():
    model = _model().train()
    model.fc.weight.requires_grad_(False)
    handle = model.conv1.register_forward_hook(lambda *args: None)
    before = _snapshot(model)
    pyramid = fxcfp.analyze(model, _clip(), 1)
    _assert_same(model, before)
    expected = torch.softmax(model.eval()(_clip()[None]), 1)[0, 1].item()
    model.train()
    assert pyramid.probability == pytest.approx(expected, rel=1e-5)  # eval: dropout off, BN stats
    handle.remove()


def test_model_is_unchanged_when_the_call_raises():
    model = _model().train()
    before = _snapshot(model)
    with pytest.raises(fxcfp.InvalidArgumentError):
        fxcfp.analyze(model, _clip(), 99)
    _assert_same(model, before)


# --- bad input, one by one ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clip", "error", "words"),
    [
        (torch.randn(4, 8, 8), fxcfp.InvalidInputError, "expects a 4-D clip"),
        (torch.randn(1, 1, 3, 4, 8, 8), fxcfp.InvalidInputError, "expects a 4-D clip"),
        (torch.randint(0, 255, (3, 4, 8, 8)), fxcfp.InvalidTypeError, "floating-point"),
        (torch.full((3, 4, 8, 8), math.nan), fxcfp.InvalidInputError, "NaN"),
        (torch.full((3, 4, 8, 8), math.inf), fxcfp.InvalidInputError, "Inf"),
        (torch.randn(2, 3, 4, 8, 8), fxcfp.InvalidInputError, "analyze_batch"),
        ([], fxcfp.InvalidInputError, "empty"),
        (torch.randn(3, 0, 8, 8), fxcfp.InvalidInputError, "empty"),
        ("clip.mp4", fxcfp.InvalidTypeError, "torch.Tensor"),
    ],
)
def test_bad_clip(clip, error, words):
    with pytest.raises(error, match=words):
        fxcfp.analyze(_model(), clip)


def test_bad_errors_are_also_builtin_errors():
    assert issubclass(fxcfp.InvalidInputError, ValueError)
    assert issubclass(fxcfp.InvalidTypeError, TypeError)
    assert issubclass(fxcfp.DeviceMismatchError, ValueError)
    for error in (fxcfp.InvalidInputError, fxcfp.UnsupportedOpError, fxcfp.UntraceableModelError):
        assert issubclass(error, fxcfp.FxcfpError)


def test_empty_batch():
    with pytest.raises(fxcfp.InvalidInputError, match="empty"):
        fxcfp.analyze_batch(_model(), torch.randn(0, 3, 4, 8, 8))


@pytest.mark.parametrize(
    ("cls", "error", "words"),
    [
        (5, fxcfp.InvalidArgumentError, r"cls=5 is out of range; the model has 5 classes"),
        (-1, fxcfp.InvalidArgumentError, "out of range"),
        (1.0, fxcfp.InvalidTypeError, "must be an int"),
        (True, fxcfp.InvalidTypeError, "must be an int"),
    ],
)
def test_bad_class(cls, error, words):
    with pytest.raises(error, match=words):
        fxcfp.analyze(_model(), _clip(), cls)


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"threshold": 1.5}, fxcfp.InvalidArgumentError, r"threshold=1.5 is outside \[0, 1\]"),
        ({"threshold": -0.1}, fxcfp.InvalidArgumentError, "outside"),
        ({"threshold": math.nan}, fxcfp.InvalidArgumentError, "outside"),
        ({"threshold": "0.5"}, fxcfp.InvalidTypeError, "must be a number"),
        ({"max_depth": -1}, fxcfp.InvalidArgumentError, "max_depth=-1 must be >= 0"),
        ({"max_depth": 2.5}, fxcfp.InvalidTypeError, "max_depth must be an int"),
        ({"top_k": 0}, fxcfp.InvalidArgumentError, "top_k=0 must be >= 1"),
    ],
)
def test_bad_options(options, error, words):
    with pytest.raises(error, match=words):
        fxcfp.analyze(_model(), _clip(), **options)


def test_clip_and_model_on_different_devices():
    model = _model().to("meta")
    with pytest.raises(fxcfp.DeviceMismatchError, match="clip is on cpu but the model is on meta"):
        fxcfp.analyze(model, _clip())


def test_not_a_model():
    with pytest.raises(fxcfp.InvalidTypeError, match="torch.nn.Module"):
        fxcfp.analyze(lambda x: x, _clip())


def test_model_without_weighted_layer():
    model = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten())
    with pytest.raises(fxcfp.UnsupportedModelError, match="no weighted layer"):
        fxcfp.analyze(model, _clip())


class TwoHeads(Small3d):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = super().forward(x)
        return out, out


class SpatialOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("model", [TwoHeads(), SpatialOut()])
def test_model_output_must_be_logits(model):
    with pytest.raises(fxcfp.UnsupportedModelError, match="must return N x classes logits"):
        fxcfp.analyze(model, _clip())


def test_model_that_returns_probabilities_is_explained_like_logits():
    model = _model()
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    a = fxcfp.analyze(model, _clip(), 1, threshold=0.5)
    b = fxcfp.analyze(probs, _clip(), 1, threshold=0.5)
    rename = {node: node.replace("0.", "", 1) if node[0].isdigit() else node for node in b.graph}
    assert {(rename[u], rename[v]) for u, v in b.graph.edges} == set(a.graph.edges)


def test_edge_counts_come_without_the_graph_and_big_graphs_are_refused():
    pyramid = fxcfp.analyze(_model(), _clip(), 1, threshold=0.2)
    assert pyramid.num_edges == pyramid.graph.number_of_edges()
    assert pyramid.num_kernels == pyramid.graph.number_of_nodes()
    assert sum(level.edges for level in pyramid.layers) == pyramid.num_edges
    fresh = fxcfp.analyze(_model(), _clip(), 1, threshold=0.2)
    with pytest.raises(fxcfp.GraphTooLargeError, match=r"more than max_edges=10 .*max_depth"):
        fresh.to_networkx(max_edges=10)
    assert fresh.to_networkx(max_edges=None).number_of_edges() == pyramid.num_edges
