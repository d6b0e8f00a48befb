"""write_report: one self-contained HTML page built on the files render_pyramid writes."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import torch
from test_render_fake import FakePyramid, frames_for  # tests/ is on sys.path under pytest

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render import write_report

LABELS = [f"action {i}" for i in range(10)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakePyramid, Path, str]:
    pyramid = FakePyramid(levels=3, kernels=4, shapes=((6, 24, 24),))
    out = tmp_path_factory.mktemp("report")
    path = write_report(
        pyramid, out, frames=frames_for((6, 24, 24)), labels=LABELS, max_kernels_per_layer=3
    )
    return pyramid, path, path.read_text(encoding="utf-8")


def test_the_report_is_one_file_with_nothing_to_fetch(report) -> None:
    _, path, html = report
    assert path.name == "report.html" and path.is_file()
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    assert sources and all(
        s.startswith(("data:image/gif;base64,", "data:image/png;base64,")) for s in sources
    )
    assert html.count("<script>") == 1 and "<script src" not in html


def test_the_report_embeds_the_files_it_wrote_without_re_encoding(report) -> None:
    pyramid, path, html = report
    embedded = {
        base64.b64decode(s) for s in re.findall(r'src="data:image/[a-z]+;base64,([^"]*)"', html)
    }
    out = path.parent
    assert (out / "pyramid.png").read_bytes() in embedded
    assert (out / "contact_sheet.png").read_bytes() in embedded
    for index, layer in enumerate(pyramid.layers):
        stem = out / "levels" / f"{index:02d}_{layer.name}"
        assert stem.with_name(stem.name + ".gif").read_bytes() in embedded
        assert stem.with_name(stem.name + ".mp4").is_file()
        assert len(list(stem.glob("frame_*.png"))) == 6
    # 2 figures, a GIF per level, a GIF per shown kernel (3 of 4 per level)
    assert len(re.findall(r"<img ", html)) == 2 + 3 + 3 * 3


def test_the_report_shows_the_prediction_and_top_five(report) -> None:
    pyramid, _, html = report
    probabilities = torch.softmax(pyramid.logits.double(), 0)
    top = torch.topk(probabilities, 5)
    assert f'<p class="prediction">action {pyramid.target}</p>' in html
    for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        assert f"<td>action {i}</td><td>{p:.3f}</td>" in html
    assert html.count("<tr") >= 5
    assert "p=" in html  # the pyramid's own summary text


def test_the_graph_links_each_shown_kernel_to_its_panel_and_children(report) -> None:
    pyramid, _, html = report
    graph = pyramid.graph
    panels = re.findall(r'<section class="kernel-panel" data-node="([^"]+)" hidden>', html)
    assert len(panels) == 3 * 3
    for key in panels:
        assert f'href="#kernel={key}"' in html
        layer, _ = key.split(":")
        assert layer in {x.name for x in pyramid.layers}
        panel = html.split(f'data-node="{key}" hidden>', 1)[1].split("</section>", 1)[0]
        for child in graph.successors(key):
            assert child in panel
    # edges in the SVG join kernels the graph joins
    ids = dict(re.findall(r'id="(k\d+)" (?:href="[^"]*" )?data-node="([^"]+)"', html))
    for source, target in re.findall(r'class="edge" data-from="(k\d+)" data-to="(k\d+)"', html):
        assert graph.has_edge(ids[source], ids[target])
    assert any(
        ids[t].startswith("input:")
        for _, t in re.findall(r'data-from="(k\d+)" data-to="(k\d+)"', html)
    )


def test_the_report_shows_temporal_profiles(report) -> None:
    pyramid, _, html = report
    assert html.count('<svg class="profile"') == len(pyramid.layers)
    assert html.count('class="bar peak"') == len(pyramid.layers)


def test_names_are_escaped(tmp_path: Path) -> None:
    labels = [f"<b>{i}</b>" for i in range(10)]
    html = write_report(
        FakePyramid(levels=1), tmp_path, frames=frames_for((8, 32, 32)), labels=labels
    ).read_text()
    assert "<b>3</b>" not in html and "&lt;b&gt;3&lt;/b&gt;" in html


def test_a_report_from_a_clip_with_progress(tmp_path: Path, capsys) -> None:
    clip = torch.rand(3, 8, 32, 32)
    path = write_report(FakePyramid(levels=2), tmp_path, clip=clip, max_levels=1, progress=True)
    assert "class 3" in path.read_text()
    assert "fxcfp render" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"labels": ["a", "b"]}, InvalidArgumentError, "has 2 names but the model has 10 classes"),
        ({"labels": "abc"}, InvalidTypeError, "list of class names"),
        ({"max_kernels_per_layer": 0}, InvalidArgumentError, "must be at least 1"),
        ({"frames": None}, InvalidArgumentError, r"write_report needs the pixels to draw over"),
        ({"cmap": "nope"}, InvalidArgumentError, "unknown colormap"),
    ],
)
def test_bad_report_arguments_say_what_to_fix(tmp_path: Path, kwargs, error, words) -> None:
    arguments = {"frames": frames_for((8, 32, 32))} | kwargs
    with pytest.raises(error, match=words):
        write_report(FakePyramid(levels=1), tmp_path, **arguments)


def test_kernels_and_levels_at_max_depth_are_shown_without_maps(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=3, classifier=True, unexpanded=1)
    html = write_report(pyramid, tmp_path, frames=frames_for((8, 32, 32))).read_text()
    last = pyramid.layers[-1].name
    assert f"Not drawn: {last}." in html and f"{last} (not expanded)" in html
    panel = html.split(f'data-node="{last}:{pyramid.layers[-1].kernels[0]}" hidden>', 1)[1]
    assert panel.split("</section>", 1)[0].count("No kernel-wise map") == 1
    # the root kernel (the class's output channel) heads the graph
    assert 'data-node="fc:3"' in html


def test_a_two_input_report_draws_each_level_over_its_input(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, shapes=((8, 16, 16), (4, 8, 8)))
    frames = [frames_for((8, 16, 16)), frames_for((4, 8, 8), seed=7)]
    html = write_report(pyramid, tmp_path, frames=frames, max_kernels_per_layer=2).read_text()
    assert "· input 0</p>" in html and "· input 1</p>" in html
    assert html.count('<section class="kernel-panel"') == 4
