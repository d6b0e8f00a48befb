"""The weighted-layer pass (fxcfp/passes/weighted_layers.py) and the channel dim of a layer."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

import fxcfp
from fxcfp.passes import (
    CHANNEL_MAP,
    WEIGHTED_LAYER,
    annotate_channel_maps,
    annotate_weighted_layers,
)
from fxcfp.passes.weighted_layers import input_channel_dim


class TokenHead(nn.Module):
    """A linear layer over ``N x T x F`` features: it reads the last dim, not dim 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 5, 1)
        self.proj = nn.Linear(5, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv(x).transpose(1, 2)  # N x T x 5
        return self.head(torch.relu(self.proj(tokens)).mean(1))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, groups=2)
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.conv(x)).mean((2, 3)))


def _layers(gm: fx.GraphModule) -> dict[str, object]:
    return {n.meta[WEIGHTED_LAYER].name: n.meta[WEIGHTED_LAYER] for n in gm.graph.nodes
            if WEIGHTED_LAYER in n.meta}


def test_input_channel_dim_is_one_for_convs_and_the_last_for_linear_layers() -> None:
    assert input_channel_dim("conv", 5) == 1
    assert input_channel_dim("linear", 2) == 1
    assert input_channel_dim("linear", 3) == 2


def test_a_linear_layer_over_tokens_maps_its_feature_dim() -> None:
    model = TokenHead().eval()
    gm = annotate_weighted_layers(fx.symbolic_trace(model), model)
    annotate_channel_maps(gm, torch.randn(1, 3, 6))
    proj = next(n for n in gm.graph.nodes if n.target == "proj")
    cmap = proj.meta[CHANNEL_MAP]
    assert cmap.input_shape == (1, 6, 5)
    assert cmap.map_channel_dim == 2  # the same dim the plan's LayerInfo.channel_dim names
    # each of proj's 5 input features is one conv kernel (the transpose moves, never mixes)
    conv_first = next(n for n in gm.graph.nodes if n.target == "conv").meta[CHANNEL_MAP]
    first = conv_first.first_id
    assert cmap.sources[:, 0].tolist() == list(range(first, first + 5))
    pyramid = fxcfp.analyze(model, torch.randn(3, 6), threshold=0.0)
    info = pyramid._plan.layers[pyramid._plan.layer_index("proj")]
    assert info.channel_dim == cmap.map_channel_dim == 2


def test_layers_are_named_and_sized_and_a_second_call_is_a_second_layer() -> None:
    model = Twice().eval()
    layers = _layers(annotate_weighted_layers(fx.symbolic_trace(model), model))
    assert set(layers) == {"conv", "conv#1", "fc"}
    conv, fc = layers["conv#1"], layers["fc"]
    assert (conv.kind, conv.groups, conv.in_channels, conv.out_channels) == ("conv", 2, 2, 2)
    assert (fc.kind, fc.in_channels, fc.out_channels, fc.weight) == ("linear", 2, 3, "fc.weight")


def test_a_transposed_convolution_is_refused_naming_the_real_call() -> None:
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    with pytest.raises(fxcfp.UnsupportedOpError,
                       match=r"^fxcfp.analyze_batch: layer '0' \(FX node '_0'\) is a transposed "
                             r"convolution"):
        fxcfp.analyze_batch(model, torch.randn(2, 3, 4, 4))


def test_an_unmapped_op_names_the_call_and_keeps_its_node() -> None:
    class Cumulative(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumsum(self.conv(x), 2).mean(2)

    with pytest.raises(fxcfp.UnsupportedOpError,
                       match=r"^fxcfp.analyze_batch: no channel rule for FX node 'cumsum'") as info:
        fxcfp.analyze_batch(Cumulative().eval(), torch.randn(2, 2, 5))
    assert info.value.fx_node is not None and info.value.fx_node.name == "cumsum"
