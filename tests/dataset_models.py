"""Models the dataset tests name as ``--model tests.dataset_models:NAME`` (also in subprocesses)."""

from __future__ import annotations

import time

import torch
from torch import nn

import fxcfp
from tests.models import TinyNet3d, make_tiny_net3d


def tiny() -> nn.Module:
    """Two 3D convolutions and a classifier of 3 classes."""
    return make_tiny_net3d(classes=3)


def pause(x: torch.Tensor) -> torch.Tensor:
    """Identity that takes a while: a forward pass long enough to kill a run in the middle."""
    time.sleep(0.3)
    return x


torch.fx.wrap("pause")  # recorded as a call, so it runs on every forward, not once at tracing
fxcfp.register_channel_rule(pause, "passthrough")


class Slow(TinyNet3d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pause(x))


def slow() -> nn.Module:
    return make_tiny_net3d(Slow, classes=3)
