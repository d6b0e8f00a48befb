"""Baselines equal hand computations, and no metric changes the user's model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcfp
from fxcfp.eval import (
    PyramidMethod,
    cascading_randomization,
    class_sensitivity,
    compare,
    saliency_maps,
)
from tests.models import assert_unchanged, snapshot


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv3d(2, 3, 3, padding=1)
        self.c2 = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(x.mean((2, 3, 4)))


def _tiny() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _Tiny().eval()


def _clip() -> torch.Tensor:
    return torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3))


def test_gradcam_and_grad_x_input_equal_a_hand_computation():
    model, clip = _tiny(), _clip()
    maps = saliency_maps(model, clip, 1, methods=("gradcam", "grad_x_input", "activation"),
                         layers=("c2",), upsample=False)["c2"]
    # by hand: c2 draws on its input, relu(c1(x))
    a = torch.relu(model.c1(clip[None])).detach().requires_grad_(True)
    y = model.fc(torch.relu(model.c2(a)).mean((2, 3, 4)))[0, 1]
    (g,) = torch.autograd.grad(y, a)
    weights = g[0].mean((1, 2, 3))
    gradcam = torch.relu((weights[:, None, None, None] * a[0]).sum(0)).detach()
    torch.testing.assert_close(maps["gradcam"], gradcam)
    torch.testing.assert_close(maps["grad_x_input"], torch.relu((g[0] * a[0]).sum(0)).detach())
    torch.testing.assert_close(maps["activation"], a[0].mean(0).detach())
    assert maps["gradcam"].shape == (4, 6, 6)


def test_maps_are_upsampled_with_fxcfps_own_upsampling():
    model, clip = _tiny(), _clip()
    low = saliency_maps(model, clip, 0, methods=("paper", "gradcam"), layers=("c2",),
                        upsample=False)["c2"]
    up = saliency_maps(model, clip, 0, methods=("paper", "gradcam"), layers=("c2",))["c2"]
    from fxcfp._maps import upsample

    for method in ("paper", "gradcam"):
        torch.testing.assert_close(up[method], upsample(low[method], (4, 6, 6)))
    pyramid = fxcfp.analyze(model, clip, 0)
    torch.testing.assert_close(up["paper"], pyramid.layer_map("c2", upsample=True))


def test_random_map_is_seeded_and_blind_to_model_and_class():
    model, clip = _tiny(), _clip()
    a = saliency_maps(model, clip, 0, methods=("random",), layers=("c2",), seed=4)
    b = saliency_maps(model, clip * 2, 2, methods=("random",), layers=("c2",), seed=4)
    c = saliency_maps(model, clip, 0, methods=("random",), layers=("c2",), seed=5)
    assert torch.equal(a["c2"]["random"], b["c2"]["random"])
    assert not torch.equal(a["c2"]["random"], c["c2"]["random"])


def test_randomisation_and_comparison_leave_the_users_model_unchanged():
    model, clip = _tiny(), _clip()
    model.train()  # a model left in training mode stays so
    for p in model.c1.parameters():
        p.requires_grad_(False)
    before = snapshot(model)
    rng = torch.get_rng_state()
    result = cascading_randomization(model, clip, 0, methods=("paper", "gradcam", "random"))
    assert result.stages == ("fc", "c2", "c1")
    assert_unchanged(model, before)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    # a model-blind map keeps its ranks whatever the weights become
    assert result.correlations[("fc", "c2", "random")] == pytest.approx(1.0)
    assert result.correlations[("c1", "c2", "gradcam")] < 0.99
    compare(model, clip[None], torch.ones(1, 4, 6, 6, dtype=torch.bool),
            methods=("paper", "gradcam"), layers=("c2",))
    class_sensitivity(model, clip, 0, methods=("gradcam",), layers=("c2",))
    assert_unchanged(model, before)


def test_compare_gives_one_row_per_clip_layer_method_and_metric():
    model = _tiny()
    clips = torch.randn(2, 2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(2, 4, 6, 6, dtype=torch.bool)
    masks[:, :, 2:4, 2:4] = True
    result = compare(model, clips, masks, methods=("gradcam", "random"), layers=("c1", "c2"),
                     metrics=("energy", "pointing", "sensitivity", "randomization"),
                     stages=(("fc",), ("c2", "c1")))
    assert result.metrics == ("energy", "pointing", "sensitivity", "randomization:fc",
                              "randomization:c2+c1")
    assert len(result.rows) == 2 * 2 * 2 * 5
    table = result.to_markdown("energy")
    assert table.splitlines()[0] == "| layer | gradcam | random |"
    assert "| c2 |" in table


def test_unknown_methods_layers_and_metrics_are_named():
    model, clip = _tiny(), _clip()
    with pytest.raises(fxcfp.InvalidArgumentError, match="unknown method 'cam'"):
        saliency_maps(model, clip, methods=("cam",))
    with pytest.raises(fxcfp.InvalidArgumentError, match="no weighted layer 'c9'"):
        saliency_maps(model, clip, layers=("c9",))
    with pytest.raises(fxcfp.InvalidArgumentError, match="unknown metric 'auc'"):
        compare(model, clip[None], metrics=("auc",))


def test_the_classifier_is_drawn_on_its_pre_pool_tensor_where_grad_cam_is_cam():
    model, clip = _tiny(), _clip()
    maps = saliency_maps(model, clip, 2, methods=("gradcam", "evidence"), layers=("fc",),
                         upsample=False)["fc"]
    features = torch.relu(model.c2(torch.relu(model.c1(clip[None]))))[0].detach()
    # CAM (Zhou et al., 2016): the class's weights over the channels of the pre-pool tensor;
    # through a mean pool the gradient is that weight over the positions
    cam = torch.relu(torch.tensordot(model.fc.weight[2].detach(), features, dims=1))
    torch.testing.assert_close(maps["gradcam"], cam / features[0].numel())
    assert maps["evidence"].shape == (4, 6, 6)
    assert maps["evidence"].max() > 0  # the class level is never blank


def test_a_pyramid_method_passes_its_options_to_analyze():
    model, clip = _tiny(), _clip()
    method = PyramidMethod("paper-all", "paper", (("threshold", 0.0),))
    maps = saliency_maps(model, clip, 0, methods=("paper", method), layers=("c2",),
                         upsample=False)["c2"]
    expected = fxcfp.analyze(model, clip, 0, threshold=0.0).layer_map("c2")
    torch.testing.assert_close(maps["paper-all"], expected)
    assert not torch.equal(maps["paper"], maps["paper-all"])
    with pytest.raises(fxcfp.InvalidArgumentError, match="named alike"):
        compare(model, clip[None], methods=("paper", PyramidMethod("paper")),
                metrics=("deletion",))
