"""Settings for the whole suite."""

from __future__ import annotations

import torch

# Warnings are errors (pyproject.toml). torch reports some of its warnings once per process
# (TORCH_WARN_ONCE), which would fail only whichever test met one first; every time, instead.
torch.set_warn_always(True)
