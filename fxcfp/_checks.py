"""Checks of the caller's arguments, one function per argument, each naming the public call."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._errors import (
    DeviceMismatchError,
    InvalidArgumentError,
    InvalidInputError,
    InvalidTypeError,
    UntraceableModelError,
)

__all__ = [
    "check_classes",
    "check_model",
    "check_options",
    "expected_rank",
    "model_device",
    "prepare_inputs",
]


def check_model(model: Any, call: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"{call}: model must be a torch.nn.Module, not {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise UntraceableModelError(
            f"{call}: the model is a TorchScript module ({type(model).__name__}, from "
            "torch.jit.script, torch.jit.trace or torch.jit.load); its forward is compiled "
            "TorchScript, which neither torch.fx nor torch.export can trace. Hint: pass the "
            "Python nn.Module it was made from (build the model, then "
            "model.load_state_dict(scripted.state_dict())), or a torch.export .pt2 file")
    return model


def check_options(call: str, threshold: Any, max_depth: Any, top_k: Any) -> tuple[float, int | None, int | None]:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise InvalidTypeError(f"{call}: threshold must be a number in [0, 1], not "
                               f"{type(threshold).__name__}")
    threshold = float(threshold)
    if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
        raise InvalidArgumentError(
            f"{call}: threshold={threshold} is outside [0, 1]; the gate compares per-kernel "
            "min-max normalised scores, so 0 keeps every channel and 1 only the best (the "
            "paper uses 0.55-0.65)")
    max_depth = _optional_int(call, "max_depth", max_depth, 0,
                              "use None to back-step down to the clip")
    top_k = _optional_int(call, "top_k", top_k, 1, "use None to keep every passing channel")
    return threshold, max_depth, top_k


def _optional_int(call: str, name: str, value: Any, low: int, hint: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{call}: {name} must be an int or None, not {type(value).__name__}")
    if value < low:
        raise InvalidArgumentError(f"{call}: {name}={value} must be >= {low}; {hint}")
    return int(value)


def model_device(model: nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return None


def model_dtype(model: nn.Module) -> torch.dtype | None:
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def expected_rank(model: nn.Module) -> int | None:
    """Batched input rank the model's first convolution expects (``None``: no convolution)."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return len(module.kernel_size) + 2
    return None


def _check_tensor(call: str, name: str, clip: Any, device: torch.device | None,
                  dtype: torch.dtype | None) -> torch.Tensor:
    if not isinstance(clip, torch.Tensor):
        raise InvalidTypeError(
            f"{call}: {name} must be a torch.Tensor, not {type(clip).__name__}. Hint: convert "
            "with torch.as_tensor(...).float() (and fxcfp.video.read_clip reads video files)")
    if not clip.is_floating_point():
        raise InvalidTypeError(
            f"{call}: {name} has dtype {clip.dtype}; the model needs a floating-point clip. "
            "Hint: clip.float() / 255, then normalise as the model was trained")
    if clip.numel() == 0:
        raise InvalidInputError(f"{call}: {name} is empty (shape {tuple(clip.shape)})")
    if clip.device.type == "meta" or (device is not None and device.type == "meta"):
        holder = "the model's parameters are" if device is not None and device.type == "meta" \
            else f"{name} is"
        mismatch = (f"{name} is on {clip.device} but the model is on {device}: "
                    if device is not None and clip.device != device else "")
        raise DeviceMismatchError(
            f"{call}: {mismatch}{holder} on the meta device, which holds shapes but no values, "
            "so there is nothing to explain. Hint: materialise the weights first "
            "(model.to_empty(device='cpu') then model.load_state_dict(...)) and pass a real clip")
    if device is not None and clip.device != device:
        raise DeviceMismatchError(
            f"{call}: {name} is on {clip.device} but the model is on {device}. Hint: move the "
            f"clip with clip.to('{device}')")
    # the sum first, one pass without a mask: it is finite only when every value is (an Inf or
    # a NaN makes it Inf or NaN); only a sum that overflowed needs the values looked at
    if not bool(torch.isfinite(clip.sum())) and not bool(torch.isfinite(clip).all()):
        bad = "NaN" if bool(torch.isnan(clip).any()) else "Inf"
        raise InvalidInputError(f"{call}: {name} contains {bad} values; explanations of "
                                "non-finite inputs are meaningless")
    if dtype is not None and clip.dtype != dtype:
        clip = clip.to(dtype)  # explain the clip the model would compute on
    return clip


