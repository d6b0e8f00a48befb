"""Coverage gaps and messages that say what failed (issue 9, item 10), and the results a user
reads (probability, the clip, the files) being what the model says."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import fxcfp
from tests.models import assert_unchanged, snapshot


def _head(cin: int = 4, classes: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


class Where(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = torch.where(x > 0, x, torch.zeros_like(x))  # relu, written out
        x = x.masked_fill(x.abs() < 1e-3, 0.0) * (x >= 0).float()
        return self.fc(x.mean((2, 3)))


def test_comparisons_and_zeros_like_need_no_rule():
    torch.manual_seed(0)
    pyramid = fxcfp.analyze(Where(), torch.randn(3, 8, 8), threshold=0.0)
    assert [level.name for level in pyramid.layers] == ["fc", "conv"]
    # the comparison links x to itself: each fc input channel to its own conv kernel
    for node in pyramid.graph.successors(pyramid.root):
        assert pyramid.graph.nodes[node]["layer"] == "conv"


class Drops(nn.Module):
    """Dropout written in place, as torchvision's classifiers do, on the export path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.drop = nn.Dropout(0.2, inplace=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.conv(x), 0.1, training=self.training, inplace=True)
        return self.fc(self.drop(x.mean((2, 3))))


def test_in_place_dropout_is_never_a_gate_on_either_path():
    torch.manual_seed(0)
    model, clip = Drops().train(), torch.randn(3, 8, 8)
    snap = snapshot(model)
    by_fx = fxcfp.Analyzer(model, trace="fx").analyze(clip, 1, threshold=0.0)
    by_export = fxcfp.Analyzer(model, trace="export").analyze(clip, 1, threshold=0.0)
    assert sorted(by_fx.graph.edges) == sorted(by_export.graph.edges)
    assert {level.name for level in by_fx.layers} == {"fc", "conv"}
    assert_unchanged(model, snap)


def test_a_meta_device_model_is_refused_with_the_fix():
    model = _head().to("meta")
    with pytest.raises(fxcfp.DeviceMismatchError, match="meta device.*to_empty"):
        fxcfp.analyze(nn.Sequential(nn.Conv2d(3, 4, 3), model).to("meta"),
                      torch.randn(3, 8, 8, device="meta"))


def test_a_torchscript_model_gets_the_hint_that_applies():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), _head()))
    with pytest.raises(fxcfp.UntraceableModelError, match="TorchScript.*Python nn.Module"):
        fxcfp.analyze(scripted, torch.randn(3, 8, 8))


@pytest.mark.parametrize("functional", [False, True])
def test_a_transposed_convolution_is_named_with_a_hint_that_applies(functional):
    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(3, 4, 2, stride=2)
            self.head = _head()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.conv_transpose2d(x, self.up.weight, stride=2) if functional else self.up(x)
            return self.head(x)

    with pytest.raises(fxcfp.UnsupportedOpError,
                       match=r"is a transposed convolution.*nn.Upsample followed by a Conv"):
        fxcfp.analyze(Up(), torch.randn(3, 8, 8))


def test_a_vision_transformer_is_refused_at_its_attention():
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1,
                                               num_heads=2, hidden_dim=8, mlp_dim=16,
                                               num_classes=3)
    with pytest.raises(fxcfp.UnsupportedModelError,
                       match=r"MultiheadAttention.*attention.*vision transformers"):
        fxcfp.analyze(vit, torch.randn(3, 32, 32))


@torch.fx.wrap
def _checked(x: torch.Tensor) -> torch.Tensor:
    if bool(x.abs().max() > 50):
        raise ValueError("activations exploded")
    return x


fxcfp.register_channel_rule(_checked, "passthrough")


class Checked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(_checked(self.conv(x)).mean((2, 3)))


def test_model_errors_say_what_failed_on_first_and_later_calls():
    torch.manual_seed(0)
    model = Checked()
    with pytest.raises(fxcfp.ModelCallError, match="activations exploded. Hint: the model's own "
                                                   "code raised this") as first:
        fxcfp.analyze(model, torch.full((3, 8, 8), 1e4))
    assert "clip's shape" not in str(first.value)
    fxcfp.analyze(model, torch.randn(3, 8, 8))  # a plan exists now: later calls run the capture
    with pytest.raises(fxcfp.ModelCallError, match="activations exploded. Hint: the model's own"):
        fxcfp.analyze(model, torch.full((3, 8, 8), 1e4))


