"""write_report: one self-contained HTML page, from templates, built on the files it writes."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import av
import pytest
import torch
from fake_pyramid import FakePyramid, frames_for  # tests/ is on sys.path under pytest
from PIL import Image

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render import write_report
from fxcfp.render.report import RANDOM_WEIGHTS
from fxcfp.render.report._graph import choose_kernels, dot_available, layout

LABELS = [f"action {i}" for i in range(10)]
IDENTITY = {
    "model": {"spec": "zoo:net", "name": "zoo:net", "class": "zoo.Net", "kind": "import",
              "dims": 3},
    "weights": {"trained": False, "source": "random (seed 0)"},
    "input": {"file": "walk.mp4", "kind": "video", "frames": [0, 3, 6, 9, 12, 15],
              "seconds": [0.0, 0.5], "fps": 30.0, "size": [24, 24]},
    "preprocessing": {"source": "R3D_18_Weights.KINETICS400_V1.transforms()",
                      "resize": [128, 171], "crop": 112, "interpolation": "bilinear",
                      "normalization": "kinetics", "mean": [0.43, 0.39, 0.38],
                      "std": [0.23, 0.22, 0.22]},
    "options": {"threshold": 0.6, "depth": None, "top_k": 3, "class": None, "mode": "evidence"},
    "versions": {"fxcfp": "0.1.0", "torch": "2.x"},
    "device": "cpu",
    "timings": {"load": 1.0, "analyze": 2.0},
}


def _sources(html: str) -> list[str]:
    return re.findall(r'\b(?:src|poster)="([^"]*)"', html)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakePyramid, Path, str]:
    pyramid = FakePyramid(levels=3, kernels=4, shapes=((6, 24, 24),))
    out = tmp_path_factory.mktemp("report")
    path = write_report(
        pyramid, out, frames=frames_for((6, 24, 24)), labels=LABELS, max_kernels_per_layer=3,
        identity=IDENTITY,
    )
    return pyramid, path, path.read_text(encoding="utf-8")


def test_the_report_is_one_file_with_nothing_to_fetch(report) -> None:
    _, path, html = report
    assert path.name == "report.html" and path.is_file()
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html
    assert all(s.startswith(("data:image/webp;base64,", "data:video/mp4;base64,"))
               for s in _sources(html))
    assert html.count("<script>") == 1 and "<script src" not in html


def test_every_picture_is_embedded_once_as_the_file_written_beside_it(report) -> None:
    pyramid, path, html = report
    out = path.parent
    payloads = [base64.b64decode(s.split(",", 1)[1]) for s in _sources(html)]
    for index, layer in enumerate(pyramid.layers):
        stem = out / "levels" / f"{index:02d}_{layer.name}"
        video = stem.with_name(stem.name + ".mp4").read_bytes()
        assert payloads.count(video) == 1  # an H.264 video, once
        with av.open(io.BytesIO(video)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
        still = stem.with_name(stem.name + ".webp").read_bytes()
        # the still is the pyramid figure's row and the video's poster
        assert payloads.count(still) == 2 and Image.open(io.BytesIO(still)).format == "WEBP"
    kernels = sorted((out / "kernels").glob("*.webp"))
    assert len(kernels) == 3 * 3
    assert all(payloads.count(k.read_bytes()) == 1 for k in kernels)
    # no GIF and no PNG contact sheet inside the page
    assert "image/gif" not in html and "image/png" not in html


def test_no_embed_links_the_files_beside_the_report(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=3, kernels=4, shapes=((6, 24, 24),))
    html = write_report(pyramid, tmp_path, frames=frames_for((6, 24, 24)), embed=False,
                        max_kernels_per_layer=3).read_text()
    sources = _sources(html)
    assert sources and not any(s.startswith("data:") for s in sources)
    assert all((tmp_path / s).is_file() for s in sources)
    assert "keep the folder together" in html


def test_the_header_says_what_is_explained_and_warns_of_random_weights(report) -> None:
    pyramid, _, html = report
    assert f'<div class="banner" role="alert" id="banner">{RANDOM_WEIGHTS}</div>' in html
    assert "unknown" not in html.split('id="banner"', 1)[0][-60:]
    facts = dict(re.findall(r'<dd data-fact="([^"]+)">([^<]*)</dd>', html))
    assert facts["model"] == "zoo:net — zoo.Net"
    assert facts["video"] == "walk.mp4, 6 frames (0..15, 0.00–0.50 s), 24 x 24"
    assert facts["preprocessing"].startswith("resize to 128 x 171, centre crop 112, bilinear")
    assert "R3D_18_Weights.KINETICS400_V1.transforms()" in facts["preprocessing"]
    assert facts["options"] == "threshold 0.6, depth none, top-k 3, mode evidence"
    assert facts["run"] == "fxcfp 0.1.0, torch 2.x; device cpu; load 1.0 s, analyze 2.0 s"
    probabilities = torch.softmax(pyramid.logits.double(), 0)
    for p, i in zip(*torch.topk(probabilities, 5), strict=True):
        assert f"<td>action {int(i)}</td><td>{float(p):.3f}</td>" in html


def test_a_report_without_identity_says_so(tmp_path: Path) -> None:
    html = write_report(FakePyramid(levels=1), tmp_path, frames=frames_for((8, 32, 32))).read_text()
    assert "model and weights not stated" in html
    assert re.search(r'<dd data-fact="run">fxcfp [\d.]+, torch ', html)


def test_one_table_of_levels_in_one_order(report) -> None:
    pyramid, _, html = report
    table = html.split('<table class="layers">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td>", table)
    assert rows == [(str(i), layer.name) for i, layer in enumerate(pyramid.layers)]
    assert html.count('<table class="layers">') == 1 and "<pre" not in html
    # the pyramid figure and the level cards use the same numbers
    figure = html.split('<div class="pyramid">', 1)[1].split("</div>", 1)[0]
    badges = re.findall(r'<span class="level-index">(\d+)</span>([^<]+)</figcaption>', figure)
    assert badges == rows


def test_the_graph_shows_every_level_with_edges_that_join_shown_kernels(report) -> None:
    pyramid, _, html = report
    graph = pyramid.graph
    svg = html.split('<svg id="graph"', 1)[1].split("</svg>", 1)[0]
    assert len(re.findall(r'<g class="row-title" data-row="\d+"', svg)) == len(
        pyramid.layers) + 1  # and the clip's channels
    ids = dict(re.findall(r'id="(k\d+)" (?:href="[^"]*" )?data-node="([^"]+)"', svg))
    edges = re.findall(r'class="edge" data-from="(k\d+)" data-to="(k\d+)"', svg)
    assert edges and all(graph.has_edge(ids[s], ids[t]) for s, t in edges)
    assert any(ids[t].startswith("input:") for _, t in edges)
    # every shown kernel below the class is reached from a shown kernel above
    reached = {t for _, t in edges}
    for key, name in ((i, n) for i, n in ids.items() if not n.startswith(pyramid.layers[0].name)):
        assert key in reached, name
    # colours vary with reliance
    fills = set(re.findall(r'fill="(rgb\([^)]*\))"', svg))
    assert len(fills) > 3


def test_kernel_panels_list_children_and_parents(report) -> None:
    pyramid, _, html = report
    graph = pyramid.graph
    panels = re.findall(r'<section class="kernel-panel" data-node="([^"]+)" hidden>', html)
    assert len(panels) == 3 * 3
    for key in panels:
        panel = html.split(f'data-node="{key}" hidden>', 1)[1].split("</section>", 1)[0]
        assert all(child in panel for child in graph.successors(key))
        assert all(parent in panel for parent in graph.predecessors(key))
        assert f"Depends on ({graph.out_degree(key)})" in panel
        assert f"Used by ({graph.in_degree(key)})" in panel


@pytest.mark.skipif(not dot_available(), reason="Graphviz (dot and its binding) not installed")
def test_graphviz_lays_out_rows_in_order_and_draws_its_splines() -> None:
    pyramid = FakePyramid(levels=5, kernels=4)
    rows, edges = choose_kernels(pyramid.graph, pyramid.layers, 3)
    placed = layout(rows, [str(i) for i in range(len(rows))], edges, engine="dot")
    assert placed.engine == "dot"
    heights = [y for _, y in placed.rows]
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    for row, (_, y) in zip(rows, placed.rows, strict=True):
        assert all(abs(placed.positions[node.dom_id][1] - y) < 1 for node in row)
    assert all(edge.path.startswith("M") and " C" in edge.path for edge in placed.edges)
    plain = layout(rows, [str(i) for i in range(len(rows))], edges, engine="plain")
    assert plain.engine == "plain" and len(plain.edges) == len(placed.edges)


def test_the_colour_bar_says_what_the_scale_means(report) -> None:
    _, _, html = report
    assert html.count('<figure class="colorbar">') == 1
    assert "0 is its weakest place, 1 its strongest" in html
    assert html.count("<stop ") == 11


def test_the_report_shows_temporal_profiles_and_one_shared_frame(report) -> None:
    pyramid, _, html = report
    assert html.count('<svg class="profile"') == len(pyramid.layers)
    assert html.count('class="bar peak"') == len(pyramid.layers)
    assert 'id="frame"' in html and html.count("<video ") == len(pyramid.layers)


def test_an_image_report_speaks_of_images(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, image=True, shapes=((1, 32, 32),))
    html = write_report(pyramid, tmp_path, frames=frames_for((1, 32, 32))).read_text()
    assert "<video" not in html and '<svg class="profile"' not in html and 'id="frame"' not in html
    assert "over the image" in html and "clip" not in html.split("<main>", 1)[1].split(
        "<script>", 1)[0].lower()


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
        ({"graph_engine": "neato"}, InvalidArgumentError, "choose 'auto', 'dot' or 'plain'"),
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
    assert f"Not drawn: {last}." in html and "not expanded</td>" in html
    panel = html.split(f'data-node="{last}:{pyramid.layers[-1].kernels[0]}" hidden>', 1)[1]
    assert "No map: not expanded" in panel.split("</section>", 1)[0]
    # the root kernel (the class's output channel) heads the graph
    assert 'data-node="fc:3"' in html


def test_a_two_input_report_draws_each_level_over_its_input(tmp_path: Path) -> None:
    pyramid = FakePyramid(levels=2, shapes=((8, 16, 16), (4, 8, 8)))
    frames = [frames_for((8, 16, 16)), frames_for((4, 8, 8), seed=7)]
    html = write_report(pyramid, tmp_path, frames=frames, max_kernels_per_layer=2).read_text()
    assert "· input 0</p>" in html and "· input 1</p>" in html
    assert html.count('<section class="kernel-panel"') == 4
