"""Which maps the pictures draw (evidence by default, paper on request), said on the page; the
report's "why A and not B" panel."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_pyramid import FakePyramid, frames_for  # tests/ is on sys.path under pytest
from torch import nn

import fxcfp
from fxcfp._errors import InvalidArgumentError
from fxcfp.render import render_pyramid, write_report
from fxcfp.render.figures import contact_sheet, pyramid_figure
from fxcfp.render.pyramid_views import DEFAULT_MAPS, figure_title

LABELS = [f"action {i}" for i in range(10)]


def test_pictures_draw_evidence_maps_by_default_and_paper_maps_on_request(tmp_path: Path) -> None:
    assert DEFAULT_MAPS == "evidence"
    frames = frames_for((8, 32, 32))
    pyramid = FakePyramid(levels=2)
    render_pyramid(pyramid, tmp_path / "a", frames=frames, formats=("gif",))
    assert pyramid.modes_asked == {"evidence"}
    pyramid = FakePyramid(levels=2)
    write_report(pyramid, tmp_path / "b", frames=frames, maps="paper", max_kernels_per_layer=2)
    assert pyramid.modes_asked == {"paper"}


@pytest.mark.parametrize("maps", ["Paper", "gradcam", None])
def test_unknown_map_modes_are_refused_by_name(tmp_path: Path, maps) -> None:
    with pytest.raises(InvalidArgumentError, match=r"render_pyramid: maps=.* is not a map mode; use maps='p"):
        render_pyramid(FakePyramid(levels=2), tmp_path, frames=frames_for((8, 32, 32)), maps=maps)
    with pytest.raises(InvalidArgumentError, match=r"write_report: maps=.*or maps='evidence'"):
        write_report(FakePyramid(levels=2), tmp_path, frames=frames_for((8, 32, 32)), maps=maps)


def test_figure_titles_say_the_class_the_contrast_and_the_map_mode() -> None:
    pyramid = FakePyramid(levels=2, target=3)
    assert figure_title(pyramid, "evidence", "action 3").endswith("\nevidence maps")
    assert figure_title(pyramid, "paper").startswith("class 3  (p = ")
    pyramid.contrast = 5
    assert figure_title(pyramid, "paper", "action 3", "action 5").startswith(
        "action 3, not action 5")
    # the title takes room on both figures
    rows = [("layer", np.zeros((4, 8, 8, 3), np.uint8))]
    assert contact_sheet(rows, title="a\nb").shape[0] > contact_sheet(rows).shape[0]
    one = [("layer", np.zeros((8, 8, 3), np.uint8))]
    assert pyramid_figure(one, title="a\nb").shape[0] > pyramid_figure(one, title="a").shape[0]


@pytest.mark.parametrize("maps", ["evidence", "paper"])
def test_the_report_header_says_which_maps_are_drawn(tmp_path: Path, maps: str) -> None:
    path = write_report(FakePyramid(levels=2), tmp_path, frames=frames_for((6, 24, 24)),
                        labels=LABELS, maps=maps, max_kernels_per_layer=2)
    html = path.read_text(encoding="utf-8")
    assert f"drawn: <strong>{maps} maps</strong>" in html
    assert f"({maps} maps) over the clip" in html
    assert 'id="contrast"' not in html


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 6, 3, padding=1)
        self.b = nn.Conv3d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))).mean((2, 3, 4)))


def test_a_contrastive_report_explains_why_a_and_not_b(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net().eval()
    clip = torch.rand(3, 6, 24, 24)
    pyramid = fxcfp.analyze(model, clip, 2, contrast="runner-up")
    other = pyramid.contrast
    path = write_report(pyramid, tmp_path, clip=clip, mean=[0.0] * 3, std=[1.0] * 3,
                        labels=LABELS, max_kernels_per_layer=2)
    html = path.read_text(encoding="utf-8")
    section = re.search(r'<section id="contrast">(.*?)</section>', html, re.S)
    assert section is not None
    assert f"Why action 2 and not action {other}" in section.group(1)
    logits = pyramid.logits
    assert f"logit {float(logits[2]):.3f}" in section.group(1)
    assert f"logit {float(logits[other]):.3f}" in section.group(1)
    assert "data:image/webp;base64," in section.group(1)
    assert f"and not <strong>action {other}</strong>" in html
