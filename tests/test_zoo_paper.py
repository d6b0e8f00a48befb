"""The paper's six networks: shapes, tracing, published sizes, and the grouping they rely on."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.zoo.mfnet3d import MultiFiberUnit
from fxcfp.zoo.paper import (
    PAPER_BACKSTEP_MS,
    PAPER_GFLOPS,
    PAPER_MIN_CLIP,
    PAPER_NETWORKS,
    i3d,
    mfnet3d,
    resnext3d_101,
)

NAMES = sorted(PAPER_NETWORKS)

# Published parameter counts for 400 classes, in millions:
# - 3D ResNets / ResNeXt: Hara et al., CVPR 2018 ("Can spatiotemporal 3D CNNs retrace the history
#   of 2D CNNs and ImageNet?"), table of architectures: ResNet-50 46.4M, ResNet-101 85.5M,
#   ResNet-152 117.7M, ResNeXt-101 48.3M.
# - MFNet-3D: Chen et al., ECCV 2018 ("Multi-Fiber Networks for Video Recognition"), 8.0M.
# - I3D: Carreira & Zisserman, CVPR 2017 ("Quo Vadis"), Table 1: 25M for the two-stream I3D,
#   so about 12.5M for the RGB stream alone.
PUBLISHED_MILLIONS = {
    "resnet3d_50": 46.4,
    "resnet3d_101": 85.5,
    "resnet3d_152": 117.7,
    "resnext3d_101": 48.3,
    "mfnet3d": 8.0,
    "i3d": 12.5,
}


@pytest.fixture(scope="module", params=NAMES)
def network(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    # Module-scoped and parametrised: pytest builds each big network once and groups its tests.
    torch.manual_seed(0)
    factory, _ = PAPER_NETWORKS[request.param]
    return request.param, factory().eval()


def _on_meta(factory) -> nn.Module:
    # Meta tensors carry shapes without memory, so the 100M-parameter networks build instantly.
    with torch.device("meta"):
        return factory().eval()


def test_registry_holds_the_papers_table() -> None:
    assert set(PAPER_NETWORKS) == set(PAPER_BACKSTEP_MS) == set(PAPER_GFLOPS) == set(PAPER_MIN_CLIP)
    assert {name: theta for name, (_, theta) in PAPER_NETWORKS.items()} == {
        "mfnet3d": 0.6,
        "i3d": 0.65,
        "resnet3d_50": 0.55,
        "resnet3d_101": 0.6,
        "resnet3d_152": 0.6,
        "resnext3d_101": 0.6,
    }
    assert PAPER_BACKSTEP_MS["resnext3d_101"] == 70.49
    assert PAPER_GFLOPS["resnet3d_152"] == 148.91


def test_forward_gives_one_logit_row_per_clip(network: tuple[str, nn.Module]) -> None:
    _, model = network
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 8, 32, 32))
    assert logits.shape == (2, 400)
    assert torch.isfinite(logits).all()


def test_runs_on_its_documented_minimum_clip(network: tuple[str, nn.Module]) -> None:
    name, model = network
    with torch.no_grad():
        assert model(torch.randn(1, 3, *PAPER_MIN_CLIP[name])).shape == (1, 400)
        # Below the minimum, every stride rounds up instead of failing.
        assert model(torch.randn(1, 3, 1, 1, 1)).shape == (1, 400)


def test_symbolic_trace_reproduces_the_model(network: tuple[str, nn.Module]) -> None:
    _, model = network
    gm = fx.symbolic_trace(model)
    clip = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(gm(clip), model(clip))


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_is_near_the_published_one(name: str) -> None:
    model = _on_meta(PAPER_NETWORKS[name][0])
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(PUBLISHED_MILLIONS[name], rel=0.15)


@pytest.mark.parametrize("name", NAMES)
def test_num_classes_sets_the_classifier_width(name: str) -> None:
    small = _on_meta(lambda: PAPER_NETWORKS[name][0](num_classes=7))
    # The classifier is the last weighted layer registered, a Linear or I3D's 1×1×1 conv.
    heads = [m for m in small.modules() if isinstance(m, (nn.Linear, nn.Conv3d))]
    assert heads[-1].weight.shape[0] == 7
    assert small(torch.empty(2, 3, 8, 32, 32, device="meta")).shape == (2, 7)


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        (0, InvalidArgumentError, "num_classes must be >= 1"),
        (4.0, InvalidTypeError, "num_classes must be an int"),
        (True, InvalidTypeError, "num_classes must be an int"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_num_classes_is_rejected(name: str, bad: object, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        _on_meta(lambda: PAPER_NETWORKS[name][0](num_classes=bad))


def test_resnext_middle_convolutions_have_32_groups() -> None:
    model = _on_meta(resnext3d_101)
    middles = {n: m for n, m in model.named_modules() if n.endswith(".conv2")}
    assert len(middles) == 3 + 4 + 23 + 3
    for conv in middles.values():
        assert conv.groups == 32
        # A grouped kernel reads only its group's channels: 1/32 of the input width.
        assert conv.weight.shape[1] == conv.in_channels // 32
    assert model.layer1[0].conv2.in_channels == 128
    assert model.layer4[0].conv3.out_channels == 2048


def test_resnets_follow_hara_layout() -> None:
    model = _on_meta(PAPER_NETWORKS["resnet3d_50"][0])
    names = dict(model.named_modules())
    assert model.conv1.kernel_size == (7, 7, 7) and model.conv1.stride == (1, 2, 2)
    assert "layer1.0.downsample.0" in names and "layer1.1.downsample" not in names
    for stage in ("layer2", "layer3", "layer4"):
        assert names[f"{stage}.0.conv2"].stride == (2, 2, 2)
        assert names[f"{stage}.0.downsample.0"].stride == (2, 2, 2)
    assert all(m.groups == 1 for m in model.modules() if isinstance(m, nn.Conv3d))
    assert model.fc.in_features == 2048


def test_mfnet_fiber_convolutions_have_16_groups() -> None:
    model = _on_meta(mfnet3d)
    units = [m for m in model.modules() if isinstance(m, MultiFiberUnit)]
    assert [len(getattr(model, f"conv{i}")) for i in range(2, 6)] == [3, 4, 6, 3]
    assert len(units) == 16
    for unit in units:
        assert unit.conv_m1.conv.groups == 16
        # The first unit of a stage mixes with a plain 1×1×1; the others keep the fibers apart.
        first = unit.conv_w1 is not None
        assert unit.conv_m2.conv.groups == (1 if first else 16)
        assert unit.conv_i1.conv.groups == unit.conv_i2.conv.groups == 1
    widths = [getattr(model, f"conv{i}")[0].conv_m2.conv.out_channels for i in range(2, 6)]
    assert widths == [96, 192, 384, 768]
    assert model.conv1.conv.kernel_size == (3, 5, 5) and model.conv1.conv.out_channels == 16


def test_i3d_mixed_blocks_have_the_published_widths() -> None:
    model = _on_meta(i3d)
    widths = {
        name: block.out_channels
        for name, block in model.named_children()
        if name.startswith("Mixed_")
    }
    assert widths == {
        "Mixed_3b": 256,
        "Mixed_3c": 480,
        "Mixed_4b": 512,
        "Mixed_4c": 512,
        "Mixed_4d": 512,
        "Mixed_4e": 528,
        "Mixed_4f": 832,
        "Mixed_5b": 832,
        "Mixed_5c": 1024,
    }
    assert isinstance(model.logits, nn.Conv3d) and model.logits.kernel_size == (1, 1, 1)
    # The concatenation really has four inputs of uneven depth.
    gm = fx.symbolic_trace(model)
    cats = [n for n in gm.graph.nodes if n.target is torch.cat]
    assert len(cats) == 9 and all(len(n.args[0]) == 4 for n in cats)
