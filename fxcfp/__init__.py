"""fxcfp: Class Feature Pyramids for any PyTorch CNN, traced with torch.fx.

Given a model, a clip and a class, fxcfp finds, through the whole depth of the network, which
kernels carry the evidence for that class (Stergiou et al., "Class Feature Pyramids for Video
Explanation", ICCV Workshops 2019), as a class dependency graph, and draws where in space and
time those kernels fire.

Example:
    >>> import torch, torchvision, fxcfp
    >>> model = torchvision.models.video.r3d_18()
    >>> pyramid = fxcfp.analyze(model, torch.randn(3, 8, 56, 56))
    >>> pyramid.root  # the class's kernel in the classifier: fc:<class index>
    'fc:...'
    >>> print(pyramid.graph)
    DiGraph with ... nodes and ... edges
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._analyzer import Analyzer, analyze, analyze_batch
    from ._io import PyramidFileError, SavedPyramid, load_pyramid
    from ._pyramid import LayerSelection, Pyramid
    from .passes.registry import register_channel_rule
    from .passes.rules import RuleCall

# The analysis needs torch, which takes seconds to import; the command line checks its paths
# before that, so the names that need torch are imported on first use (PEP 562).
_LAZY = {
    "Analyzer": "._analyzer",
    "analyze": "._analyzer",
    "analyze_batch": "._analyzer",
    "PyramidFileError": "._io",
    "SavedPyramid": "._io",
    "load_pyramid": "._io",
    "LayerSelection": "._pyramid",
    "Pyramid": "._pyramid",
    "RuleCall": ".passes.rules",
    "register_channel_rule": ".passes.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'fxcfp' has no attribute {name!r}")


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
