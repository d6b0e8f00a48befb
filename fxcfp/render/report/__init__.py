"""The HTML report: one self-contained page that explains a prediction with its pyramid.

``_page`` builds the page from the Jinja2 templates in ``fxcfp/render/templates``; ``_facts``
says what is explained (model, weights, input, options), ``_graph`` chooses and lays out the
kernels of the dependency graph, ``_media`` writes and embeds the pictures.
"""

from __future__ import annotations

from fxcfp.render.report._facts import RANDOM_WEIGHTS
from fxcfp.render.report._page import write_report

__all__ = ["RANDOM_WEIGHTS", "write_report"]
