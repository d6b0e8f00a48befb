"""The 3D ResNets and ResNeXt of Hara et al., CVPR 2018, randomly initialised.

"Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?" inflates the ImageNet
ResNets to 3D: a ``7×7×7`` stem with stride ``(1, 2, 2)``, a ``3×3×3`` max-pool with stride 2,
bottleneck blocks whose ``3×3×3`` convolution strides by 2 in time *and* space on the first block
of stages 2-4, and shortcut type B (a ``1×1×1`` convolution and batch norm where the shape changes,
the identity otherwise). ResNeXt-101 keeps that layout with 32-group middle convolutions and an
expansion of 2. These are the four residual networks of the Class Feature Pyramids paper's Table 1.

Two deliberate departures from the reference code, neither of which changes a parameter count:
the final pooling is adaptive, so any clip size runs (the reference pools a fixed
``ceil(T/16)×ceil(H/32)×ceil(W/32)`` window), and the ReLUs are not in-place, so every intermediate
tensor an analysis captures stays as it was computed.

Time shrinks 16-fold and space 32-fold, so ``16×32×32`` is the smallest clip whose last stage sees
a ``1×1×1`` map that every stride reached with real data. Smaller clips still run in eval mode,
down to ``1×1×1``, because every strided layer pads and rounds up. In training mode batch norm needs
more than one value per channel in the last stage: an ``N = 1`` clip of ``16×64×64`` is enough.

Example:
    >>> import torch
    >>> from fxcfp.zoo.resnet3d import resnet3d_50
    >>> model = resnet3d_50(num_classes=10).eval()
    >>> model(torch.zeros(1, 3, 8, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import nn

from fxcfp.zoo._common import check_num_classes, init_conv_bn

__all__ = [
    "Bottleneck3d",
    "ResNet3d",
    "resnet3d_50",
    "resnet3d_101",
    "resnet3d_152",
    "resnext3d_101",
]

_STEM_CHANNELS = 64
# Per-stage `planes` of Hara's code; with cardinality 32 the ResNeXt middle width
# `cardinality * planes // 32` equals `planes`, so both families use planes as the middle width.
_RESNET_PLANES = (64, 128, 256, 512)
_RESNEXT_PLANES = (128, 256, 512, 1024)
_RESNEXT_CARDINALITY = 32


class Bottleneck3d(nn.Module):
    """A ``1×1×1`` reduce, a (strided, possibly grouped) ``3×3×3``, a ``1×1×1`` expand, plus a shortcut.

    Args:
        in_channels: Channels of the block's input.
        mid_channels: Width of the two inner convolutions.
        out_channels: Channels of the block's output.
        stride: Stride of the ``3×3×3`` convolution (and of the projection), in all three dims.
        groups: Groups of the ``3×3×3`` convolution (ResNeXt's cardinality).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, mid_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(mid_channels)
        self.conv2 = nn.Conv3d(
            mid_channels,
            mid_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            groups=groups,
            bias=False,
        )
        self.bn2 = nn.BatchNorm3d(mid_channels)
        self.conv3 = nn.Conv3d(mid_channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU()
        # Shortcut type B: project only where the identity would not fit.
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # Decided when the block was built, so torch.fx traces it as a fixed branch.
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet3d(nn.Module):
    """Hara et al.'s 3D ResNet (``groups = 1``, expansion 4) or ResNeXt (``groups = 32``, expansion 2).

    Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ``layer1.0.downsample.0``, ``fc``).

    Args:
        blocks: Bottleneck blocks in each of the four stages.
        num_classes: Width of the ``fc`` classifier.
        planes: Middle width of the blocks of each stage.
        expansion: Output width of a block over its middle width.
        groups: Groups of every middle ``3×3×3`` convolution.

    Raises:
        InvalidTypeError: ``num_classes`` is not an int.
        InvalidArgumentError: ``num_classes`` is below 1.
    """

    def __init__(
        self,
        blocks: tuple[int, int, int, int],
        *,
        num_classes: int = 400,
        planes: tuple[int, int, int, int] = _RESNET_PLANES,
        expansion: int = 4,
        groups: int = 1,
    ) -> None:
        super().__init__()
        check_num_classes("ResNet3d", num_classes)
        self.conv1 = nn.Conv3d(
            3, _STEM_CHANNELS, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False
        )
        self.bn1 = nn.BatchNorm3d(_STEM_CHANNELS)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_channels = _STEM_CHANNELS
        stages = []
        for index, (count, width) in enumerate(zip(blocks, planes, strict=True)):
            out_channels = width * expansion
            stage = []
            for block in range(count):
                # Stages 2-4 halve time and space in their first block; stage 1 keeps the size.
                stride = 2 if block == 0 and index > 0 else 1
                stage.append(
                    Bottleneck3d(in_channels, width, out_channels, stride=stride, groups=groups)
                )
                in_channels = out_channels
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The reference code's initialisation: He-normal (fan-out) convolutions, unit batch norms.
        init_conv_bn(self, lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet3d_50(num_classes: int = 400) -> nn.Module:
    """3D ResNet-50: bottleneck stages ``[3, 4, 6, 3]``; 47.0M parameters for 400 classes.

    Hara et al. report 46.4M.

    Args:
        num_classes: Width of the classifier.

    Returns:
        A randomly initialised network mapping ``N×3×T×H×W`` clips to ``N×num_classes`` logits.
    """
    return ResNet3d((3, 4, 6, 3), num_classes=num_classes)


def resnet3d_101(num_classes: int = 400) -> nn.Module:
    """3D ResNet-101: bottleneck stages ``[3, 4, 23, 3]``; 86.1M parameters for 400 classes.

    Hara et al. report 85.5M.

    Args:
        num_classes: Width of the classifier.

    Returns:
        A randomly initialised network mapping ``N×3×T×H×W`` clips to ``N×num_classes`` logits.
    """
    return ResNet3d((3, 4, 23, 3), num_classes=num_classes)


def resnet3d_152(num_classes: int = 400) -> nn.Module:
    """3D ResNet-152: bottleneck stages ``[3, 8, 36, 3]``; 118.2M parameters for 400 classes.

    Hara et al. report 117.7M.

    Args:
        num_classes: Width of the classifier.

    Returns:
        A randomly initialised network mapping ``N×3×T×H×W`` clips to ``N×num_classes`` logits.
    """
    return ResNet3d((3, 8, 36, 3), num_classes=num_classes)


def resnext3d_101(num_classes: int = 400) -> nn.Module:
    """3D ResNeXt-101 (32 groups): stages ``[3, 4, 23, 3]``; 48.3M parameters for 400 classes.

    Hara et al. report 48.3M.

    Args:
        num_classes: Width of the classifier.

    Returns:
        A randomly initialised network mapping ``N×3×T×H×W`` clips to ``N×num_classes`` logits.
    """
    return ResNet3d(
        (3, 4, 23, 3),
        num_classes=num_classes,
        planes=_RESNEXT_PLANES,
        expansion=2,
        groups=_RESNEXT_CARDINALITY,
    )
