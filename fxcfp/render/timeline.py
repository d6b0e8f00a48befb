"""The timeline of a long video: per window the explained class and its probability, and per
pyramid level which seconds carry the evidence, in one self-contained HTML page."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fxcfp._files import atomic_write
from fxcfp.render._report_assets import data_uri, render

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
    """Write ``report.html`` (the timeline and a table of the windows) into ``out_dir``.

    The page is drawn from ``templates/timeline.html.j2``; every label, the video's name, the
    title and the summary are escaped there.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = timeline_png(video, labels)
    rows = [{"window": w, "name": _name(labels, w.target), "peaks": _peaks(video, w)}
            for w in video.windows]
    page = render("timeline.html.j2", "write_timeline_report", title=title,
                  video=video, video_name=Path(video.source).name,
                  picture=data_uri(png, "image/png"), rows=rows, summary=summary)
    path = out / "report.html"
    with atomic_write(path) as file:
        file.write(page)
    return path


def _peaks(video: WindowedVideo, window: Window) -> list[tuple[str, int]]:
    """``(level, video frame)`` where each of the top four levels' profile peaks."""
    peaks = []
    for level in video.levels[:4]:
        profile = window.profiles.get(level)
        if profile is not None and profile.sum() > 0:
            peaks.append((level, window.frames[int(profile.argmax())]))
    return peaks
