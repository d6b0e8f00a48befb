from __future__ import annotations

import pytest
import skimage.data
import torch
from torch import fx, nn

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.data import imagenet_labels
from fxcfp.video import NORMALIZATION, read_image
from fxcfp.zoo.efficientnet_lite import (
    INPUT_NORMALIZATION,
    EfficientNetLite,
    efficientnet_lite0,
    efficientnet_lite0_3d,
    inflate_to_3d,
    weights_path,
)

# The stem and the 16 depth-wise convs have 3 temporal taps; the 1x1 convs have one.
_TEMPORAL_CONVS = 17


@pytest.fixture(scope="module")
def model2d() -> EfficientNetLite:
    return efficientnet_lite0().eval()


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    clip = read_image(skimage.data.chelsea(), size=224, normalization="efficientnet_lite")
    return clip.tensor[:, 0].unsqueeze(0)


def test_state_dict_loads_strictly() -> None:
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite()
    model.load_state_dict(state, strict=True)
    assert set(model.state_dict()) == set(state)
    assert len(model._blocks) == 16
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)


def test_normalization_preset_is_the_models() -> None:
    assert NORMALIZATION["efficientnet_lite"] == INPUT_NORMALIZATION


@pytest.mark.parametrize("resize", [None, 256])
def test_chelsea_top1_is_egyptian_cat(model2d: EfficientNetLite, resize: int | None) -> None:
    # None: the short side is resized straight to 224; 256: the usual ImageNet evaluation crop.
    clip = read_image(
        skimage.data.chelsea(), size=224, resize=resize, normalization="efficientnet_lite"
    )
    with torch.no_grad():
        probs = model2d(clip.tensor[:, 0].unsqueeze(0)).softmax(1)[0]
    labels = imagenet_labels()
    assert labels[int(probs.argmax())] == "Egyptian cat"
    assert probs.max() > 0.3


@pytest.mark.parametrize("normalization", ["efficientnet_lite", "imagenet"])
def test_chelsea_top3_are_the_cat_classes_with_eval_crop(
    model2d: EfficientNetLite, normalization: str
) -> None:
    # Chelsea sits between three cat classes: which one wins moves with the crop (256 -> 224
    # gives "tabby" under ImageNet stats), but the three together always dominate.
    clip = read_image(skimage.data.chelsea(), size=224, resize=256, normalization=normalization)
    with torch.no_grad():
        probs = model2d(clip.tensor[:, 0].unsqueeze(0)).softmax(1)[0]
    labels = imagenet_labels()
    top3 = {labels[i] for i in probs.topk(3).indices.tolist()}
    assert top3 == {"Egyptian cat", "tabby", "tiger cat"}
    assert probs.topk(3).values.sum() > 0.85


def test_input_normalization_matches_the_stem_statistics(model2d: EfficientNetLite) -> None:
    # The stem's batch norm remembers the variance its input had in training; the right input
    # scaling reproduces it on natural images, the wrong one overshoots.
    images = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    bn = model2d._bn0
    alive = bn.running_var > 1e-3

    def log_var_error(normalization: str) -> float:
        batch = torch.cat(
            [read_image(a, size=224, normalization=normalization).tensor[:, 0:1] for a in images],
            dim=1,
        ).transpose(0, 1)
        with torch.no_grad():
            var = model2d._conv_stem(batch).var(dim=(0, 2, 3))[alive]
        return float((var / bn.running_var[alive]).log().abs().median())

    assert log_var_error("efficientnet_lite") < 0.5 < log_var_error("imagenet")


def test_inflated_weights_sum_over_time_to_the_2d_weights(model2d: EfficientNetLite) -> None:
    model3d = inflate_to_3d(model2d)
    convs2d = {n: m for n, m in model2d.named_modules() if isinstance(m, nn.Conv2d)}
    convs3d = {n: m for n, m in model3d.named_modules() if isinstance(m, nn.Conv3d)}
    assert convs2d.keys() == convs3d.keys()
    temporal = [n for n, m in convs3d.items() if m.kernel_size[0] == 3]
    assert len(temporal) == _TEMPORAL_CONVS
    assert all(n == "_conv_stem" or n.endswith("_depthwise_conv") for n in temporal)
    for name, conv in convs3d.items():
        assert conv.stride[0] == 1 and conv.padding[0] == conv.kernel_size[0] // 2
        torch.testing.assert_close(conv.weight.sum(dim=2), convs2d[name].weight)
        assert torch.equal(conv.weight[:, :, 0], conv.weight[:, :, -1])  # repeated, not spread
    for name, module in model3d.named_modules():
        if isinstance(module, nn.BatchNorm3d):
            source = dict(model2d.named_modules())[name]
            assert isinstance(source, nn.BatchNorm2d)
            assert torch.equal(module.running_var, source.running_var)
            assert module.eps == source.eps == 1e-3
    assert torch.equal(model3d._fc.weight, model2d._fc.weight)
    assert model3d.training == model2d.training


