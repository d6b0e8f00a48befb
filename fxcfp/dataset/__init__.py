"""Whole datasets: explain every clip of a folder or CSV, resumably, on one process or many
(``torchrun``), and aggregate the pyramids per class.

Example:
    >>> from fxcfp.dataset import explain_dataset
    >>> result = explain_dataset(model, "videos/", "out/")  # doctest: +SKIP
    >>> result.clips_per_second  # doctest: +SKIP
"""

from __future__ import annotations

from ._aggregate import Tally
from ._items import VIDEO_SUFFIXES, DatasetError, Item, list_items
from ._run import DatasetOptions, DatasetResult, explain_dataset, run_dataset

__all__ = [
    "VIDEO_SUFFIXES",
    "DatasetError",
    "DatasetOptions",
    "DatasetResult",
    "Item",
    "Tally",
    "explain_dataset",
    "list_items",
    "run_dataset",
]
