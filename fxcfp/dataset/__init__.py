"""Whole datasets: explain every clip of a folder or CSV, resumably, on one process or many
(``torchrun``), and aggregate the pyramids per class.

Example:
    A folder with one sub-folder per class (its name: the class index or label):

    >>> import pathlib, shutil, tempfile, torchvision
    >>> from fxcfp.data import sample_video
    >>> from fxcfp.dataset import explain_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "videos" / "7").mkdir(parents=True)
    >>> _ = shutil.copy(sample_video(), root / "videos" / "7")
    >>> model = torchvision.models.video.r3d_18()
    >>> result = explain_dataset(model, root / "videos", root / "out", frames=8, size=56,
    ...                          workers=0)
    >>> result.analysed, result.report.relative_to(root).as_posix()
    (1, 'out/aggregate/report.html')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._aggregate import Tally
    from ._items import VIDEO_SUFFIXES, DatasetError, Item, list_items
    from ._run import DatasetOptions, DatasetResult, explain_dataset, run_dataset

# imported on first use (PEP 562): the command line registers `explain-dataset` without torch,
# so that a bad path still fails before torch loads
_LAZY = {
    "Tally": "._aggregate",
    "VIDEO_SUFFIXES": "._items", "DatasetError": "._items", "Item": "._items",
    "list_items": "._items",
    "DatasetOptions": "._run", "DatasetResult": "._run", "explain_dataset": "._run",
    "run_dataset": "._run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fxcfp.dataset' has no attribute {name!r}")

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