def test_inflated_model_reproduces_2d_logits_on_a_still_clip(
    model2d: EfficientNetLite, chelsea: torch.Tensor
) -> None:
    # I3D: each temporal kernel is W/3 three times, and a still clip shows it the same frame
    # three times, so it computes W x. With replicate padding that also holds at the first and
    # last frame (the padding repeats them), hence for every frame and for the pooled logits.
    model3d = inflate_to_3d(model2d, temporal_padding="replicate").eval()
    with torch.no_grad():
        logits2d = model2d(chelsea)
        for frames in (1, 4):
            logits3d = model3d(chelsea.unsqueeze(2).repeat(1, 1, frames, 1, 1))
            scale = float(logits2d.abs().max())
            torch.testing.assert_close(logits3d, logits2d, atol=1e-3 * scale, rtol=0)
            assert logits3d.argmax() == logits2d.argmax()


def test_zero_padding_reproduces_2d_only_away_from_the_temporal_borders(
    model2d: EfficientNetLite,
) -> None:
    # With zero padding the first and last frame see only 2/3 of the kernel, and each of the 17
    # temporal convs carries that one frame further in: frames 17 .. T-18 of the head equal the
    # 2D features exactly and frame 16 does not. float64 separates "exact" from "close".
    model2d64 = efficientnet_lite0().eval().double()
    model3d = inflate_to_3d(model2d64).eval()
    assert next(model3d.parameters()).dtype == torch.float64
    image = torch.randn(
        1, 3, 48, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    frames = 2 * _TEMPORAL_CONVS + 2
    with torch.no_grad():
        features2d = model2d64.forward_features(image)
        features3d = model3d.forward_features(image.unsqueeze(2).repeat(1, 1, frames, 1, 1))
    error = (features3d - features2d.unsqueeze(2)).abs().amax(dim=(0, 1, 3, 4))
    exact = error[_TEMPORAL_CONVS : frames - _TEMPORAL_CONVS]
    assert exact.max() < 1e-11
    assert error[_TEMPORAL_CONVS - 1] > 100 * exact.max()
    assert error[frames - _TEMPORAL_CONVS] > 100 * exact.max()
    assert error[0] > 1e-2 and error[-1] > 1e-2
    with torch.no_grad():
        logits = model3d.classify(features3d[:, :, _TEMPORAL_CONVS : _TEMPORAL_CONVS + 1])
        torch.testing.assert_close(logits, model2d64(image), atol=1e-9, rtol=0)


def test_zero_padding_changes_the_logits_of_a_short_still_clip(
    model2d: EfficientNetLite, chelsea: torch.Tensor
) -> None:
    model3d = inflate_to_3d(model2d).eval()
    with torch.no_grad():
        logits3d = model3d(chelsea.unsqueeze(2).repeat(1, 1, 4, 1, 1))
        logits2d = model2d(chelsea)
    assert (logits3d - logits2d).abs().max() > 0.1


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_fx_trace_matches_eager(model2d: EfficientNetLite, padding: str) -> None:
    model3d = inflate_to_3d(model2d, temporal_padding=padding).eval()
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    for model, x in ((model2d, clip[:, :, 0]), (model3d, clip)):
        gm = fx.symbolic_trace(model)
        with torch.no_grad():
            torch.testing.assert_close(gm(x), model(x), atol=0, rtol=0)
    # the last traced is the 3D model: its layers keep the 2D names
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert {"_conv_stem", "_blocks.15._depthwise_conv", "_fc"} <= called


def test_3d_builder_gives_a_clip_classifier() -> None:
    model = efficientnet_lite0_3d(pretrained=False).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 2, 32, 32)).shape == (1, 1000)
    assert model.dims == 3


def test_inflate_rejects_what_it_cannot_inflate(model2d: EfficientNetLite) -> None:
    with pytest.raises(InvalidTypeError, match="expected a 2D EfficientNetLite.*Sequential"):
        inflate_to_3d(nn.Sequential(nn.Conv2d(3, 3, 3)))
    with pytest.raises(InvalidTypeError, match="with dims=3"):
        inflate_to_3d(inflate_to_3d(model2d))
    with pytest.raises(InvalidArgumentError, match="temporal_padding must be one of"):
        inflate_to_3d(model2d, temporal_padding="reflect")
