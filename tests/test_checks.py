"""The checks of the caller's arguments (fxcfp/_checks.py): each names the call and the fix."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fxcfp
from fxcfp._checks import check_classes, check_model, check_options


def test_options_come_back_typed_and_bad_ones_name_the_call() -> None:
    assert check_options("fxcfp.analyze", 1, None, 3) == (1.0, None, 3)
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"fxcfp.analyze_batch: threshold=1.5 is outside \[0, 1\]"):
        check_options("fxcfp.analyze_batch", 1.5, None, None)
    with pytest.raises(fxcfp.InvalidTypeError, match=r"threshold must be a number.*not bool"):
        check_options("fxcfp.analyze", True, None, None)
    with pytest.raises(fxcfp.FxcfpError, match=r"top_k"):
        check_options("fxcfp.analyze", 0.5, None, 0)
    with pytest.raises(fxcfp.FxcfpError, match=r"max_depth"):
        check_options("fxcfp.analyze", 0.5, -1, None)


def test_classes_are_one_per_clip() -> None:
    assert check_classes("fxcfp.analyze_batch", None, 2, 10) == [None, None]
    assert check_classes("fxcfp.analyze_batch", 3, 2, 10) == [3, 3]
    assert check_classes("fxcfp.analyze_batch", torch.tensor([1, 2]), 2, 10) == [1, 2]
    assert check_classes("fxcfp.analyze_batch", [None, 4], 2, 10) == [None, 4]
    with pytest.raises(fxcfp.InvalidArgumentError, match=r"3 classes given for a batch of 2"):
        check_classes("fxcfp.analyze_batch", [1, 2, 3], 2, 10)
    with pytest.raises(fxcfp.InvalidArgumentError, match=r"cls=10 is out of range.*\(0\.\.9\)"):
        check_classes("fxcfp.analyze", 10, 1, 10)
    with pytest.raises(fxcfp.InvalidTypeError, match=r"cls must hold integers, not torch.float32"):
        check_classes("fxcfp.analyze", torch.tensor(1.0), 1, 10)


def test_a_scripted_model_is_refused_with_the_way_back() -> None:
    model = nn.Linear(2, 2)
    assert check_model(model, "fxcfp.analyze") is model
    with pytest.raises(fxcfp.InvalidTypeError, match=r"model must be a torch.nn.Module, not str"):
        check_model("resnet", "fxcfp.analyze")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.x deprecates torch.jit.script
        scripted = torch.jit.script(model)
    with pytest.raises(fxcfp.UntraceableModelError, match=r"TorchScript module.*load_state_dict"):
        check_model(scripted, "fxcfp.analyze")
