"""The timeline of a long video: per window the explained class and its probability, and per
pyramid level which seconds carry the evidence, in one self-contained HTML page."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from fxcfp._files import atomic_write
from fxcfp.render._report_assets import CSS, data_uri

if TYPE_CHECKING:
    from fxcfp.windows import Window, WindowedVideo

__all__ = ["timeline_png", "write_timeline_report"]


def _name(labels: Sequence[str] | None, index: int) -> str:
    return labels[index] if labels and 0 <= index < len(labels) else f"class {index}"


def timeline_png(video: WindowedVideo, labels: Sequence[str] | None = None, *, bins: int = 400) -> bytes:
    """Two aligned panels over the video's time: each window's class and probability, and a heat
    map with one row per level (from the class at the top to the stem) of the evidence per
    second (1 = a window's flat share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, times = video.timeline(bins=bins)
    # a level without a location (a classifier's input) has no timeline: leave its row out
    rows = [i for i in range(len(video.levels)) if values[i].any()] or list(
        range(len(video.levels)))
    values, names = values[rows], [video.levels[i] for i in rows]
    end = max(w.end_s for w in video.windows)
    height = 1.6 + 0.22 * max(len(names), 3)
    figure, (top, heat) = plt.subplots(
        2, 1, figsize=(11, height + 1.6), dpi=110, sharex=True,
        gridspec_kw={"height_ratios": [1.4, height]})
    classes = sorted({w.target for w in video.windows})
    colours = plt.get_cmap("tab10")
    for w in video.windows:
        colour = colours(classes.index(w.target) % 10)
        top.fill_between([w.start_s, w.end_s], 0, w.probability, step="pre", color=colour,
                         alpha=0.75, linewidth=0)
    for number, cls in enumerate(classes[:10]):
        top.plot([], [], color=colours(number % 10), linewidth=6, label=_name(labels, cls)[:28])
    # random or untrained weights give tiny probabilities: scale to the largest
    top.set_ylim(0, min(1.0, 1.15 * max(w.probability for w in video.windows)))
    top.set_ylabel("probability", fontsize=8)
    top.legend(fontsize=7, loc="upper right", ncol=min(len(classes), 4), frameon=False)
    top.set_title("explained class per window", fontsize=9)
    unit = "s" if video.fps > 0 else "frame"
    image = heat.imshow(values, aspect="auto", cmap="inferno", interpolation="nearest",
                        extent=(0, end if video.fps > 0 else times[-1] + 1,
                                len(names), 0))
    heat.set_yticks([i + 0.5 for i in range(len(names))], names, fontsize=6)
    heat.set_xlabel(f"time ({unit})", fontsize=8)
    heat.set_title("evidence per level over time (layer map's mass per frame; 1 = flat)",
                   fontsize=9)
    figure.colorbar(image, ax=heat, fraction=0.03, pad=0.01)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def write_timeline_report(video: WindowedVideo, out_dir: str | os.PathLike[str], *,
                          labels: Sequence[str] | None = None, title: str = "",
                          summary: str = "") -> Path:
    """Write ``report.html`` (the timeline and a table of the windows) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = timeline_png(video, labels)
    rows = "".join(
        f"<tr><td>{w.index}</td><td>{w.start_s:.2f}-{w.end_s:.2f}</td>"
        f"<td>{w.frames[0]}..{w.frames[-1]}</td><td>{escape(_name(labels, w.target))}</td>"
        f"<td>{w.probability:.3f}</td><td>{escape(_peak(video, w))}</td></tr>"
        for w in video.windows)
    page = "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title or Path(video.source).name)} · timeline</title>",
        f"<style>{CSS}</style></head><body>",
        '<header class="hero"><div><h1>Class Feature Pyramids over a whole video</h1>',
        f'<p class="prediction">{escape(Path(video.source).name)}</p>',
        f'<p class="meta">{len(video.windows)} windows of {video.window} frames, stride '
        f"{video.stride}; {video.frame_count} frames"
        f"{f' at {video.fps:.2f} fps' if video.fps > 0 else ''}</p></div></header><main>",
        '<section><h2>Timeline</h2><p class="lead">Top: the class each window is explained '
        "for, and its probability. Bottom: for each pyramid level (the class at the top, the "
        "stem at the bottom), where in time its layer map puts the evidence.</p>",
        f'<img alt="timeline" style="max-width:100%" src="{data_uri(png, "image/png")}">'
        "</section>",
        "<section><h2>Windows</h2><table><tr><th>#</th><th>seconds</th><th>frames</th>"
        f"<th>class</th><th>p</th><th>peak frame per level</th></tr>{rows}</table></section>",
        f"<section><h2>Summary of the most confident window</h2><pre>{escape(summary)}</pre>"
        "</section>" if summary else "",
        "</main></body></html>\n",
    ])
    path = out / "report.html"
    with atomic_write(path) as file:
        file.write(page)
    return path


def _peak(video: WindowedVideo, window: Window) -> str:
    parts = []
    for level in video.levels[:4]:
        profile = window.profiles.get(level)
        if profile is not None and profile.sum() > 0:
            parts.append(f"{level}: {window.frames[int(profile.argmax())]}")
    return ", ".join(parts)
