"""Render a real pyramid (not the test fake): every level, the report, the files decode."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import fxcfp
from fxcfp.render import render_pyramid, write_report


def _pyramid() -> tuple[fxcfp.Pyramid, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(num_classes=7)
    clip = torch.randn(3, 4, 32, 32)
    return fxcfp.analyze(model, clip, threshold=0.7), clip


@pytest.mark.parametrize("maps", ["evidence", "paper"])
def test_render_every_level_of_a_real_pyramid(tmp_path, maps):
    pyramid, clip = _pyramid()
    result = render_pyramid(pyramid, tmp_path, clip=clip, mean=(0.5,) * 3, std=(0.25,) * 3,
                            maps=maps)
    assert [level.layer for level in result.levels] == [level.name for level in pyramid.layers]
    # the class level is drawn on the tensor before the global pool: never blank
    assert result.levels[0].layer == "fc" and sum(result.levels[0].profile) > 0.99
    for level in result.levels:
        with Image.open(level.gif) as gif:
            assert gif.size == (32, 32)
        with av.open(str(level.mp4)) as video:
            assert sum(1 for _ in video.decode(video=0)) == 4
        assert len(level.frames) == 4
    with Image.open(result.contact_sheet) as sheet:
        assert sheet.size[0] > 32


def test_report_of_a_real_pyramid_is_self_contained(tmp_path):
    pyramid, clip = _pyramid()
    path = write_report(pyramid, tmp_path, clip=clip, mean=(0.5,) * 3, std=(0.25,) * 3,
                        labels=[f"class {i}" for i in range(7)])
    html = path.read_text()
    assert path.name == "report.html"
    assert "src=\"http" not in html and "href=\"http" not in html
    assert pyramid.layers[1].name in html and f"class {pyramid.target}" in html


def test_overlay_accepts_a_strided_heat_map():
    from fxcfp.render import colorize

    heat = torch.rand(4, 6, 5).numpy()
    strided = np.moveaxis(np.moveaxis(heat, 0, 2).copy(), 2, 0)  # same values, other strides
    assert np.array_equal(colorize(strided), colorize(heat))