def prepare_inputs(call: str, model: nn.Module, clips: Any, *, batched: bool
                   ) -> tuple[list[torch.Tensor], bool]:
    """Validate the clip(s) and return them batched, plus whether the model takes a list.

    ``analyze`` takes one clip (``C x T x H x W`` or ``1 x C x T x H x W``), or a list of such
    tensors, one per pathway of a multi-input model. ``analyze_batch`` takes batched tensors.
    """
    if isinstance(clips, (list, tuple)):
        if len(clips) == 0:
            raise InvalidInputError(f"{call}: the list of clips is empty")
        tensors, as_list = list(clips), True
    else:
        tensors, as_list = [clips], False
    device, dtype = model_device(model), model_dtype(model)
    rank = expected_rank(model)
    out = []
    for i, clip in enumerate(tensors):
        name = f"clip[{i}]" if as_list else "clip"
        clip = _check_tensor(call, name, clip, device, dtype)
        if batched:
            if rank is not None and clip.dim() != rank:
                raise InvalidInputError(
                    f"{call}: {name} has shape {tuple(clip.shape)}; the model's first "
                    f"convolution expects batched {rank}-D input (N x C x ...)")
            if clip.shape[0] == 0:
                raise InvalidInputError(f"{call}: {name} is an empty batch")
        else:
            if rank is not None and clip.dim() == rank - 1:
                clip = clip.unsqueeze(0)
            elif rank is not None and clip.dim() != rank:
                raise InvalidInputError(
                    f"{call}: {name} has shape {tuple(clip.shape)}; the model's first "
                    f"convolution expects a {rank - 1}-D clip (C x ...) or a batch of one "
                    f"({rank}-D)")
            elif rank is None and not (clip.dim() >= 2 and clip.shape[0] == 1):
                # no convolution to tell the rank: a leading 1 is the batch, else add one
                clip = clip.unsqueeze(0)
            if clip.shape[0] != 1:
                raise InvalidInputError(
                    f"{call}: {name} holds a batch of {clip.shape[0]} clips; analyze explains "
                    "one clip. Hint: use fxcfp.analyze_batch(model, clips) for a batch (one "
                    "forward pass for all of them)")
        out.append(clip)
    sizes = {t.shape[0] for t in out}
    if len(sizes) > 1:
        raise InvalidInputError(f"{call}: the pathways hold different batch sizes {sorted(sizes)}")
    return out, as_list


def check_classes(call: str, classes: Any, batch: int, num_classes: int) -> list[int | None]:
    """Per-sample target classes (``None``: the argmax)."""
    if classes is None:
        return [None] * batch
    if isinstance(classes, torch.Tensor):
        if classes.is_floating_point() or classes.dtype == torch.bool:
            raise InvalidTypeError(f"{call}: cls must hold integers, not {classes.dtype}")
        classes = classes.reshape(-1).tolist() if classes.dim() else classes.item()
    if isinstance(classes, Sequence) and not isinstance(classes, str):
        if len(classes) != batch:
            raise InvalidArgumentError(
                f"{call}: {len(classes)} classes given for a batch of {batch} clips")
        values = list(classes)
    else:
        values = [classes] * batch
    out: list[int | None] = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InvalidTypeError(
                f"{call}: cls must be an int class index (or None for the top class), not "
                f"{type(value).__name__} {value!r}")
        if not 0 <= int(value) < num_classes:
            raise InvalidArgumentError(
                f"{call}: cls={value} is out of range; the model has {num_classes} classes "
                f"(0..{num_classes - 1})")
        out.append(int(value))
    return out
