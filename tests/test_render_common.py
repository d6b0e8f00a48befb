"""The interface render reads a pyramid through (``fxcfp.render._common``): the real pyramid and
the tests' stand-in both satisfy it, and render refuses anything else in words."""

from __future__ import annotations

import pytest
import torch
from fake_pyramid import FakePyramid  # tests/ is on sys.path under pytest
from torch import nn

import fxcfp
from fxcfp._errors import InvalidArgumentError
from fxcfp.render import render_pyramid
from fxcfp.render._common import check_pyramid, level_caption, peak_frame, slug


def test_fake_maps_follow_the_pyramid_interface() -> None:
    pyramid = FakePyramid(shapes=((8, 32, 32), (4, 16, 16)))
    for layer in pyramid.layers:
        shape = pyramid.shapes[layer.pathway]
        heat = pyramid.layer_map(layer.name, upsample=True)
        assert tuple(heat.shape) == shape and heat.dtype == torch.float32
        assert 0.0 <= float(heat.min()) and float(heat.max()) <= 1.0
        assert tuple(pyramid.kernel_map(layer.name, layer.kernels[0], upsample=True).shape) == shape
        assert torch.isclose(pyramid.temporal_profile(layer.name).sum(), torch.tensor(1.0))
    assert all(":" in node for node in pyramid.graph.nodes)


def test_fake_models_the_root_and_max_depth_like_the_real_pyramid() -> None:
    pyramid = FakePyramid(levels=3, classifier=True, unexpanded=1)
    assert pyramid.layers[0].name == "fc" and pyramid.graph.nodes["fc:3"]["score"] == 1.0
    assert float(pyramid.layer_map("fc", upsample=True).abs().sum()) == 0.0
    with pytest.raises(InvalidArgumentError, match="max_depth"):
        pyramid.layer_map(pyramid.layers[-1].name, upsample=True)
    assert FakePyramid(image=True).layer_map("layer_1", upsample=True).shape == (32, 32)


def test_the_real_pyramid_and_the_fake_pass_the_protocol_check() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                          nn.Flatten(), nn.Linear(4, 3)).eval()
    pyramid = fxcfp.analyze(model, torch.randn(3, 2, 8, 8), threshold=0.3)
    assert check_pyramid(pyramid, "render_pyramid") is pyramid
    # the check is static: it does not build the real pyramid's cached graph
    assert "graph" not in pyramid.__dict__
    fake = FakePyramid()
    assert check_pyramid(fake, "write_report") is fake


def test_render_refuses_what_is_not_a_pyramid_in_words(tmp_path) -> None:
    with pytest.raises(fxcfp.InvalidTypeError, match=r"render_pyramid\(pyramid=...\) takes an "
                       r"fxcfp Pyramid \(from fxcfp.analyze\), got dict"):
        render_pyramid({"layers": []}, tmp_path, frames=None)


def test_level_captions_peaks_and_slugs() -> None:
    fake = FakePyramid(levels=2)
    layer = fake.layers[1]
    assert level_caption(1, layer) == (f"level 1 · 3 of 16 kernels · {layer.depth} back-steps · "
                                       f"{layer.edges} links")
    assert peak_frame([0.0, 0.2, 0.8]) == 2 and peak_frame([0.0] * 5) == 2
    assert slug("a/b c") == "a_b_c" and slug("...") == "layer"
