"""The defaults more than one module uses, in one place, so the API, the command line, the
report and the benchmarks cannot drift apart."""

from __future__ import annotations

__all__ = ["ANIMATION_FPS", "THRESHOLD", "TOP_CLASSES"]

THRESHOLD = 0.6
"""The gate's threshold (SPEC: the paper's value): a kernel's input channel passes when its
normalised score reaches it."""

TOP_CLASSES = 5
"""Classes listed with their probabilities (the command line's summary, the report)."""

ANIMATION_FPS = 8
"""Frames per second of the GIF and MP4 animations fxcfp draws."""
