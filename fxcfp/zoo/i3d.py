"""The Inflated Inception-v1 (I3D) of Carreira & Zisserman, CVPR 2017, randomly initialised.

"Quo Vadis, Action Recognition?" inflates Inception-v1 to 3D: a ``7×7×7`` stem with stride 2,
``1×3×3`` max-pools that leave time alone early on, then nine *Mixed* blocks, each the
concatenation of four branches of uneven depth (``1×1×1``; ``1×1×1 → 3×3×3``; ``1×1×1 → 3×3×3``;
``3×3×3`` max-pool ``→ 1×1×1``). The head averages, drops out, classifies with a ``1×1×1``
convolution (``logits``) and averages the per-time-step logits. Every other convolution is
followed by batch norm and ReLU. It is the paper's ``I3D`` in Table 1 (RGB stream).

TensorFlow's ``SAME`` padding is replaced by static, symmetric padding that gives the same output
sizes (``ceil(size / stride)``) — the ``2×2×2`` pool uses ``ceil_mode`` for that — so nothing in
``forward`` depends on the input's shape and ``torch.fx`` traces it. The reference head pools a
fixed ``2×7×7`` window with stride 1 (``224×224`` input only); here the head averages over space
and the time average comes after the classifier, as in the reference, which only changes how the
first and last time steps are weighted. No parameter count changes.

Time shrinks 8-fold and space 32-fold, so ``8×32×32`` is the smallest clip whose last stage sees a
``1×1×1`` map that every stride reached with real data. Smaller clips still run in eval mode, down
to ``1×1×1``, because every stride rounds up. In training mode batch norm needs more than one value
per channel in the last stage: an ``N = 1`` clip of ``8×64×64`` is enough.

Example:
    >>> import torch
    >>> from fxcfp.zoo.i3d import i3d
    >>> model = i3d(num_classes=10).eval()
    >>> model(torch.zeros(1, 3, 8, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from fxcfp.zoo._common import check_num_classes, init_conv_bn

__all__ = ["I3D", "MixedBlock3d", "Unit3d", "i3d"]

# TensorFlow's batch-norm defaults, which the reference network was built with.
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
_DROPOUT = 0.5

# Inception-v1's Mixed widths: (branch 0, branch 1 reduce, branch 1, branch 2 reduce, branch 2,
# branch 3), as published with I3D.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

_Triple = tuple[int, int, int]


class Unit3d(nn.Module):
    """A bias-free convolution, batch norm and ReLU, padded to keep ``ceil(size / stride)``.

    Args:
        in_channels: Channels read.
        out_channels: Channels written.
        kernel_size: Cubic kernel size (odd).
        stride: Stride in every dim.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 1, stride: int = 1
    ) -> None:
        super().__init__()
        # For an odd kernel, (k - 1) / 2 on both sides is SAME padding's output size.
        self.conv3d = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            bias=False,
        )
        self.bn = nn.BatchNorm3d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv3d(x)))


class MixedBlock3d(nn.Module):
    """An inflated Inception block: four branches of uneven depth, concatenated along channels.

    Args:
        in_channels: Channels of the block's input.
        widths: Six widths: branch 0; branch 1's reduce and ``3×3×3``; branch 2's reduce and
            ``3×3×3``; branch 3's projection after the pool.
    """

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1_reduce, b1, b2_reduce, b2, b3 = widths
        self.branch0 = Unit3d(in_channels, b0)
        self.branch1 = nn.Sequential(
            Unit3d(in_channels, b1_reduce), Unit3d(b1_reduce, b1, kernel_size=3)
        )
        self.branch2 = nn.Sequential(
            Unit3d(in_channels, b2_reduce), Unit3d(b2_reduce, b2, kernel_size=3)
        )
        self.branch3 = nn.Sequential(
            nn.MaxPool3d(kernel_size=3, stride=1, padding=1), Unit3d(in_channels, b3)
        )
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        return torch.cat(branches, dim=1)


class I3D(nn.Module):
    """I3D's RGB stream; module names follow the reference (``Mixed_4b.branch1.1.conv3d``, ``logits``).

    Args:
        num_classes: Output channels of the ``logits`` convolution.

    Raises:
        InvalidTypeError: ``num_classes`` is not an int.
        InvalidArgumentError: ``num_classes`` is below 1.
    """

    def __init__(self, *, num_classes: int = 400) -> None:
        super().__init__()
        check_num_classes("I3D", num_classes)
        self.Conv3d_1a_7x7 = Unit3d(3, 64, kernel_size=7, stride=2)
        self.MaxPool3d_2a_3x3 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.Conv3d_2b_1x1 = Unit3d(64, 64)
        self.Conv3d_2c_3x3 = Unit3d(64, 192, kernel_size=3)
        self.MaxPool3d_3a_3x3 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.Mixed_3b = MixedBlock3d(192, _MIXED["Mixed_3b"])
        self.Mixed_3c = MixedBlock3d(self.Mixed_3b.out_channels, _MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = nn.MaxPool3d(3, stride=2, padding=1)
        self.Mixed_4b = MixedBlock3d(self.Mixed_3c.out_channels, _MIXED["Mixed_4b"])
        self.Mixed_4c = MixedBlock3d(self.Mixed_4b.out_channels, _MIXED["Mixed_4c"])
        self.Mixed_4d = MixedBlock3d(self.Mixed_4c.out_channels, _MIXED["Mixed_4d"])
        self.Mixed_4e = MixedBlock3d(self.Mixed_4d.out_channels, _MIXED["Mixed_4e"])
        self.Mixed_4f = MixedBlock3d(self.Mixed_4e.out_channels, _MIXED["Mixed_4f"])
        # An even kernel has no symmetric SAME padding; ceil_mode gives SAME's output size.
        self.MaxPool3d_5a_2x2 = nn.MaxPool3d(2, stride=2, ceil_mode=True)
        self.Mixed_5b = MixedBlock3d(self.Mixed_4f.out_channels, _MIXED["Mixed_5b"])
        self.Mixed_5c = MixedBlock3d(self.Mixed_5b.out_channels, _MIXED["Mixed_5c"])
        # Average over space only: the time average is taken over the logits, as the reference.
        self.avg_pool = nn.AdaptiveAvgPool3d((None, 1, 1))
        self.dropout = nn.Dropout(_DROPOUT)
        self.logits = nn.Conv3d(self.Mixed_5c.out_channels, num_classes, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        init_conv_bn(self, lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"))
        nn.init.normal_(self.logits.weight, std=0.01)
        nn.init.zeros_(cast(torch.Tensor, self.logits.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))
        x = self.logits(self.dropout(self.avg_pool(x)))
        # N×classes×T'×1×1: averaging the per-step logits over time (and the unit space).
        return x.mean(dim=(2, 3, 4))


def i3d(num_classes: int = 400) -> nn.Module:
    """I3D (Inception-v1 inflated, RGB stream); 12.7M parameters for 400 classes.

    Carreira & Zisserman report 25M for the two streams together, about 12M each.

    Args:
        num_classes: Output channels of the ``logits`` convolution.

    Returns:
        A randomly initialised network mapping ``N×3×T×H×W`` clips to ``N×num_classes`` logits.
    """
    return I3D(num_classes=num_classes)
