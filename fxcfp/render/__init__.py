"""Pictures of a Class Feature Pyramid: overlays, GIF/MP4/PNG files, figures and an HTML report.

Nothing in :mod:`fxcfp.passes` imports this package; it only reads a finished
:class:`fxcfp.Pyramid`. Needs the ``render`` extra (matplotlib, av, tqdm).

Example:
    >>> import fxcfp  # doctest: +SKIP
    >>> from fxcfp.render import write_report
    >>> pyramid = fxcfp.analyze(model, clip)  # doctest: +SKIP
    >>> write_report(pyramid, "out", clip=clip, mean=MEAN, std=STD)  # doctest: +SKIP
    PosixPath('out/report.html')
"""

from __future__ import annotations

from fxcfp.render.figures import contact_sheet, pyramid_figure
from fxcfp.render.frames import to_frames
from fxcfp.render.overlay import colorize, overlay
from fxcfp.render.pyramid_views import RenderedLevel, RenderResult, render_pyramid
from fxcfp.render.report import write_report
from fxcfp.render.writers import (
    gif_bytes,
    png_bytes,
    save_frames_png,
    save_gif,
    save_mp4,
    save_png,
)

__all__ = [
    "RenderResult",
    "RenderedLevel",
    "colorize",
    "contact_sheet",
    "gif_bytes",
    "overlay",
    "png_bytes",
    "pyramid_figure",
    "render_pyramid",
    "save_frames_png",
    "save_gif",
    "save_mp4",
    "save_png",
    "to_frames",
    "write_report",
]
