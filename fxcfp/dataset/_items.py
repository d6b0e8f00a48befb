"""Which clips a dataset run explains: a folder of videos or a CSV of ``(path, label)``."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import DatasetError

__all__ = ["VIDEO_SUFFIXES", "DatasetError", "Item", "list_items"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv")


@dataclass(frozen=True)
class Item:
    """One clip of the dataset.

    Attributes:
        key: its identity across runs: the path as the folder or CSV gives it (the manifest's key).
        path: the file to read.
        label: the class to explain (``None``: the model's top class).
        name: a file-name-safe, unique stem for its saved pyramid.
    """

    key: str
    path: Path
    label: int | None
    name: str


def _name(key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(key).stem)[:40]
    # the digest keeps two clips of one stem in different folders apart
    return f"{stem}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:10]}"


def list_items(source: str | Path, resolve: Callable[[str, str], int], *,
               use_labels: bool = True) -> list[Item]:
    """The clips of a folder (recursively; labels from a first-level sub-folder's name) or of a
    CSV with ``path`` and ``label`` columns (paths relative to the CSV's folder).

    Args:
        source: the folder or the CSV file.
        resolve: turns a label text into a class index, raising :class:`DatasetError` with the
            place in its message (``resolve(text, where)``).
        use_labels: ``False`` explains each clip's top class and ignores labels.
    """
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"explain-dataset: no such folder or CSV file: '{source}'")
    if source.is_dir():
        items = _from_folder(source, resolve, use_labels)
    else:
        items = _from_csv(source, resolve, use_labels)
    if not items:
        raise DatasetError(
            f"explain-dataset: '{source}' holds no clip; a folder needs video files "
            f"({', '.join(VIDEO_SUFFIXES)}), a CSV at least one row")
    return items


def _from_folder(folder: Path, resolve: Callable[[str, str], int], use_labels: bool
                 ) -> list[Item]:
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    relative = [p.relative_to(folder) for p in files]
    # labels from folders only where every clip sits in a class folder (Kinetics' layout)
    foldered = use_labels and bool(relative) and all(len(r.parts) >= 2 for r in relative)
    items = []
    labels: dict[str, int] = {}
    for path, rel in zip(files, relative):
        label = None
        if foldered:
            text = rel.parts[0]
            if text not in labels:
                labels[text] = resolve(text, f"folder '{folder / text}'")
            label = labels[text]
        key = rel.as_posix()
        items.append(Item(key=key, path=path, label=label, name=_name(key)))
    return items


def _from_csv(path: Path, resolve: Callable[[str, str], int], use_labels: bool) -> list[Item]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
                    for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"explain-dataset: cannot read '{path}' as a CSV file ({err})"
                           ) from None
    needed: Sequence[str] = ("path", "label") if use_labels else ("path",)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DatasetError(
            f"explain-dataset: the CSV '{path}' has no column {', '.join(map(repr, missing))} "
            f"(its columns: {', '.join(map(repr, columns)) or 'none'}). Hint: a header row "
            "'path,label' (or --no-labels to explain each clip's top class)")
    items = []
    seen: set[str] = set()
    for number, row in enumerate(rows, start=2):
        text = row.get("path", "")
        if not text:
            raise DatasetError(f"explain-dataset: '{path}' line {number} has an empty path")
        if text in seen:
            raise DatasetError(
                f"explain-dataset: '{path}' line {number} repeats the clip '{text}'")
        seen.add(text)
        label_text = row.get("label", "") if use_labels else ""
        label = resolve(label_text, f"'{path}' line {number}") if label_text else None
        clip = Path(text) if Path(text).is_absolute() else path.parent / text
        items.append(Item(key=text, path=clip, label=label, name=_name(text)))
    return items
