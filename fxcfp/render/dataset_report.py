"""The aggregate report of a dataset run: heat maps of the kernel x class matrix and of the
class x class overlap, in one self-contained HTML page."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fxcfp._files import atomic_write
from fxcfp.render._report_assets import data_uri, render

if TYPE_CHECKING:
    from fxcfp.dataset._aggregate import Tally

__all__ = ["heat_map_png", "write_dataset_report"]

# the kernel x class heat map shows this many kernels: those whose frequency varies most
_KERNELS = 60


def heat_map_png(matrix: np.ndarray, rows: list[str], columns: list[str], title: str, *,
                 label: str, vmax: float = 1.0) -> bytes:
    """A PNG heat map of ``matrix`` (``rows x columns``) with a colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = max(2.5, 0.16 * len(rows) + 1.4)
    width = max(3.5, 0.32 * len(columns) + 3.0)
    figure, axes = plt.subplots(figsize=(width, height), dpi=110)
    image = axes.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax,
                        interpolation="nearest")
    axes.set_xticks(range(len(columns)), columns, rotation=60, ha="right", fontsize=7)
    axes.set_yticks(range(len(rows)), rows, fontsize=6)
    axes.set_title("\n".join(textwrap.wrap(title, 48)), fontsize=8)
    figure.colorbar(image, ax=axes, label=label, fraction=0.04)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def _kernel_matrix(drawn: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    rows = drawn["rows"]
    classes = drawn["classes"]
    column = {c: j for j, c in enumerate(classes)}
    keys = [f"{layer}:{channel}" for layer, channel in zip(rows["layer"], rows["channel"])]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    matrix = np.zeros((len(index), len(classes)))
    for key, cls, frequency in zip(keys, rows["class"], rows["frequency"]):
        matrix[index[key], column[cls]] = frequency
    names = list(index)
    if len(names) > _KERNELS:
        # the kernels that tell classes apart: largest spread of frequency across classes
        spread = matrix.max(1) - matrix.min(1) if len(classes) > 1 else matrix[:, 0]
        keep = np.sort(np.argsort(-spread, kind="stable")[:_KERNELS])
        matrix, names = matrix[keep], [names[i] for i in keep]
    return matrix, names


def _overlap_matrix(drawn: dict[str, Any], layer: str) -> np.ndarray:
    classes = drawn["classes"]
    column = {c: j for j, c in enumerate(classes)}
    matrix = np.full((len(classes), len(classes)), np.nan)
    overlap = drawn["overlap"]
    for a, b, where, value in zip(overlap["class_a"], overlap["class_b"], overlap["layer"],
                                  overlap["jaccard"]):
        if where == layer:
            matrix[column[a], column[b]] = matrix[column[b], column[a]] = value
    return matrix


def write_dataset_report(drawn: dict[str, Any], tally: Tally, folder: Path) -> Path:
    """Write ``report.html`` into ``folder`` from :func:`write_aggregates`' result.

    The page is drawn from ``templates/dataset.html.j2``; the class labels and the class
    pyramids' file names are escaped there.
    """
    labels = drawn["labels"]
    short = [text[:24] for text in labels]
    matrix, kernels = _kernel_matrix(drawn)
    kernel_png = heat_map_png(matrix, kernels, short,
                              f"kernel x class: share of each class's clips selecting the kernel "
                              f"({len(kernels)} kernels that vary most)", label="share of clips")
    overall = _overlap_matrix(drawn, "all")
    overlap_png = heat_map_png(np.nan_to_num(overall), short, short,
                               f"class x class: Jaccard of the class pyramids (kernels in >= "
                               f"{drawn['share']:.0%} of a class's clips), all levels",
                               label="Jaccard")
    # per level: the mean Jaccard over class pairs, from the class to the stem
    levels = [name for name in dict.fromkeys(drawn["overlap"]["layer"]) if name != "all"]
    order = {name: i for i, name in enumerate(tally.names)}
    levels.sort(key=lambda name: -order.get(name, -1))
    pairs = np.array([[_mean_pairs(_overlap_matrix(drawn, level))] for level in levels])
    level_png = heat_map_png(np.nan_to_num(pairs), levels, ["mean over class pairs"],
                             "Jaccard per level, from the class to the stem",
                             label="Jaccard") if levels else b""
    clips, kernels_kept, graphs = _classes_columns(drawn, folder)
    classes = [{"label": label, "clips": count, "kernels": kept, "graph": graph}
               for label, count, kept, graph in zip(labels, clips, kernels_kept, graphs)]
    page = render("dataset.html.j2", "write_dataset_report", classes=classes,
                  share=drawn["share"], kernel_picture=data_uri(kernel_png, "image/png"),
                  overlap_picture=data_uri(overlap_png, "image/png"),
                  level_picture=data_uri(level_png, "image/png") if level_png else None)
    path = folder / "report.html"
    with atomic_write(path) as file:
        file.write(page)
    return path


def _mean_pairs(matrix: np.ndarray) -> float:
    upper = matrix[np.triu_indices(len(matrix), k=1)] if len(matrix) > 1 else matrix.ravel()
    upper = upper[~np.isnan(upper)]
    return float(upper.mean()) if upper.size else 0.0


def _classes_columns(drawn: dict[str, Any], folder: Path) -> tuple[list[int], list[int],
                                                                     list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "classes.parquet").to_pydict()
    return table["clips"], table["kernels"], table["graph"]
