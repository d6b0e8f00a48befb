"""The report in a real browser: headless Chromium loads it offline, without console errors,
decodes every image, and selects a kernel from the address and from a click."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_render_fake import FakePyramid, frames_for  # tests/ is on sys.path under pytest

from fxcfp.render import write_report

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(`make test` installs it when it can: scripts/ensure-chromium)",
)


def _chromium(profile: Path, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on ``url``: no network, no sync, a throwaway profile."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        # let load handlers and timers run before the DOM is dumped
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        *flags,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _console_errors(stderr: str) -> list[str]:
    # the report logs nothing, so any console line is a problem; page exceptions say "Uncaught"
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakePyramid, Path]:
    pyramid = FakePyramid(levels=4, kernels=5, shapes=((8, 48, 48),))
    out = tmp_path_factory.mktemp("browser-report")
    path = write_report(
        pyramid,
        out,
        frames=frames_for((8, 48, 48)),
        max_kernels_per_layer=4,
        labels=[f"action {i}" for i in range(10)],
    )
    return pyramid, path


def test_console_errors_are_caught_by_this_harness(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>notDefined();</script></body></html>")
    run = _chromium(tmp_path / "profile", broken.as_uri(), "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in _console_errors(run.stderr))


def test_the_report_loads_every_image_and_selects_the_kernel_in_the_address(
    report, tmp_path: Path
) -> None:
    pyramid, path = report
    layer = pyramid.layers[1]
    key = max(
        (f"{layer.name}:{k}" for k in layer.kernels),
        key=lambda node: pyramid.graph.nodes[node]["score"],
    )
    run = _chromium(tmp_path / "profile", f"{path.as_uri()}#kernel={key}", "--dump-dom")
    dom = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console_errors(run.stderr) == []
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-images-loaded="true"' in body
    assert int(re.search(r'data-image-count="(\d+)"', body).group(1)) == 2 + 4 + 4 * 4
    assert f'data-selected-kernel="{key}"' in body
    # that kernel's panel is the one shown, and its children are lit in the graph
    assert f'<section class="kernel-panel" data-node="{key}">' in dom
    assert len(re.findall(r'<section class="kernel-panel" data-node="[^"]+" hidden="">', dom)) == 15
    shown_children = re.findall(
        r'class="kernel child" id="k\d+" href="[^"]*" data-node="([^"]+)"', dom
    )
    assert shown_children and set(shown_children) <= set(pyramid.graph.successors(key))
    assert 'class="edge active"' in dom


def test_clicking_a_kernel_shows_its_panel(report, tmp_path: Path) -> None:
    _, path = report
    # a page beside the report clicks the first kernel of the graph inside an iframe and copies
    # what the report then shows into its own DOM (file pages may read each other with the flag)
    harness = path.parent / "click.html"
    harness.write_text(
        """<!DOCTYPE html><html><body><iframe id="f" src="report.html" width="1200"
        height="900"></iframe><pre id="out">pending</pre><script>
        document.getElementById("f").addEventListener("load", function () {
          var doc = this.contentDocument;
          var kernel = doc.querySelector("#graph a.kernel");
          kernel.dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true}));
          setTimeout(function () {
            var shown = doc.querySelectorAll(".kernel-panel:not([hidden])");
            document.getElementById("out").textContent = JSON.stringify({
              clicked: kernel.getAttribute("data-node"),
              selected: doc.body.getAttribute("data-selected-kernel"),
              shown: Array.prototype.map.call(shown, function (p) { return p.dataset.node; }),
              lit: doc.querySelectorAll("#graph .kernel.selected").length
            });
          }, 200);
        });
        </script></body></html>"""
    )
    run = _chromium(
        tmp_path / "profile", harness.as_uri(), "--dump-dom", "--allow-file-access-from-files"
    )
    assert _console_errors(run.stderr) == []
    state = re.search(r'<pre id="out">(.*?)</pre>', run.stdout, re.S).group(1)
    clicked = re.search(r'"clicked":"([^"]+)"', state).group(1)
    assert f'"selected":"{clicked}"' in state
    assert f'"shown":["{clicked}"]' in state
    assert '"lit":1' in state


def test_the_report_renders_on_screen(report, tmp_path: Path) -> None:
    _, path = report
    shot = tmp_path / "report.png"
    run = _chromium(
        tmp_path / "profile", path.as_uri(), f"--screenshot={shot}", "--window-size=1280,2400"
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.uint32)
    assert pixels.shape == (2400, 1280, 3)
    # the dark header, the figures and the maps: far more than a blank page's one colour
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 1000
