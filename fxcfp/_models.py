"""Turning the command line's ``--model SPEC`` into a model, with what it expects to read.

A spec names a model in one of five ways; each is built offline, with random weights unless a
``--weights`` state dict or the model's own file provides them:

* none: the embedded default, EfficientNet-Lite0 pretrained on ImageNet and inflated to 3D;
* ``torchvision:r3d_18``: a torchvision video classifier (``weights=None``);
* ``pytorchvideo:x3d_s``: a PyTorchVideo hub builder (``pretrained=False``);
* ``package.module:factory``: any importable callable returning an ``nn.Module``;
* a file: a ``torch.export`` program (``.pt2``) or a TorchScript archive.

Example:
    >>> from fxcfp._models import load_model
    >>> loaded = load_model("torchvision:r3d_18")
    >>> loaded.normalization, loaded.frames, loaded.size, len(loaded.labels)
    ('kinetics', 16, 112, 400)
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._errors import FxcfpError

__all__ = ["FORMS", "LoadedModel", "ModelSpecError", "load_model"]

FORMS = (
    "torchvision:NAME (e.g. torchvision:r3d_18), pytorchvideo:NAME (e.g. pytorchvideo:x3d_s), "
    "package.module:factory, a torch.export file (.pt2) or a TorchScript file"
)

# Files a spec names by suffix; anything else is a file only when it exists.
_FILE_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".ptl", ".zip")
_IMPORT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# Input each family was trained on: frames, crop size. Chosen when --frames/--size are not given.
_TORCHVISION_INPUT = {"r3d_18": (16, 112), "mc3_18": (16, 112), "r2plus1d_18": (16, 112)}
_TORCHVISION_DEFAULT_INPUT = (16, 224)  # s3d, mvit_*, swin3d_*
_PYTORCHVIDEO_INPUT = {
    "x3d_xs": (4, 160), "x3d_s": (13, 160), "x3d_m": (16, 224), "x3d_l": (16, 312),
    "efficient_x3d_xs": (4, 160), "efficient_x3d_s": (13, 160),
    "slow_r50": (8, 224), "c2d_r50": (8, 224), "i3d_r50": (8, 224),
    "r2plus1d_r50": (16, 224), "csn_r101": (32, 224),
    "slowfast_r50": (32, 224), "slowfast_r101": (32, 224),
    "slowfast_16x8_r101_50_50": (64, 224),
}
_PYTORCHVIDEO_DEFAULT_INPUT = (16, 224)
# SlowFast reads two clips: the fast one, and every ALPHA-th frame of it for the slow one.
_SLOWFAST_ALPHA = 4
_OTHER_INPUT = (16, 112)
# The embedded default: 16 frames of 160 x 160 keep the demo quick on two cores.
_DEFAULT_INPUT = (16, 160)


class ModelSpecError(FxcfpError, ValueError):
    """``--model`` or ``--weights`` cannot be turned into a model."""


@dataclass(frozen=True)
class LoadedModel:
    """A model built from a spec, in eval mode, with what it expects to read.

    Attributes:
        model: The network.
        name: What to call it in messages (the spec, or the default's name).
        kind: ``"default"``, ``"torchvision"``, ``"pytorchvideo"``, ``"import"``,
            ``"export"`` or ``"torchscript"``.
        normalization: The :data:`fxcfp.video.NORMALIZATION` preset its family was trained with.
        labels: Class names in output order, or ``None`` when unknown.
        frames: Frames it was trained on (the default of ``--frames``).
        size: Crop size it was trained on (the default of ``--size``).
        trained: Whether it holds trained weights (pretrained, ``--weights`` or a model file);
            ``None`` when a factory's result cannot tell.
        slowfast_alpha: For SlowFast, how many fast frames per slow frame; ``None`` otherwise.
    """

    model: nn.Module
    name: str
    kind: str
    normalization: str
    labels: tuple[str, ...] | None
    frames: int
    size: int
    trained: bool | None
    slowfast_alpha: int | None = None

    def inputs(self, tensor: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """What to pass to :func:`fxcfp.analyze` for a ``3 x T x H x W`` clip."""
        if self.slowfast_alpha is None:
            return tensor
        slow = tensor.index_select(1, torch.from_numpy(self.slow_frames(tensor.shape[1])))
        return [slow, tensor]

    def pictures(self, frames: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """The ``T x H x W x 3`` frames of each model input, as :meth:`inputs` splits the clip."""
        if self.slowfast_alpha is None:
            return frames
        return [frames[self.slow_frames(len(frames))], frames]

    def slow_frames(self, count: int) -> np.ndarray:
        """Indices of the slow pathway's frames among ``count`` fast ones (PyTorchVideo's
        ``PackPathway``: evenly spaced, first and last included)."""
        alpha = self.slowfast_alpha or 1
        return np.linspace(0, count - 1, max(1, count // alpha)).round().astype(np.int64)


def load_model(spec: str | None, *, weights: str | os.PathLike[str] | None = None) -> LoadedModel:
    """Build the model a ``--model`` spec names, in eval mode.

    Args:
        spec: The spec, or ``None`` for the embedded default.
        weights: A state dict to load into a built model (not for model files).

    Returns:
        The model and what it expects to read.

    Raises:
        ModelSpecError: An unknown spec, a missing or unreadable file, an import that fails, a
            factory that returns no ``nn.Module``, or weights that do not fit.

    Example:
        >>> load_model("fxcfp.zoo.efficientnet_lite:efficientnet_lite0_3d").kind
        'import'
    """
    with _quiet():
        if spec is None:
            loaded = _default(weights)
        elif spec.startswith("torchvision:"):
            loaded = _torchvision(spec, spec.partition(":")[2], weights)
        elif spec.startswith("pytorchvideo:"):
            loaded = _pytorchvideo(spec, spec.partition(":")[2], weights)
        elif Path(spec).is_file() or spec.lower().endswith(_FILE_SUFFIXES):
            if weights is not None:
                raise ModelSpecError(
                    f"--weights does not apply to the model file '{spec}', which holds its own "
                    "weights. Hint: pass --weights with a builder spec, e.g. --model "
                    "torchvision:r3d_18 --weights FILE."
                )
            loaded = _model_file(spec)
        elif _IMPORT_SPEC.match(spec):
            loaded = _imported(spec, weights)
        else:
            raise ModelSpecError(f"unknown model spec {spec!r}; use {FORMS}.")
    if loaded.kind != "export":  # an exported program refuses .eval(); fxcfp.analyze sets it
        loaded.model.eval()
    return loaded


@contextmanager
def _quiet() -> Iterator[None]:
    # importing and building zoo models warns about deprecations inside those packages, which
    # the person at the command line can do nothing about
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


@contextmanager
def _silent_logger(name: str) -> Iterator[None]:
    # torch.export.load logs a whole traceback before it raises on a file that is no program;
    # the one-line error that follows says the same
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _build(builder: Callable[..., Any], what: str, **kwargs: Any) -> nn.Module:
    """Call a builder under a fixed seed, so random weights are the same on every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = builder(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"{what} returned a {type(model).__name__}, not a torch.nn.Module. Hint: name a "
            "function or class that builds the network."
        )
    return model


