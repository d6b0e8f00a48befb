"""What every fxcfp page shares: the Jinja2 templates of ``fxcfp/render/templates``, their
style sheet (``report.css``) and data URIs.

Every page (the explanation report, the timeline of a long video, the dataset report) is
rendered by :func:`render` from one environment that autoescapes every value it prints, so a
class label, a video name or a path cannot inject markup; the templates extend
``base.html.j2``, which embeds the shared style sheet.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from fxcfp._errors import InvalidArgumentError

if TYPE_CHECKING:
    import jinja2

__all__ = ["asset", "data_uri", "render"]


def asset(name: str) -> str:
    """The text of ``templates/name`` (a style sheet or script the page embeds)."""
    return (files("fxcfp.render") / "templates" / name).read_text(encoding="utf-8")


def data_uri(data: bytes, mime: str) -> str:
    """``data`` as a ``data:`` URI, so the page needs no file beside it."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def render(template: str, where: str, **context: Any) -> str:
    """The page ``templates/template`` drawn with ``context``.

    Args:
        template: The template's file name, e.g. ``"timeline.html.j2"``.
        where: The public call drawing it, named when Jinja2 is missing.
        **context: What the template shows; a name it uses and ``context`` lacks is an error
            (``StrictUndefined``), not an empty string on the page.
    """
    return _environment(where).get_template(template).render(**context)


@lru_cache(maxsize=1)
def _loaded() -> jinja2.Environment:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fxcfp.render", "templates"),
        # every value is escaped, the markup of the templates themselves is not
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals["css"] = asset("report.css")
    return environment


def _environment(where: str) -> jinja2.Environment:
    try:
        return _loaded()
    except ImportError as err:  # pragma: no cover - jinja2 is in the render extra
        raise InvalidArgumentError(
            f"{where} needs Jinja2 for its templates. Hint: pip install 'fxcfp[render]'."
        ) from err
