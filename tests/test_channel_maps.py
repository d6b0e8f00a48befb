"""The channel-map pass: which producer channels reach each input channel of a weighted layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fxcfp


def _maps(model: nn.Module, shape: tuple[int, ...]) -> dict[str, list[set[str]]]:
    """layer -> per input channel, the producer node keys ("<layer>:<k>")."""
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(torch.randn(*shape), threshold=0.5)
    plan = next(iter(analyzer._plans.values()))
    names, owner, channel = plan.names, plan.id_owner, plan.id_channel
    return {
        layer.name: [{f"{names[owner[i]]}:{channel[i]}" for i in row.tolist() if i >= 0}
                     for row in layer.sources]
        for layer in plan.layers
    }


class Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 6, 1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.a(x)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(self.b(x).mean((2, 3)))


def test_channel_shuffle_permutes_channels():
    maps = _maps(Shuffle(), (3, 4, 4))
    # groups of 2 x 3: output channel j comes from input (j % 2) * 3 + j // 2
    assert maps["b"] == [{f"a:{(j % 2) * 3 + j // 2}"} for j in range(6)]


class FlattenHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.fc = nn.Linear(4 * 2 * 3 * 3, 5)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def test_flatten_into_linear_maps_feature_to_channel():
    maps = _maps(FlattenHead(), (3, 2, 3, 3))
    assert maps["fc"] == [{f"conv:{f // 18}"} for f in range(72)]


def test_flatten_head_gives_one_edge_per_kernel_with_the_largest_score():
    torch.manual_seed(0)
    model = FlattenHead().eval()
    clip = torch.randn(3, 2, 3, 3)
    pyramid = fxcfp.analyze(model, clip, 1, threshold=0.0)
    assert sorted(pyramid.graph.successors("fc:1")) == [f"conv:{k}" for k in range(4)]
    # by hand: 72 feature scores of kernel fc:1, min-max normalised, best of each 18 per channel
    with torch.no_grad():
        features = torch.flatten(torch.relu(model.conv(clip[None])), 1)[0].double()
        scores = features * model.fc.weight[1].double()
    n = (scores - scores.min()) / (scores.max() - scores.min())
    for k in range(4):
        edge = pyramid.graph.edges["fc:1", f"conv:{k}"]["score"]
        assert edge == pytest.approx(float(n[k * 18:(k + 1) * 18].max()), abs=1e-6)


class Branches(nn.Module):
    """Inception-like: uneven branches and a pooling branch, concatenated, then chunked."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.b1 = nn.Conv2d(4, 2, 1)
        self.b2a = nn.Conv2d(4, 3, 1)
        self.b2b = nn.Conv2d(3, 3, 3, padding=1)
        self.b3 = nn.Conv2d(4, 1, 1)
        self.left = nn.Conv2d(4, 2, 1)
        self.right = nn.Conv2d(4, 2, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.stem(x))
        pooled = F.max_pool2d(x, 3, 1, 1)
        y = torch.cat([self.b1(x), self.b2b(self.b2a(x)), self.b3(x), pooled[:, :2]], dim=1)
        lo, hi = torch.chunk(y, 2, dim=1)
        return self.fc(torch.cat([self.left(lo), self.right(hi)], 1).mean((2, 3)))


def test_concat_and_chunk_follow_the_branch_that_owns_the_channel():
    maps = _maps(Branches(), (3, 5, 5))
    owners = ["b1:0", "b1:1", "b2b:0", "b2b:1", "b2b:2", "b3:0", "stem:0", "stem:1"]
    assert maps["left"] == [{o} for o in owners[:4]]
    assert maps["right"] == [{o} for o in owners[4:]]
    assert maps["fc"] == [{"left:0"}, {"left:1"}, {"right:0"}, {"right:1"}]


