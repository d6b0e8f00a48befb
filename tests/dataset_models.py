"""Models the dataset tests name as ``--model tests.dataset_models:NAME`` (also in subprocesses)."""

from __future__ import annotations

import time

import torch
from torch import nn

import fxcfp


class Tiny(nn.Module):
    """Two 3D convolutions and a classifier of 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3, 4)))


def tiny() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Tiny().eval()


def pause(x: torch.Tensor) -> torch.Tensor:
    """Identity that takes a while: a forward pass long enough to kill a run in the middle."""
    time.sleep(0.3)
    return x


torch.fx.wrap("pause")  # recorded as a call, so it runs on every forward, not once at tracing
fxcfp.register_channel_rule(pause, "passthrough")


class Slow(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pause(x))


def slow() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Slow().eval()
