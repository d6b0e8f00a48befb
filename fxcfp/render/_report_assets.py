"""What every fxcfp page shares: the style sheet (``templates/report.css``) and data URIs.

The explanation report renders its templates itself; the timeline and dataset pages reuse the
style sheet and embed their pictures with :func:`data_uri`.
"""

from __future__ import annotations

import base64
from importlib.resources import files

__all__ = ["CSS", "data_uri"]

CSS = (files("fxcfp.render") / "templates" / "report.css").read_text(encoding="utf-8")


def data_uri(data: bytes, mime: str) -> str:
    """``data`` as a ``data:`` URI, so the page needs no file beside it."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
