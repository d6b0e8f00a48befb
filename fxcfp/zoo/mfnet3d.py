"""The Multi-Fiber Network 3D of Chen et al., ECCV 2018, randomly initialised.

"Multi-Fiber Networks for Video Recognition" slices a residual unit into 16 *fibers*: its two main
convolutions are grouped, so each fiber only reads its own sixteenth of the channels. A
*multiplexer* in front of them (two ``1×1×1`` convolutions, to a quarter of the middle width and
back, added to the unit's input) mixes information across fibers. Every convolution is preceded by
batch norm and ReLU (pre-activation). The layout follows the paper's table and its official code: a
``3×5×5`` stem to 16 channels, a ``1×3×3`` max-pool, then stages of 3, 4, 6 and 3 units that are
96, 192, 384 and 768 channels wide; the first unit of stage 2 halves time, the first unit of each
later stage halves space. It is the paper's ``Multi-FiberNet`` in Table 1.

The reference code pools a fixed ``8×7×7`` window and so only runs ``16×224×224`` clips; here the
final pooling is adaptive, which changes no parameter count. The ReLUs are not in-place, so every
intermediate tensor an analysis captures stays as it was computed.

Time shrinks 2-fold and space 32-fold, so ``2×32×32`` is the smallest clip whose last stage sees a
``1×1×1`` map that every stride reached with real data. Smaller clips still run in eval mode, down
to ``1×1×1``, because every strided layer pads and rounds up. In training mode batch norm needs more
than one value per channel in the last stage: an ``N = 1`` clip of ``4×32×32`` is enough.

Example:
    >>> import torch
    >>> from fxcfp.zoo.mfnet3d import mfnet3d
    >>> model = mfnet3d(num_classes=10).eval()
    >>> model(torch.zeros(1, 3, 8, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fxcfp.zoo._common import check_num_classes, init_conv_bn

__all__ = ["BNReLUConv3d", "MFNet3d", "MultiFiberUnit", "mfnet3d"]

_FIBERS = 16
_STEM_CHANNELS = 16
# (units, width, stride of the first unit) per stage; a unit's middle and output widths are equal.
_STAGES = (
    (3, 96, (2, 1, 1)),
    (4, 192, (1, 2, 2)),
    (6, 384, (1, 2, 2)),
    (3, 768, (1, 2, 2)),
)

_Triple = tuple[int, int, int]


class BNReLUConv3d(nn.Module):
    """Batch norm, ReLU, then a bias-free convolution: MFNet's pre-activation layer.

    Args:
        in_channels: Channels read.
        out_channels: Channels written.
        kernel_size: Kernel size (time, height, width).
        padding: Zero padding (time, height, width).
        stride: Stride (time, height, width).
        groups: Groups of the convolution (the fibers).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: _Triple = (1, 1, 1),
        padding: _Triple = (0, 0, 0),
        stride: _Triple = (1, 1, 1),
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            padding=padding,
            stride=stride,
            groups=groups,
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.relu(self.bn(x)))


class MultiFiberUnit(nn.Module):
    """A multiplexer, two fiber-grouped convolutions, and a residual shortcut.

    The first unit of a stage changes the width and the resolution: its second convolution is a
    plain ``1×1×1`` and the shortcut is a strided ``1×1×1`` projection (``conv_w1``). Later units
    use a grouped ``1×3×3`` and the identity.

    Args:
        in_channels: Channels of the unit's input.
        mid_channels: Width of the first fiber convolution.
        out_channels: Channels of the unit's output.
        stride: Stride of the first fiber convolution and of the projection.
        first: Whether this is the first unit of its stage.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        stride: _Triple = (1, 1, 1),
        first: bool = False,
    ) -> None:
        super().__init__()
        multiplexed = mid_channels // 4
        self.conv_i1 = BNReLUConv3d(in_channels, multiplexed)
        self.conv_i2 = BNReLUConv3d(multiplexed, in_channels)
        self.conv_m1 = BNReLUConv3d(
            in_channels,
            mid_channels,
            kernel_size=(3, 3, 3),
            padding=(1, 1, 1),
            stride=stride,
            groups=_FIBERS,
        )
        self.conv_w1: BNReLUConv3d | None = None
        if first:
            self.conv_m2 = BNReLUConv3d(mid_channels, out_channels)
            self.conv_w1 = BNReLUConv3d(in_channels, out_channels, stride=stride)
        else:
            self.conv_m2 = BNReLUConv3d(
                mid_channels,
                out_channels,
                kernel_size=(1, 3, 3),
                padding=(0, 1, 1),
                groups=_FIBERS,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The multiplexer's output is added to the input, so fibers see each other's channels.
        mixed = x + self.conv_i2(self.conv_i1(x))
        h = self.conv_m2(self.conv_m1(mixed))
        # The shortcut carries the unit's own input, not the multiplexed one (as the reference).
        shortcut = x if self.conv_w1 is None else self.conv_w1(x)
        return h + shortcut


class MFNet3d(nn.Module):
    """MFNet-3D with 16 fibers; module names follow the official code (``conv2.B01.conv_m1.conv``).

    Args:
        num_classes: Width of the ``classifier``.

    Raises:
        InvalidTypeError: ``num_classes`` is not an int.
        InvalidArgumentError: ``num_classes`` is below 1.
    """

    def __init__(self, *, num_classes: int = 400) -> None:
        super().__init__()
        check_num_classes("MFNet3d", num_classes)
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv3d(
                    3,
                    _STEM_CHANNELS,
                    kernel_size=(3, 5, 5),
                    padding=(1, 2, 2),
                    stride=(1, 2, 2),
                    bias=False,
                ),
                bn=nn.BatchNorm3d(_STEM_CHANNELS),
                relu=nn.ReLU(),
            )
        )
        self.maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        in_channels = _STEM_CHANNELS
        stages = []
        for units, width, stride in _STAGES:
            stage: OrderedDict[str, nn.Module] = OrderedDict()
            for unit in range(units):
                first = unit == 0
                stage[f"B{unit + 1:02d}"] = MultiFiberUnit(
                    in_channels, width, width, stride=stride if first else (1, 1, 1), first=first
                )
                in_channels = width
            stages.append(nn.Sequential(stage))
        self.conv2, self.conv3, self.conv4, self.conv5 = stages
        # Pre-activation units end un-normalised, so the head normalises once more.
        self.tail = nn.Sequential(OrderedDict(bn=nn.BatchNorm3d(in_channels), relu=nn.ReLU()))
        self.globalpool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference code's initialisation: Xavier-uniform convolutions, unit batch norms.
        init_conv_bn(self, nn.init.xavier_uniform_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool(self.conv1(x))
        h = self.conv5(self.conv4(self.conv3(self.conv2(h))))
        h = self.globalpool(self.tail(h))
        return self.classifier(torch.flatten(h, 1))


def mfnet3d(num_classes: int = 400) -> nn.Module:
    """MFNet-3D (16 fibers, stages ``[3, 4, 6, 3]``); 8.0M parameters for 400 classes.

    Chen et al. report 8.0M.

    Args:
        num_classes: Width of the classifier.

    Returns:
        A randomly initialised network mapping ``N×3×T×H×W`` clips to ``N×num_classes`` logits.
    """
    return MFNet3d(num_classes=num_classes)
