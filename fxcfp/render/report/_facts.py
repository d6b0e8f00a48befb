"""What a report explains, in words: the model, weights, input, preprocessing, options and run
(the page's header), the warning banner, the top classes, and a contrastive pyramid's section."""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError, InvalidTypeError
from fxcfp.render._common import PyramidLike

__all__ = ["RANDOM_WEIGHTS", "TOP_CLASSES", "asked", "banner", "class_names", "contrast_section",
           "facts", "top_classes"]

# the banner a report of an untrained model carries, whatever it is mailed on as
RANDOM_WEIGHTS = "random weights — not an explanation of a trained model"
TOP_CLASSES = 5  # the prediction lists this many classes
_BAR_WIDTH = 160  # a probability of 1 as a bar, px


def banner(identity: Mapping[str, Any] | None) -> str | None:
    """The warning over the page: unknown model, random or unknown weights; ``None`` if none."""
    if identity is None:
        return ("model and weights not stated (this report was written by write_report without "
                "identity=...): check what it explains before you trust it")
    trained = identity.get("weights", {}).get("trained")
    if trained is False:
        return RANDOM_WEIGHTS
    if trained is None:
        return ("weights not known: the model came from a factory fxcfp cannot inspect; pass "
                "--weights FILE to say which weights it holds")
    return None


def contrast_section(pyramid: PyramidLike, probabilities: torch.Tensor, names: list[str],
              levels: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The "why A and not B" section of a contrastive pyramid (``None`` for a plain one)."""
    if pyramid.contrast is None:
        return None
    target, other = int(pyramid.target), int(pyramid.contrast)
    logits = torch.as_tensor(pyramid.logits).detach().to("cpu", torch.float64).reshape(-1)
    return {"a": names[target], "b": names[other],
            "logit_a": float(logits[target]), "logit_b": float(logits[other]),
            "p_a": float(probabilities[target]), "p_b": float(probabilities[other]),
            "still": levels[0]["still"] if levels else None,
            "rows": [(layer.name, len(layer.kernels), layer.total)
                     for layer in tuple(pyramid.layers)[:6]]}


def asked(identity: Mapping[str, Any] | None) -> str:
    """Which class is explained, in words."""
    asked = (identity or {}).get("options", {}).get("class")
    return "the top class" if asked is None else f"the class asked for ({asked})"


def facts(identity: Mapping[str, Any] | None, pyramid: PyramidLike, image: bool) -> list[tuple[str, str]]:
    """The header's rows: one line per fact, in words."""
    about = dict(identity or {})
    facts: list[tuple[str, str]] = []
    model = about.get("model")
    if model:
        facts.append(("model", f"{model.get('name')} — {model.get('class')}"
                      f"{' (image model)' if model.get('dims') == 2 else ''}"))
    weights = about.get("weights")
    if weights:
        text = str(weights.get("source", ""))
        if weights.get("file"):
            text += f" — {weights['file']}"
        if weights.get("sha256"):
            text += f", sha256 {weights['sha256']}"
        facts.append(("weights", text))
    source = about.get("input")
    if source:
        facts.append(("image" if image else "video", _input_text(source, image)))
    pre = about.get("preprocessing")
    if pre:
        resize = pre.get("resize")
        resize_text = ("short side to " + str(resize) if isinstance(resize, int)
                       else "to " + " x ".join(map(str, resize)) if resize
                       else f"short side to {pre.get('crop')}")
        facts.append(("preprocessing",
                      f"resize {resize_text}, centre crop {pre.get('crop')}, "
                      f"{pre.get('interpolation')}, normalisation {pre.get('normalization')} "
                      f"(mean {_triple(pre.get('mean'))}, std {_triple(pre.get('std'))}) — "
                      f"{pre.get('source')}"))
    options = dict(about.get("options") or {})
    options.setdefault("threshold", float(pyramid.threshold))
    options.setdefault("depth", pyramid.max_depth)
    options.setdefault("top_k", pyramid.top_k)
    facts.append(("options", ", ".join(
        f"{key.replace('_', '-')} {'none' if value is None else value}"
        for key, value in options.items() if not (key == "class" and value is None))))
    versions = dict(about.get("versions") or {})
    if not versions:
        from fxcfp import __version__

        versions = {"fxcfp": __version__, "torch": torch.__version__,
                    "python": platform.python_version()}
    run = ", ".join(f"{k} {v}" for k, v in versions.items())
    device = about.get("device") or str(torch.as_tensor(pyramid.logits).device)
    timings = about.get("timings") or {}
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    facts.append(("run", f"{run}; device {device}" + (f"; {timing}" if timing else "")))
    return facts


def _input_text(source: Mapping[str, Any], image: bool) -> str:
    name = source.get("file", "?")
    frames = list(source.get("frames") or [])
    seconds = source.get("seconds")
    if source.get("kind") == "image":
        return f"{name}, a still image, {_size(source)}"
    if image or len(frames) == 1:
        at = f" at {seconds[0]:.2f} s" if seconds else ""
        return f"{name}, frame {frames[0] if frames else '?'}{at} (one still), {_size(source)}"
    span = f", {seconds[0]:.2f}–{seconds[1]:.2f} s" if seconds else ""
    return (f"{name}, {len(frames)} frames ({frames[0]}..{frames[-1]}{span}), "
            f"{_size(source)}")


def _size(source: Mapping[str, Any]) -> str:
    size = source.get("size") or []
    return " x ".join(map(str, size)) if size else ""


def _triple(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values or ()) + ")"


def class_names(labels: Sequence[str] | None, count: int) -> list[str]:
    """One name per model output: the labels given (checked), or ``class <index>``."""
    if labels is None:
        return [f"class {i}" for i in range(count)]
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise InvalidTypeError(
            f"write_report(labels=...) takes a list of class names, got {type(labels).__name__}."
        )
    if len(labels) != count:
        raise InvalidArgumentError(
            f"write_report(labels=...) has {len(labels)} names but the model has {count} "
            "classes; pass one name per output."
        )
    return [str(name) for name in labels]


def top_classes(probabilities: torch.Tensor, names: list[str],
                target: int) -> list[dict[str, Any]]:
    """The most probable classes, with the width of each one's bar."""
    top = torch.topk(probabilities, min(TOP_CLASSES, len(probabilities)))
    return [{"name": names[i], "p": p, "target": i == target, "width": max(p * _BAR_WIDTH, 2)}
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]