def test_a_shape_error_still_points_at_the_clip():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    fxcfp.analyze(model, torch.randn(3, 8, 8))
    with pytest.raises(fxcfp.ModelCallError, match="mat1 and mat2.*check the clip's shape"):
        fxcfp.analyze(model, torch.randn(3, 9, 9))


@pytest.mark.parametrize("count", [1, 3])
def test_a_wrong_number_of_pathways_is_a_clear_error(count):
    from tests.test_trace import TwoPathways

    clips = [torch.randn(3, 2, 4, 4)] * count
    with pytest.raises(fxcfp.ModelCallError, match=rf"list of {count} tensor.*one clip per "
                                                   r"pathway"):
        fxcfp.analyze(TwoPathways(), clips)


# --- what the result holds ---------------------------------------------------------------------


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), _head(4, 5))


@pytest.mark.parametrize("last", [nn.Softmax(dim=1), nn.LogSoftmax(dim=-1),
                                  lambda x: x.softmax(1), lambda x: F.log_softmax(x, dim=1)])
def test_probability_of_a_model_ending_in_softmax_is_its_own_output(last):
    class Ends(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()
            self.last = last if isinstance(last, nn.Module) else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.last(self.net(x)) if self.last is not None else last(self.net(x))

    model, clip = Ends(), torch.randn(3, 8, 8)
    pyramid = fxcfp.analyze(model, clip, 2)
    with torch.no_grad():
        out = model(clip[None])[0]
        softmax = _net()(clip[None]).softmax(1)[0, 2]
    expected = out[2].exp() if bool((out <= 0).all()) else out[2]
    assert pyramid.probability == pytest.approx(float(expected), rel=1e-5)
    assert pyramid.probability == pytest.approx(float(softmax),
                                                rel=1e-5)


def test_a_pyramid_keeps_its_own_copy_of_the_clip():
    model, clip = _net(), torch.randn(3, 8, 8)
    pyramid = fxcfp.analyze(model, clip)
    level = pyramid.layers[-1].name
    before = pyramid.layer_map(level).clone()
    fresh = fxcfp.analyze(model, clip)
    clip.copy_(torch.randn(3, 8, 8))  # the caller refills its buffer
    assert torch.equal(fresh.layer_map(level), before)


def test_non_finite_logits_are_refused():
    class Overflows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # log(0) for an all-zero clip: -inf in every class
            return self.net(x) + x.abs().amax((1, 2, 3)).log()[:, None]

    with pytest.raises(fxcfp.ModelCallError, match=r"clip 1 is not finite \(class 0: -inf"):
        fxcfp.analyze_batch(Overflows(), torch.stack([torch.ones(3, 8, 8),
                                                      torch.zeros(3, 8, 8)]))


def test_exports_are_strict_and_atomic(tmp_path, monkeypatch):
    pyramid = fxcfp.analyze(_net(), torch.randn(3, 8, 8), threshold=0.3)
    pyramid.to_json(tmp_path / "p.json")
    pyramid.to_graphml(tmp_path / "p.graphml")

    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    data = json.loads((tmp_path / "p.json").read_text(), parse_constant=reject)
    assert len(data["edges"]) == pyramid.num_edges
    whole = {name: (tmp_path / name).read_bytes() for name in ("p.json", "p.graphml")}

    def half_written(*args, **kwargs):
        file = args[1] if len(args) > 1 else kwargs["fp"]
        file.write("{\"nodes\": [" if "b" not in getattr(file, "mode", "") else b"<?xml")
        raise OSError("No space left on device")

    fresh = fxcfp.analyze(_net(), torch.randn(3, 8, 8), threshold=0.3)
    monkeypatch.setattr(json, "dump", half_written)
    monkeypatch.setattr(nx, "write_graphml", half_written)
    for name, write in (("p.json", fresh.to_json), ("p.graphml", fresh.to_graphml),
                        ("new.json", fresh.to_json)):
        with pytest.raises(OSError, match="No space"):
            write(tmp_path / name)
    # the old files are whole, no new or temporary file is left
    assert {p.name for p in tmp_path.iterdir()} == set(whole)
    assert all((tmp_path / name).read_bytes() == content for name, content in whole.items())


@pytest.mark.slow
def test_torchvision_efficientnet_b0_on_the_export_path():
    """Its stochastic depth is an fx-wrapped helper: export traces it, with in-place dropout."""
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(num_classes=10).train()
    snap = snapshot(model)
    pyramid = fxcfp.analyze(model, torch.randn(3, 32, 32), threshold=0.0)
    assert pyramid.trace_method == "export"
    assert len(pyramid.layers) == 82  # every weighted layer reaches the class at threshold 0
    assert_unchanged(model, snap)