class Gated(nn.Module):
    """Squeeze-excitation and a spatial gate made from the channel mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.se_down = nn.Conv3d(4, 2, 1)
        self.se_up = nn.Conv3d(2, 4, 1)
        self.spatial = nn.Conv3d(1, 1, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        s = torch.sigmoid(self.se_up(torch.relu(self.se_down(x.mean((2, 3, 4), keepdim=True)))))
        x = x * s
        x = x * torch.sigmoid(self.spatial(x.mean(1, keepdim=True)))
        return self.fc(x.mean((2, 3, 4)))


def test_gates_are_links_and_a_channel_mean_reaches_every_channel():
    maps = _maps(Gated(), (3, 2, 4, 4))
    assert maps["se_up"] == [{"se_down:0"}, {"se_down:1"}]
    # x * s links channel c of both operands
    assert maps["spatial"] == [{f"conv:{c}" for c in range(4)} | {f"se_up:{c}" for c in range(4)}]
    assert maps["fc"] == [{f"conv:{c}", f"se_up:{c}", "spatial:0"} for c in range(4)]


class ChannelsLast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.norm = nn.LayerNorm(4)
        self.mlp = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        x = self.norm(self.conv(x).permute(0, 2, 3, 1))
        return self.fc(F.gelu(self.mlp(x)).mean((1, 2)))


def test_linear_over_channels_last_tokens():
    maps = _maps(ChannelsLast(), (3, 4, 4))
    assert maps["mlp"] == [{f"conv:{c}"} for c in range(4)]
    assert maps["fc"] == [{f"mlp:{c}"} for c in range(6)]


class PadChannels(nn.Module):
    """Hara's type-A shortcut: subsample and zero-pad the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.conv(x)
        return self.fc(F.pad(x[:, :, ::2], (0, 0, 0, 0, 0, 0, 1, 1)).mean((2, 3, 4)))


def test_zero_padded_channels_come_from_nobody():
    maps = _maps(PadChannels(), (3, 4, 2, 2))
    assert maps["fc"] == [set(), {"conv:0"}, {"conv:1"}, set()]


class Cumsum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.cumsum(self.conv(x), dim=1).mean((2, 3)))


def test_unknown_op_is_an_error_naming_node_op_and_fix():
    with pytest.raises(fxcfp.UnsupportedOpError) as info:
        fxcfp.analyze(Cumsum(), torch.randn(3, 4, 4))
    message = str(info.value)
    assert "FX node 'cumsum'" in message and "torch.cumsum" in message
    assert "fxcfp.register_channel_rule" in message and "never treats an unknown op" in message


def _swish(x):
    return x * torch.sigmoid(x)


class MyOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)


class LeafAct(nn.Module):
    def forward(self, x):
        return MyOp.apply(x)


class WithLeaf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.act = LeafAct()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_register_a_rule_for_a_leaf_module():
    model = WithLeaf()
    with pytest.raises(fxcfp.FxcfpError):
        fxcfp.Analyzer(model, leaf_modules=(LeafAct,)).analyze(torch.randn(3, 4, 4))
    fxcfp.register_channel_rule(LeafAct, "pointwise")
    pyramid = fxcfp.Analyzer(model, leaf_modules=(LeafAct,)).analyze(torch.randn(3, 4, 4), 0,
                                                                      threshold=0.0)
    assert {pyramid.graph.nodes[c]["layer"] for c in pyramid.graph.successors("fc:0")} == {"conv"}


def test_register_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="unknown rule kind 'identity'"):
        fxcfp.register_channel_rule(torch.cumsum, "identity")


class FunctionalLayers(nn.Module):
    """Weighted layers as functional calls: F.conv2d with groups, and addmm with a transposed
    weight (the form old traces and decompositions produce for nn.Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 1, 1))
        self.dw = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.head_w = nn.Parameter(torch.randn(2, 4))
        self.head_b = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        x = torch.relu(F.conv2d(x, self.w))
        x = F.conv2d(x, self.dw, padding=1, groups=2)
        return torch.addmm(self.head_b, x.mean((2, 3)), self.head_w.t())


def test_functional_conv_and_addmm_are_weighted_layers_named_by_their_node():
    maps = _maps(FunctionalLayers(), (3, 4, 4))
    assert set(maps) == {"conv2d", "conv2d_1", "addmm"}
    assert maps["conv2d_1"] == [{f"conv2d:{c}"} for c in range(4)]
    assert maps["addmm"] == [{f"conv2d_1:{c}"} for c in range(4)]
    pyramid = fxcfp.analyze(FunctionalLayers(), torch.randn(3, 4, 4), 0, threshold=0.0)
    # the grouped functional conv: kernels 0-1 read channels 0-1, kernels 2-3 read 2-3
    assert set(pyramid.graph.successors("conv2d_1:3")) == {"conv2d:2", "conv2d:3"}
