"""What the paper's networks share: the classifier-width check and the reference initialisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fxcfp._errors import InvalidArgumentError, InvalidTypeError

__all__ = ["check_num_classes", "init_conv_bn"]


def check_num_classes(owner: str, num_classes: object) -> None:
    """Raise unless ``num_classes`` is an int of at least 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise InvalidTypeError(f"{owner}: num_classes must be an int, got "
                               f"{type(num_classes).__name__}.")
    if num_classes < 1:
        raise InvalidArgumentError(f"{owner}: num_classes must be >= 1, got {num_classes}.")


def init_conv_bn(model: nn.Module, conv_init: Callable[[torch.Tensor], object]) -> None:
    """The reference codes' initialisation: ``conv_init`` for every Conv3d weight, unit batch
    norms."""
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            conv_init(module.weight)
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
