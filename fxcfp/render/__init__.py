"""Pictures of a Class Feature Pyramid: overlays, GIF/MP4/PNG files, figures and an HTML report.

Nothing in :mod:`fxcfp.passes` imports this package; it only reads a finished
:class:`fxcfp.Pyramid`. Needs the ``render`` extra (matplotlib, av, tqdm).

Modules: ``frames`` (pixels from a normalised clip), ``overlay`` (heat maps over frames),
``writers`` (PNG, GIF, MP4), ``figures`` (the contact sheet and the pyramid figure),
``pyramid_views`` (:func:`render_pyramid`: every level to files), ``report/`` (the HTML page),
``timeline`` and ``dataset_report`` (the pages of a long video and of a dataset); ``_common``
holds what they share, among it :class:`~fxcfp.render._common.PyramidLike`, the interface
render reads a pyramid through.

Example:
    >>> import tempfile, torch, fxcfp
    >>> _ = torch.manual_seed(0)
    >>> from torch import nn
    >>> from fxcfp.render import write_report
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    >>> image = torch.randn(3, 16, 16)  # an image model: one still, no video
    >>> pyramid = fxcfp.analyze(model, image, threshold=0.5)
    >>> write_report(pyramid, tempfile.mkdtemp(), clip=image, mean=[0.45] * 3,
    ...              std=[0.225] * 3).name
    'report.html'
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
