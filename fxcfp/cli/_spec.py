"""Turning the command line's ``--model SPEC`` into a model, with what it expects to read.

A spec names a model in one of six ways; each is built offline, with random weights unless a
``--weights`` state dict or the model's own file provides them:

* none: the embedded default, EfficientNet-Lite0 pretrained on ImageNet and inflated to 3D;
* ``torchvision:r3d_18`` or ``torchvision:resnet18``: a torchvision video or image classifier
  (``weights=None``), read as its weights' own ``transforms()`` say (no weights are fetched:
  the transforms are part of the weights enum);
* ``timm:resnet50``: ``timm.create_model(name, pretrained=False)``, read as its data config says;
* ``pytorchvideo:x3d_s``: a PyTorchVideo hub builder (``pretrained=False``);
* ``package.module:factory``: any importable callable returning an ``nn.Module``;
* a file: a ``torch.export`` program (``.pt2``) or a TorchScript archive.

Example:
    >>> from fxcfp.cli._spec import load_model
    >>> loaded = load_model("torchvision:r3d_18")
    >>> loaded.normalization, loaded.frames, loaded.size, loaded.resize, len(loaded.labels)
    ('kinetics', 16, 112, (128, 171), 400)
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
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import ModelSpecError

if TYPE_CHECKING:  # torch is imported when a model is built, after the command line's checks
    import torch
    from torch import nn

__all__ = ["FORMS", "LoadedModel", "ModelSpecError", "load_model"]

FORMS = (
    "torchvision:NAME (a video or image classifier, e.g. torchvision:r3d_18, "
    "torchvision:resnet18), timm:NAME (e.g. timm:resnet50), pytorchvideo:NAME (e.g. "
    "pytorchvideo:x3d_s), package.module:factory, a torch.export file (.pt2) or a TorchScript file"
)
# Suffixes of model files a spec may name (the command line checks them before building).
MODEL_FILE_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".ptl", ".zip")

# Files a spec names by suffix; anything else is a file only when it exists.
_FILE_SUFFIXES = MODEL_FILE_SUFFIXES
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
# An image model reads one picture: a still image, or one frame of a video.
_IMAGE_FRAMES = 1


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
        resize: What to resize to before the centre crop: the short side, an exact
            ``(height, width)``, or ``None`` (the short side to ``size``).
        interpolation: ``"bilinear"`` or ``"bicubic"``.
        preprocessing_source: Where the preprocessing comes from (e.g.
            ``"R3D_18_Weights.KINETICS400_V1.transforms()"``), for the report.
        dims: 3 for a video model (``C x T x H x W``), 2 for an image model (``C x H x W``).
        weights_file: The file its trained weights came from, where there is one.
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
    resize: int | tuple[int, int] | None = None
    interpolation: str = "bilinear"
    preprocessing_source: str = "fxcfp's preset for the model family"
    dims: int = 3
    weights_file: str | None = None

    @property
    def cls(self) -> str:
        """The model's class, qualified (``torchvision.models.video.resnet.VideoResNet``)."""
        kind = type(self.model)
        return f"{kind.__module__}.{kind.__qualname__}"

    def resize_for(self, size: int) -> int | tuple[int, int] | None:
        """:attr:`resize` scaled to another crop ``size`` (a ``--size`` the user chose), so the
        crop keeps the share of the frame the weights were evaluated on."""
        if self.resize is None or size == self.size:
            return self.resize
        if isinstance(self.resize, tuple):
            return tuple(max(size, round(v * size / self.size)) for v in self.resize)  # type: ignore[return-value]
        return max(size, round(self.resize * size / self.size))

    def inputs(self, tensor: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """What to pass to :func:`fxcfp.analyze` for a ``3 x T x H x W`` clip (an image model
        gets its one frame as ``3 x H x W``)."""
        import torch

        if self.dims == 2:
            return tensor[:, 0]
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
        elif spec.startswith("timm:"):
            loaded = _timm(spec, spec.partition(":")[2], weights)
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
    import torch
    from torch import nn

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
    from ..data import imagenet_labels
    from ..zoo.efficientnet_lite import efficientnet_lite0_3d

    # replicate padding in time: a still clip gives exactly the 2D network's ImageNet logits
    model = _build(efficientnet_lite0_3d, "efficientnet_lite0_3d",
                   pretrained=weights is None, temporal_padding="replicate")
    from ..zoo.efficientnet_lite import weights_path

    _load_weights(model, weights, "the default model")
    return LoadedModel(model, "EfficientNet-Lite0 (ImageNet) inflated to 3D", "default",
                       "efficientnet_lite", tuple(imagenet_labels()), *_DEFAULT_INPUT,
                       trained=True, preprocessing_source="the efficientnet_lite preset "
                       "(TensorFlow's (x - 127) / 128)",
                       weights_file=None if weights is not None else str(weights_path()))


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
    from ..data import kinetics400_labels

    video = sorted(torchvision.models.list_models(module=torchvision.models.video))
    images = sorted(torchvision.models.list_models(module=torchvision.models))
    if name not in video and name not in images:
        raise _unknown_name(spec, "torchvision.models (video and image classifiers)",
                            video + images)
    model = _build(torchvision.models.get_model_builder(name), spec, weights=None)
    _load_weights(model, weights, spec)
    preset = _weights_transforms(name)
    if name in video:
        frames, size = _TORCHVISION_INPUT.get(name, _TORCHVISION_DEFAULT_INPUT)
        labels: tuple[str, ...] | None = tuple(kinetics400_labels())
        normalization: Any = "kinetics"
    else:
        frames, size, labels, normalization = _IMAGE_FRAMES, 224, None, "imagenet"
    resize: int | tuple[int, int] | None = None
    source = "fxcfp's preset for the model family"
    if preset is not None:
        enum_name, transforms, categories = preset
        size = int(transforms.crop_size[0])
        sides = [int(v) for v in transforms.resize_size]
        # a pair is an exact size (VideoClassification), one number the short side
        resize = (sides[0], sides[1]) if len(sides) == 2 else sides[0]
        normalization = _preset_or_pair(transforms.mean, transforms.std)
        source = f"{enum_name}.transforms()"
        labels = tuple(categories) if categories else labels
    return LoadedModel(model, spec, "torchvision", normalization, labels, frames, size,
                       trained=weights is not None, resize=resize,
                       interpolation="bilinear", preprocessing_source=source,
                       dims=3 if name in video else 2)


def _weights_transforms(name: str) -> tuple[str, Any, list[str] | None] | None:
    """The default weights' ``transforms()`` and class names: both live in the weights enum, so
    nothing is downloaded."""
    import torchvision.models

    try:
        enum = torchvision.models.get_model_weights(name)
        default = enum.DEFAULT
        transforms = default.transforms()
    except (KeyError, ValueError, AttributeError, TypeError):
        return None
    if not all(hasattr(transforms, a) for a in ("crop_size", "resize_size", "mean", "std")):
        return None
    return f"{enum.__name__}.{default.name}", transforms, default.meta.get("categories")


def _preset_or_pair(mean: Any, std: Any) -> Any:
    """A preset name of :data:`fxcfp.video.NORMALIZATION` where the values are one, else the
    ``(mean, std)`` pair."""
    from ..clip import NORMALIZATION

    pair = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
    for preset, values in NORMALIZATION.items():
        if np.allclose(np.array(values), np.array(pair), atol=1e-6):
            return preset
    return pair


def _timm(spec: str, name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    try:
        import timm
        import timm.data
    except ImportError as err:
        raise ModelSpecError(f"{spec}: timm is not installed. Hint: pip install timm.") from err
    if not name or not timm.is_model(name):
        raise _unknown_name(spec, "timm", sorted(timm.list_models()))
    # pretrained=False: nothing is downloaded; --weights loads a state dict
    model = _build(timm.create_model, spec, model_name=name, pretrained=False)
    _load_weights(model, weights, spec)
    config = timm.data.resolve_data_config(model=model)
    size = int(config["input_size"][-1])
    crop_pct = float(config.get("crop_pct") or 1.0)
    resize = max(size, int(size / crop_pct))  # timm's eval transform: floor(size / crop_pct)
    interpolation = "bicubic" if config.get("interpolation") == "bicubic" else "bilinear"
    labels = None
    if getattr(model, "num_classes", None) == 1000:
        from ..data import imagenet_labels

        labels = tuple(imagenet_labels())
    return LoadedModel(model, spec, "timm", _preset_or_pair(config["mean"], config["std"]),
                       labels, _IMAGE_FRAMES, size, trained=weights is not None, resize=resize,
                       interpolation=interpolation,
                       preprocessing_source=f"timm.data.resolve_data_config({name})", dims=2)


def _pytorchvideo(spec: str, name: str, weights: str | os.PathLike[str] | None) -> LoadedModel:
    try:
        hub = importlib.import_module("pytorchvideo.models.hub")
    except ImportError as err:
        raise ModelSpecError(
            f"{spec}: pytorchvideo is not installed. Hint: pip install pytorchvideo."
        ) from err
    from ..data import kinetics400_labels

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
    lite = "efficientnet_lite" in module_name
    normalization = {"torchvision": "kinetics", "pytorchvideo": "pytorchvideo"}.get(
        family, "efficientnet_lite" if lite else "kinetics")
    # an image network convolves in 2D only: it reads one frame, as C x H x W
    dims = 2 if _convolves_in(model, 2) and not _convolves_in(model, 3) else 3
    frames, size = (_IMAGE_FRAMES, 224) if dims == 2 else _OTHER_INPUT
    labels = None
    if lite:  # fxcfp's own zoo: ImageNet classes
        from ..data import imagenet_labels

        labels = tuple(imagenet_labels())
    return LoadedModel(model, spec, "import", normalization, labels, frames, size,
                       trained=True if weights is not None else None, dims=dims)


def _convolves_in(model: nn.Module, dims: int) -> bool:
    from torch import nn

    kind = nn.Conv2d if dims == 2 else nn.Conv3d
    return any(isinstance(module, kind) for module in model.modules())


def _model_file(spec: str) -> LoadedModel:
    import torch

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
        shape: tuple[Any, ...] = getattr(value, "shape", ())
        if len(shape) == 5 and all(isinstance(d, int) for d in shape):
            return int(shape[2]), int(shape[-1])
    return _OTHER_INPUT


def _state_dict(path: Path, what: str) -> Mapping[str, torch.Tensor]:
    import torch

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
