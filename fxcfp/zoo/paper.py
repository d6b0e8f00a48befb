"""The six networks of the Class Feature Pyramids paper, with the figures of its Table 1.

Stergiou et al. (ICCV Workshops 2019) time their back-step on six Kinetics-400 3D-CNNs. This module
gathers them under the paper's names, randomly initialised — they are here to show that every
architecture is covered and to time the analysis, not to classify anything — together with the
threshold θ the paper used for each and the figures it reports.

The networks live in :mod:`fxcfp.zoo.resnet3d`, :mod:`fxcfp.zoo.mfnet3d` and :mod:`fxcfp.zoo.i3d`;
every factory takes ``num_classes`` (400 by default), maps ``N×3×T×H×W`` clips to
``N×num_classes`` logits and traces with ``torch.fx.symbolic_trace``.

Example:
    >>> import torch
    >>> from fxcfp.zoo.paper import PAPER_MIN_CLIP, PAPER_NETWORKS
    >>> factory, theta = PAPER_NETWORKS["mfnet3d"]
    >>> model = factory(num_classes=10).eval()
    >>> model(torch.zeros(1, 3, *PAPER_MIN_CLIP["mfnet3d"])).shape, theta
    (torch.Size([1, 10]), 0.6)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fxcfp.zoo.i3d import i3d
from fxcfp.zoo.mfnet3d import mfnet3d
from fxcfp.zoo.resnet3d import resnet3d_50, resnet3d_101, resnet3d_152, resnext3d_101

__all__ = [
    "PAPER_BACKSTEP_MS",
    "PAPER_GFLOPS",
    "PAPER_MIN_CLIP",
    "PAPER_NETWORKS",
    "i3d",
    "mfnet3d",
    "resnet3d_50",
    "resnet3d_101",
    "resnet3d_152",
    "resnext3d_101",
]

#: The paper's name of each network → (its factory, the threshold θ of Table 1).
PAPER_NETWORKS: dict[str, tuple[Callable[..., nn.Module], float]] = {
    "mfnet3d": (mfnet3d, 0.6),
    "i3d": (i3d, 0.65),
    "resnet3d_50": (resnet3d_50, 0.55),
    "resnet3d_101": (resnet3d_101, 0.6),
    "resnet3d_152": (resnet3d_152, 0.6),
    "resnext3d_101": (resnext3d_101, 0.6),
}

#: Table 1's back-step time in milliseconds, three layers deep (for I3D: the classifier and
#: Mixed_5c), on a machine with 2 × GTX 1080 Ti.
PAPER_BACKSTEP_MS: dict[str, float] = {
    "mfnet3d": 24.43,
    "i3d": 23.21,
    "resnet3d_50": 21.39,
    "resnet3d_101": 39.48,
    "resnet3d_152": 31.06,
    "resnext3d_101": 70.49,
}

#: Table 1's GFLOPs of one forward pass, as the paper reports them.
PAPER_GFLOPS: dict[str, float] = {
    "mfnet3d": 22.70,
    "i3d": 55.79,
    "resnet3d_50": 80.32,
    "resnet3d_101": 110.98,
    "resnet3d_152": 148.91,
    "resnext3d_101": 76.96,
}

#: The smallest ``T×H×W`` clip whose last stage sees a ``1×1×1`` map that every stride reached
#: with real data (each network's time and space reduction). Smaller clips still run in eval mode,
#: down to ``1×1×1``, because every strided layer pads and rounds up.
PAPER_MIN_CLIP: dict[str, tuple[int, int, int]] = {
    "mfnet3d": (2, 32, 32),
    "i3d": (8, 32, 32),
    "resnet3d_50": (16, 32, 32),
    "resnet3d_101": (16, 32, 32),
    "resnet3d_152": (16, 32, 32),
    "resnext3d_101": (16, 32, 32),
}
