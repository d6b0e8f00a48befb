"""The reference implementation is right: hand-computed pyramids and wiring facts.

``tests/reference.py`` is what the core is judged against, so it is checked here on its own,
without ``fxcfp``: small nets whose pyramids are computed by hand in the comments, the
channel maps of each wiring pattern, and the random architectures of ``tests/strategies.py``
(they trace with torch.fx, and every channel of every layer is reached by some producer).
"""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
import torch.fx
from hypothesis import given, settings
from torch import nn

from tests.models import (
    MODELS,
    assert_unchanged,
    make_conv1d,
    make_functional_conv,
    make_resnet3d,
    make_softmax,
    snapshot,
)
from tests.reference import layer_widths, perturbation_channel_map, reference_pyramid
from tests.strategies import architectures


def _set(layer: nn.Module, weight: list) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32).reshape(layer.weight.shape))
        if layer.bias is not None:
            layer.bias.zero_()


class TwoLayers(nn.Module):
    """conv (1x1) → mean → fc, with weights chosen so the pyramid is easy by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 1, bias=False)
        self.fc = nn.Linear(3, 2, bias=False)
        _set(self.conv, [[1, 0], [0, 1], [1, -1]])
        _set(self.fc, [[1, 1, 0], [0.5, -1, 2]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=2))


def _edges(graph: nx.DiGraph) -> dict[tuple[str, str], float]:
    return {(u, v): d["score"] for u, v, d in graph.edges(data=True)}


def test_two_layers_by_hand() -> None:
    # x = [1, 2] → conv out = [1, 2, -1] → logits = [1 + 2, 0.5 - 2 - 2] = [3, -3.5]: target 0.
    # fc:0: a = [1, 2, -1], w = [1, 1, 0] → s = [1, 2, 0] → n = [0.5, 1, 0]; 0.5 >= 0.5 passes.
    # conv:0: a = [1, 2], w = [1, 0] → s = [1, 0] → n = [1, 0]; conv:1: s = [0, 2] → n = [0, 1].
    model = TwoLayers().eval()
    graph = reference_pyramid(model, torch.tensor([[[1.0], [2.0]]]), threshold=0.5)
    assert _edges(graph) == {
        ("fc:0", "conv:0"): 0.5,
        ("fc:0", "conv:1"): 1.0,
        ("conv:0", "input:0"): 1.0,
        ("conv:1", "input:1"): 1.0,
    }
    assert dict(graph.nodes(data="depth")) == {
        "fc:0": 0,
        "conv:0": 1,
        "conv:1": 1,
        "input:0": 2,
        "input:1": 2,
    }
    assert dict(graph.nodes(data="score")) == {
        "fc:0": 1.0,
        "conv:0": 0.5,
        "conv:1": 1.0,
        "input:0": 1.0,
        "input:1": 1.0,
    }
    assert graph.nodes["conv:0"]["layer"] == "conv" and graph.nodes["conv:0"]["channel"] == 0
    assert graph.graph["target"] == 0
    assert graph.graph["threshold"] == 0.5
    assert graph.graph["max_depth"] is None
    assert graph.graph["probability"] == pytest.approx(1 / (1 + math.exp(-6.5)))


def test_two_layers_given_class() -> None:
    # fc:1: a = [1, 2, -1], w = [0.5, -1, 2] → s = [0.5, -2, -2] → n = [1, 0, 0]: only conv:0.
    model = TwoLayers().eval()
    graph = reference_pyramid(model, torch.tensor([[[1.0], [2.0]]]), cls=1, threshold=0.6)
    assert _edges(graph) == {("fc:1", "conv:0"): 1.0, ("conv:0", "input:0"): 1.0}
    assert graph.graph["target"] == 1


def test_max_depth_cuts_expansion() -> None:
    model = TwoLayers().eval()
    x = torch.tensor([[[1.0], [2.0]]])
    assert list(reference_pyramid(model, x, threshold=0.5, max_depth=0).nodes) == ["fc:0"]
    one = reference_pyramid(model, x, threshold=0.5, max_depth=1)
    assert _edges(one) == {("fc:0", "conv:0"): 0.5, ("fc:0", "conv:1"): 1.0}
    assert one.graph["max_depth"] == 1


def test_top_k_keeps_the_best_channels() -> None:
    # fc:0 passes conv:0 (0.5) and conv:1 (1.0); top_k=1 keeps conv:1 only.
    model = TwoLayers().eval()
    graph = reference_pyramid(model, torch.tensor([[[1.0], [2.0]]]), threshold=0.5, top_k=1)
    assert _edges(graph) == {("fc:0", "conv:1"): 1.0, ("conv:1", "input:1"): 1.0}


class FlattenHead(nn.Module):
    """conv → flatten(C x L) → fc: feature f belongs to channel f // L."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 1, bias=False)
        self.fc = nn.Linear(4, 2, bias=False)
        _set(self.conv, [[1], [2]])
        _set(self.fc, [[1, 0.5, 0, 0.5], [0, 0, 0, 0]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def test_flatten_keeps_the_largest_score_per_kernel() -> None:
    # x = [1, 3] → conv:0 = [1, 3], conv:1 = [2, 6] → features [1, 3, 2, 6]; logits [5.5, 0].
    # fc:0: s = [1, 1.5, 0, 3] → n = [1/3, 1/2, 0, 1]; at 0.3 features 0, 1 (→ conv:0) and 3.
    model = FlattenHead().eval()
    x = torch.tensor([[[1.0, 3.0]]])
    assert perturbation_channel_map(model, x)["fc"] == [
        {"conv:0"},
        {"conv:0"},
        {"conv:1"},
        {"conv:1"},
    ]
    graph = reference_pyramid(model, x, threshold=0.3, max_depth=1)
    assert _edges(graph) == {("fc:0", "conv:0"): 0.5, ("fc:0", "conv:1"): 1.0}


class Residual(nn.Module):
    """``fc(mean(a(x) + b(a(x))))``: every fc input channel has two producers."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.a = nn.Conv1d(1, 2, 1)
            self.b = nn.Conv1d(2, 2, 1)
            self.fc = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.fc((y + self.b(y)).mean(dim=2))


def test_residual_add_gives_two_links() -> None:
    model = Residual().eval()
    x = torch.randn(1, 1, 5, generator=torch.Generator().manual_seed(0))
    assert perturbation_channel_map(model, x)["fc"] == [{"a:0", "b:0"}, {"a:1", "b:1"}]
    graph = reference_pyramid(model, x, threshold=0.0)
    root = next(n for n, d in graph.nodes(data="depth") if d == 0)
    edges = _edges(graph)
    for i in range(2):
        # both members of channel i's map get the same edge, with channel i's score
        assert edges[(root, f"a:{i}")] == edges[(root, f"b:{i}")]
    # a:i is reached directly and through b: its depth is the shorter way
    assert all(graph.nodes[f"a:{i}"]["depth"] == 1 for i in range(2))


class Grouped(nn.Module):
    """producer → grouped conv (2 groups of 2) → depth-wise conv → pooled fc."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            self.p = nn.Conv1d(1, 4, 1)
            self.grouped = nn.Conv1d(4, 4, 3, padding=1, groups=2)
            self.dw = nn.Conv1d(4, 4, 3, padding=1, groups=4)
            self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dw(self.grouped(self.p(x))).mean(dim=2))


def test_grouped_conv_links_within_its_group() -> None:
    model = Grouped().eval()
    x = torch.randn(1, 1, 6, generator=torch.Generator().manual_seed(1))
    graph = reference_pyramid(model, x, threshold=0.0)  # every channel with n >= 0 passes
    for j in range(4):
        group = {f"p:{i}" for i in ((0, 1) if j < 2 else (2, 3))}
        assert set(graph.successors(f"grouped:{j}")) == group


def test_depthwise_conv_links_one_channel_with_score_one() -> None:
    model = Grouped().eval()
    x = torch.randn(1, 1, 6, generator=torch.Generator().manual_seed(1))
    graph = reference_pyramid(model, x, threshold=1.0)  # only the best channel of fc passes
    dw = [n for n in graph if n.startswith("dw:")]
    assert dw
    for node in dw:
        j = graph.nodes[node]["channel"]
        assert _edges(graph)[(node, f"grouped:{j}")] == 1.0
        assert list(graph.successors(node)) == [f"grouped:{j}"]


class Constant(nn.Module):
    """Equal weights over equal channels: every score of every kernel ties."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        _set(self.conv, [[1, 1], [1, 1]])
        _set(self.fc, [[1, 1], [1, 1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=2))


def test_all_equal_scores_select_nothing() -> None:
    graph = reference_pyramid(Constant().eval(), torch.ones(1, 2, 3), threshold=0.0)
    assert list(graph.nodes) == ["fc:0"]
    assert graph.number_of_edges() == 0


def test_softmax_output_explains_like_logits() -> None:
    probabilities, shape = make_softmax()
    logits, _ = make_softmax(probabilities=False)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    for threshold in (0.2, 0.6):
        a = reference_pyramid(probabilities, x, threshold=threshold)
        b = reference_pyramid(logits, x, threshold=threshold)
        assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
        assert _edges(a) == _edges(b)
        assert a.graph["target"] == b.graph["target"]


def test_functional_conv_is_named_like_its_fx_node() -> None:
    model, shape = make_functional_conv()
    names = [n.name for n in torch.fx.symbolic_trace(model).graph.nodes if n.op == "call_function"]
    assert "conv3d" in names
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    maps = perturbation_channel_map(model, x)
    assert list(maps) == ["conv1", "conv3d", "fc"]
    assert maps["fc"] == [{f"conv3d:{k}"} for k in range(6)]
    graph = reference_pyramid(model, x, threshold=0.0)
    for j in range(6):  # groups=2: kernels 0-2 read conv1:0-1, kernels 3-5 read conv1:2-3
        if f"conv3d:{j}" in graph:
            group = {"conv1:0", "conv1:1"} if j < 3 else {"conv1:2", "conv1:3"}
            assert set(graph.successors(f"conv3d:{j}")) <= group


def test_channel_maps_of_the_wiring_patterns() -> None:
    """Each hand-written model's distinctive map, written out."""
    x = {
        name: torch.randn(make()[1], generator=torch.Generator().manual_seed(4))
        for name, make in MODELS.items()
    }
    maps = {name: perturbation_channel_map(make()[0], x[name]) for name, make in MODELS.items()}
    assert maps["resnet3d"]["layer2.conv1"] == [
        {f"layer1.conv2:{i}", f"stem:{i}"} for i in range(4)
    ]
    assert maps["resnet3d"]["fc"] == [
        {f"layer2.conv2:{i}", f"layer2.downsample.0:{i}"} for i in range(8)
    ]
    assert maps["inception"]["fc"] == (
        [{"b1:0"}, {"b1:1"}, {"b2b:0"}, {"b2b:1"}, {"b2b:2"}, {"b3:0"}, {"b3:1"}]
        + [{f"stem:{i}"} for i in range(4)]
    )
    assert maps["se"]["fc"] == [{f"conv:{i}", f"excite:{i}"} for i in range(6)]
    assert maps["se"]["squeeze"] == [{f"conv:{i}"} for i in range(6)]
    # view(2, 3) → transpose → view: new channel i is old channel (i % 2) * 3 + i // 2
    assert maps["shuffle"]["conv3"] == [{f"conv2:{(i % 2) * 3 + i // 2}"} for i in range(6)]
    assert maps["chunk"]["right"] == [{"conv1:4"}, {"conv1:5"}]
    assert maps["chunk"]["fc"] == (
        [{"left:0"}, {"left:1"}, {"left:2"}, {"conv1:3"}, {"right:0"}, {"right:1"}, {"conv1:4"}]
    )
    assert maps["chain3d"]["fc"] == [{f"conv2:{f // 8}"} for f in range(64)]
    assert maps["conv2d"]["fc1"] == [{f"conv1:{i}", f"conv2:{i}"} for i in range(6)]
    assert maps["grouped"]["logits"] == [{f"depthwise:{i}"} for i in range(16)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_reference_graph_is_consistent(name: str) -> None:
    """Depth is the BFS distance, score the best incoming edge, channels within the layers."""
    model, shape = MODELS[name]()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    widths = layer_widths(model, x)
    for threshold in (0.3, 0.7):
        graph = reference_pyramid(model, x, threshold=threshold)
        (root,) = [n for n, d in graph.nodes(data="depth") if d == 0]
        assert nx.is_directed_acyclic_graph(graph)
        assert dict(nx.single_source_shortest_path_length(graph, root)) == dict(
            graph.nodes(data="depth")
        )
        for node, data in graph.nodes(data=True):
            assert 0 <= data["channel"] < widths[data["layer"]]
            incoming = [graph.edges[u, node]["score"] for u in graph.predecessors(node)]
            assert data["score"] == (max(incoming) if incoming else 1.0)


def test_reference_leaves_the_model_unchanged() -> None:
    model, shape = make_resnet3d()
    model.train()
    model.layer1.conv1.weight.requires_grad_(False)
    handle = model.fc.register_forward_hook(lambda m, a, o: None)
    snap = snapshot(model)
    threads = torch.get_num_threads()
    reference_pyramid(model, torch.randn(shape), threshold=0.5)
    perturbation_channel_map(model, torch.randn(shape))
    assert_unchanged(model, snap)
    assert torch.get_num_threads() == threads
    handle.remove()


def test_reference_checks_its_options() -> None:
    model, shape = make_conv1d()
    x = torch.randn(shape)
    with pytest.raises(ValueError, match="threshold must be in"):
        reference_pyramid(model, x, threshold=1.5)
    with pytest.raises(ValueError, match="top_k must be"):
        reference_pyramid(model, x, top_k=0)
    with pytest.raises(ValueError, match="batched"):
        reference_pyramid(model, x[0])


@settings(deadline=None, max_examples=15)
@given(architectures())
def test_random_architectures_trace_and_are_fully_mapped(
    arch: tuple[nn.Module, tuple[int, ...]],
) -> None:
    """The strategy's models trace with torch.fx, and no channel is missed by the perturbations.

    Every channel of these models comes from a producer, so an empty map would be a blind spot
    of the reference's perturbation (a cancelled or masked change), not a fact about the model.
    """
    model, shape = arch
    x = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    for layer, channels in perturbation_channel_map(model, x).items():
        assert all(channels), f"{layer}: an input channel with no producer"
