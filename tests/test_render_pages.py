"""The pages over many explanations: the timeline of a long video and the dataset report.

Both are drawn from the Jinja2 templates the explanation report uses; every string a user or
their data provides (class labels, the video's name, the title, the summary) is escaped.
"""

from __future__ import annotations

import fnmatch
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

import fxcfp
from fxcfp.dataset._aggregate import Tally, write_aggregates
from fxcfp.render._report_assets import asset
from fxcfp.render.dataset_report import write_dataset_report
from fxcfp.render.timeline import write_timeline_report
from fxcfp.windows import Window, WindowedVideo
from tests.browser import chromium, console_errors, needs_chromium
from tests.dataset_models import tiny

pq = pytest.importorskip("pyarrow.parquet")

# a label that runs a script where it is not escaped; it logs, so a browser would show it
EVIL = "<script>console.error(1)</script>"
ESCAPED = "&lt;script&gt;console.error(1)&lt;/script&gt;"
EVIL_VIDEO = "<img src=x onerror=console.error(2)>.mp4"
LEVELS = ("fc", "conv2", "conv1")


class _Page(HTMLParser):
    """The tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def rows(self) -> list[list[str]]:
        """The cells of every table row that holds ``<td>`` cells, as text."""
        found = []
        for row in re.findall(r"<tr>(.*?)</tr>", self.html, flags=re.S):
            cells = re.findall(r"<td>(.*?)</td>", row, flags=re.S)
            if cells:
                found.append([unescape(re.sub(r"<[^>]+>", "", c)) for c in cells])
        return found


def _video(source: str, fps: float) -> WindowedVideo:
    rng = np.random.default_rng(0)
    windows = []
    for i in range(3):
        profiles = {level: rng.dirichlet(np.ones(4)) for level in LEVELS}
        windows.append(Window(index=i, first_frame=4 * i, frames=tuple(range(4 * i, 4 * i + 4)),
                              start_s=0.5 * i, end_s=0.5 * i + 0.5, target=i % 2,
                              probability=0.3 + 0.1 * i, top=((i % 2, 0.3 + 0.1 * i),),
                              profiles=profiles))
    return WindowedVideo(source=source, fps=fps, frame_count=12, window=4, stride=4,
                         levels=LEVELS, windows=tuple(windows))


@pytest.fixture(scope="module")
def timeline(tmp_path_factory) -> tuple[WindowedVideo, Path]:
    video = _video(str(Path("videos") / EVIL_VIDEO), fps=8.0)
    path = write_timeline_report(video, tmp_path_factory.mktemp("timeline"),
                                 labels=[EVIL, "b & c"], title="cats & dogs",
                                 summary=f"most confident: {EVIL}")
    return video, path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """The report of four clips of the tiny model, two explained for each of classes 0 and 1."""
    model = tiny()
    tally = None
    for seed in range(4):
        clip = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(seed))
        pyramid = fxcfp.analyze(model, clip, seed % 2, threshold=0.5)
        tally = tally or Tally.like(pyramid)
        tally.add(pyramid)
    assert tally is not None
    folder = tmp_path_factory.mktemp("dataset")
    drawn = write_aggregates(tally, folder, share=0.5, labels=(EVIL, "b & c", "unused"))
    return write_dataset_report(drawn, tally, folder)


def _assert_no_markup_of_the_user(html: str) -> None:
    page = _Page(html)
    # neither page has a script of its own, nor an image but its data-URI pictures
    assert [tag for tag, _ in page.tags if tag == "script"] == []
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert (attrs["src"] or "").startswith("data:image/png;base64,"), attrs
    assert EVIL not in html and ESCAPED in html
    assert any(EVIL in text for text in page.text)  # shown as text, as the user wrote it


def test_the_timeline_page_escapes_labels_the_video_name_the_title_and_the_summary(timeline):
    _, path = timeline
    html = path.read_text(encoding="utf-8")
    _assert_no_markup_of_the_user(html)
    assert "<title>cats &amp; dogs · timeline</title>" in html
    assert EVIL_VIDEO not in html
    assert '<p class="prediction">&lt;img src=x onerror=console.error(2)&gt;.mp4</p>' in html
    assert f"<pre>most confident: {ESCAPED}</pre>" in html
    assert "<td>b &amp; c</td>" in html


def test_the_dataset_page_escapes_the_class_labels(dataset):
    html = dataset.read_text(encoding="utf-8")
    _assert_no_markup_of_the_user(html)
    assert f"<td>{ESCAPED}</td>" in html and "<td>b &amp; c</td>" in html


def test_the_timeline_page_lists_every_window_with_its_class_and_peaks(timeline):
    video, path = timeline
    page = _Page(path.read_text(encoding="utf-8"))
    names = [EVIL, "b & c"]
    expected = []
    for w in video.windows:
        peaks = ", ".join(f"{level}: {w.frames[int(np.argmax(w.profiles[level]))]}"
                          for level in LEVELS)
        expected.append([str(w.index), f"{w.start_s:.2f}-{w.end_s:.2f}",
                         f"{w.frames[0]}..{w.frames[-1]}", names[w.target],
                         f"{w.probability:.3f}", peaks])
    assert page.rows() == expected
    text = " ".join(" ".join(page.text).split())
    assert "3 windows of 4 frames, stride 4; 12 frames at 8.00 fps" in text
    assert [a["alt"] for tag, a in page.tags if tag == "img"] == ["timeline"]


def test_a_timeline_without_a_frame_rate_counts_frames_and_names_missing_classes(tmp_path):
    video = _video("clip.mp4", fps=0.0)
    path = write_timeline_report(video, tmp_path)
    page = _Page(path.read_text(encoding="utf-8"))
    text = " ".join(" ".join(page.text).split())
    assert "3 windows of 4 frames, stride 4; 12 frames" in text and "fps" not in text
    assert "<title>clip.mp4 · timeline</title>" in page.html
    assert [row[3] for row in page.rows()] == ["class 0", "class 1", "class 0"]
    # no summary given: no empty section for it
    assert "Summary of the most confident window" not in text


def test_the_dataset_page_lists_every_class_from_its_table(dataset):
    page = _Page(dataset.read_text(encoding="utf-8"))
    table = pq.read_table(dataset.parent / "classes.parquet").to_pydict()
    assert page.rows() == [[label, str(clips), str(kernels), graph] for label, clips, kernels, graph
                           in zip(table["label"], table["clips"], table["kernels"],
                                  table["graph"])]
    assert table["clips"] == [2, 2]
    text = " ".join(" ".join(page.text).split())
    assert "2 classes" in text and "selected in at least 50% of the class's clips" in text
    assert [a["alt"] for tag, a in page.tags if tag == "img"] == [
        "kernel x class heat map", "class x class heat map", "Jaccard per level"]


def test_both_pages_share_the_report_layout_and_style(timeline, dataset):
    for path in (timeline[1], dataset):
        html = path.read_text(encoding="utf-8")
        assert path.name == "report.html"
        # the layout of the templates (base.html.j2, overview.html.j2), the report's style sheet
        assert html.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
        assert '<body class="overview">\n<header class="hero">' in html
        assert f"<style>{asset('report.css')}</style>" in html
        # self-contained: nothing is loaded from elsewhere
        assert not re.search(r'(src|href)="(?!data:)', html)


@needs_chromium
def test_both_pages_open_in_chromium_without_console_errors_and_show_labels_as_text(
        timeline, dataset, tmp_path):
    for path in (timeline[1], dataset):
        run = chromium(tmp_path / "profile", path.as_uri(), "--dump-dom")
        assert run.returncode == 0, run.stderr[-2000:]
        assert console_errors(run.stderr) == []
        dom = run.stdout
        assert ESCAPED in dom and "<script" not in dom
        assert 'class="hero"' in dom


def test_every_template_ships_in_the_package():
    # an installed (non-editable) wheel has only the files package-data names
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    shipped = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["fxcfp"]
    templates = sorted((root / "fxcfp" / "render" / "templates").iterdir())
    assert {"base.html.j2", "overview.html.j2", "timeline.html.j2", "dataset.html.j2",
            "report.html.j2", "report.css"} <= {path.name for path in templates}
    for path in templates:
        name = path.relative_to(root / "fxcfp").as_posix()
        assert any(fnmatch.fnmatch(name, pattern) for pattern in shipped), name