def _default(weights: str | os.PathLike[str] | None) -> LoadedModel:
    from .data import imagenet_labels
    from .zoo.efficientnet_lite import efficientnet_lite0_3d

    # replicate padding in time: a still clip gives exactly the 2D network's ImageNet logits
    model = _build(efficientnet_lite0_3d, "efficientnet_lite0_3d",
                   pretrained=weights is None, temporal_padding="replicate")
    _load_weights(model, weights, "the default model")
    return LoadedModel(model, "EfficientNet-Lite0 (ImageNet) inflated to 3D", "default",
                       "efficientnet_lite", tuple(imagenet_labels()), *_DEFAULT_INPUT,
                       trained=True)


def _unknown_name(spec: str, family: str, names: list[str]) -> ModelSpecError:
    import difflib

    name = spec.partition(":")[2]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"choose from {', '.join(names)}."
    return ModelSpecError(f"unknown model {spec!r}: {family} has no model {name!r}; {hint}")


def _torchvision(spec: str, name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    try:
        import torchvision.models
        import torchvision.models.video
    except ImportError as err:
        raise ModelSpecError(
            f"{spec}: torchvision is not installed. Hint: pip install torchvision."
        ) from err
    from .data import kinetics400_labels

    names = sorted(torchvision.models.list_models(module=torchvision.models.video))
    if name not in names:
        raise _unknown_name(spec, "torchvision.models.video", names)
    model = _build(torchvision.models.get_model_builder(name), spec, weights=None)
    _load_weights(model, weights, spec)
    return LoadedModel(model, spec, "torchvision", "kinetics", tuple(kinetics400_labels()),
                       *_TORCHVISION_INPUT.get(name, _TORCHVISION_DEFAULT_INPUT),
                       trained=weights is not None)


def _pytorchvideo(spec: str, name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    try:
        hub = importlib.import_module("pytorchvideo.models.hub")
    except ImportError as err:
        raise ModelSpecError(
            f"{spec}: pytorchvideo is not installed. Hint: pip install pytorchvideo."
        ) from err
    from .data import kinetics400_labels

    names = sorted(n for n, v in vars(hub).items()
                   if inspect.isfunction(v) and not n.startswith("_"))
    if name not in names:
        raise _unknown_name(spec, "pytorchvideo.models.hub", names)
    model = _build(getattr(hub, name), spec, pretrained=False)
    _load_weights(model, weights, spec)
    return LoadedModel(model, spec, "pytorchvideo", "pytorchvideo", tuple(kinetics400_labels()),
                       *_PYTORCHVIDEO_INPUT.get(name, _PYTORCHVIDEO_DEFAULT_INPUT),
                       trained=weights is not None,
                       slowfast_alpha=_SLOWFAST_ALPHA if name.startswith("slowfast") else None)


def _imported(spec: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelSpecError(
            f"cannot import {module_name!r} for --model {spec} ({type(err).__name__}: {err}). "
            f"Hint: install the package or fix the name; the spec forms are {FORMS}."
        ) from err
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelSpecError(
                f"--model {spec}: {module_name} has no attribute {attribute!r}. Hint: name the "
                "function or class that builds the network, as module:factory."
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelSpecError(f"--model {spec}: {attribute} is a {type(target).__name__}, not a "
                             "callable that builds a model.")
    model = _build(target, spec)
    _load_weights(model, weights, spec)
    family = module_name.split(".")[0]
    normalization = {"torchvision": "kinetics", "pytorchvideo": "pytorchvideo"}.get(
        family, "efficientnet_lite" if "efficientnet_lite" in module_name else "kinetics")
    return LoadedModel(model, spec, "import", normalization, None, *_OTHER_INPUT,
                       trained=True if weights is not None else None)


def _model_file(spec: str) -> LoadedModel:
    path = Path(spec)
    if not path.is_file():
        raise ModelSpecError(
            f"no such model file: '{path}'. Hint: check the path; the spec forms are {FORMS}.")
    if path.suffix.lower() == ".pt2":
        try:
            with _silent_logger("torch.export"):
                program = torch.export.load(str(path))
        except Exception as err:  # torch raises many kinds for a file that is no program
            raise ModelSpecError(
                f"cannot load '{path}' as a torch.export program ({type(err).__name__}). Hint: "
                "write it with torch.export.save(torch.export.export(model, (clip,)), path)."
            ) from err
        return LoadedModel(program.module(), str(path), "export", "kinetics", None,
                           *_exported_input(program), trained=True)
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # RuntimeError for a zip that is no archive, pickle errors...
        raise ModelSpecError(
            f"cannot load '{path}' as a TorchScript model ({type(err).__name__}). Hint: a state "
            "dict goes with its builder, e.g. --model torchvision:r3d_18 --weights "
            f"{path}; a torch.export program must end in .pt2."
        ) from err
    return LoadedModel(model, str(path), "torchscript", "kinetics", None, *_OTHER_INPUT,
                       trained=True)


def _exported_input(program: Any) -> tuple[int, int]:
    """Frames and size of the clip a program was exported with: its shapes are fixed unless it
    was exported with dynamic ones, so that clip is the one it surely reads."""
    user = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" and node.name in user else None
        shape = getattr(value, "shape", ())
        if len(shape) == 5 and all(isinstance(d, int) for d in shape):
            return int(shape[2]), int(shape[-1])
    return _OTHER_INPUT


def _state_dict(path: Path, what: str) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise ModelSpecError(f"--weights: no such file: '{path}'.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ModelSpecError(
            f"--weights: cannot read '{path}' as a state dict ({type(err).__name__}). Hint: "
            "save one with torch.save(model.state_dict(), path)."
        ) from err
    # training checkpoints wrap the state dict
    for key in ("state_dict", "model_state", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ModelSpecError(
            f"--weights: '{path}' holds a {type(state).__name__}, not a state dict of tensors "
            f"for {what}. Hint: save one with torch.save(model.state_dict(), path)."
        )
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_weights(model: nn.Module, weights: str | os.PathLike[str] | None, what: str) -> None:
    if weights is None:
        return
    state = _state_dict(Path(weights), what)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if resized:
        key = resized[0]
        problems.append(f"{len(resized)} of another shape (e.g. {key}: "
                        f"{tuple(state[key].shape)} for {tuple(own[key].shape)})")
    if problems:
        raise ModelSpecError(
            f"--weights '{weights}' does not fit {what}: keys {'; '.join(problems)}. Hint: pass "
            "the state dict of this very architecture (same number of classes too)."
        )
    model.load_state_dict(state, strict=True)
