"""fxcfp: Class Feature Pyramids for any PyTorch CNN, traced with torch.fx.

Given a model, a clip and a class, fxcfp finds, through the whole depth of the network, which
kernels carry the evidence for that class (Stergiou et al., "Class Feature Pyramids for Video
Explanation", ICCV Workshops 2019), as a class dependency graph, and draws where in space and
time those kernels fire.

Example:
    >>> import torch, torchvision, fxcfp
    >>> model = torchvision.models.video.r3d_18()
    >>> pyramid = fxcfp.analyze(model, torch.randn(3, 8, 56, 56))
    >>> pyramid.graph  # doctest: +SKIP
"""

from __future__ import annotations

from ._analyzer import Analyzer, analyze, analyze_batch
from ._errors import (
    DeviceMismatchError,
    FxcfpError,
    GraphTooLargeError,
    InvalidArgumentError,
    InvalidInputError,
    InvalidTypeError,
    ModelCallError,
    UnsupportedModelError,
    UnsupportedOpError,
    UntraceableModelError,
)
from ._io import PyramidFileError, SavedPyramid, load_pyramid
from ._pyramid import LayerSelection, Pyramid
from .passes.rules import RuleCall, register_channel_rule

__all__ = [
    "Analyzer",
    "DeviceMismatchError",
    "FxcfpError",
    "GraphTooLargeError",
    "InvalidArgumentError",
    "InvalidInputError",
    "InvalidTypeError",
    "LayerSelection",
    "ModelCallError",
    "Pyramid",
    "PyramidFileError",
    "RuleCall",
    "SavedPyramid",
    "UnsupportedModelError",
    "UnsupportedOpError",
    "UntraceableModelError",
    "analyze",
    "analyze_batch",
    "load_pyramid",
    "register_channel_rule",
]

__version__ = "0.1.0"
