"""The paper's public back-step, re-implemented literally: the baseline of the benchmarks only.

Nothing in ``fxcfp`` imports this module, and its answers are not Class Feature Pyramids as
``SPEC.md`` defines them. It reproduces how the code published with Stergiou et al. (2019) walks a
network, so that the benchmarks can time fxcfp against it on the same model and clip:

- The network is a *chain*: its ``Conv*d`` and ``Linear`` modules in registration order, the last
  one the classifier. The public code needs a hand-edited model that returns its weights and
  activations; here forward pre-hooks collect the same inputs in one no-grad forward. Residual
  shortcuts, concatenated branches and anything else off the chain are ignored.
- Pooling is eq. 3's: an activation is averaged over every dim but the channel dim, a weight over
  its kernel dims. A kernel's scores are ``pooled activation × pooled weight row``, min-max
  normalised, and the channels whose score reaches θ pass (eq. 2's sigmoid gate). Where all of a
  kernel's scores are equal (one input channel included), ``0 / 0`` passes nothing, as in the
  public code.
- A grouped convolution's weight row has ``C_in / groups`` entries, and it is scored against input
  channels ``0 .. C_in/groups - 1`` whatever the kernel's group: the public code's mapping, which
  selects channels the kernel never reads.
- A selected input channel of one layer is taken as the kernel of the same index in the previous
  layer of the chain; where the widths differ (a concatenation or a flatten in between), the index
  wraps modulo the previous layer's width.
- The hierarchy is a tree of nested dicts, ``{channel: subtree}``, built by recursing into every
  selected channel of every kernel with no memoisation. A kernel reached along two paths is
  expanded twice, so the work grows like the product of the selections per layer — exponential in
  the depth — where fxcfp expands each kernel of the DAG once. That is why this baseline is slow,
  and why it stops with :class:`DNF` once its time budget is spent.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv3d(3, 4, 1), nn.Flatten(), nn.Linear(4, 2))
    >>> tree, count = paper_literal_backstep(net, torch.rand(1, 3, 1, 1, 1), 0, 0.0, 2)
    >>> count  # θ = 0 keeps everything: the class, 4 features, 3 input channels under each
    17
"""

from __future__ import annotations

import time
from typing import cast

import torch
from torch import nn

__all__ = ["DNF", "paper_literal_backstep"]

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class DNF(TimeoutError):
    """The literal back-step did not finish within its time budget (a benchmark's "DNF")."""


def _pooled_input(layer: nn.Module, activation: torch.Tensor) -> torch.Tensor:
    """Average the first sample's input over every dim but the channel dim."""
    sample = activation[0]
    # A Linear reads its features along the last dim; a convolution along dim 1 of the batch.
    channel_dim = sample.dim() - 1 if isinstance(layer, nn.Linear) else 0
    other_dims = [d for d in range(sample.dim()) if d != channel_dim]
    if not other_dims:
        return sample.float()
    return sample.float().mean(dim=other_dims)


def _pooled_weight(layer: nn.Module) -> torch.Tensor:
    """Average a ``C_out × C_in/groups × k...`` weight over its kernel dims."""
    weight = cast(torch.Tensor, layer.weight).detach().float()
    if weight.dim() == 2:
        return weight
    return weight.mean(dim=tuple(range(2, weight.dim())))


def paper_literal_backstep(
    model: nn.Module,
    clip: torch.Tensor,
    cls: int,
    threshold: float,
    depth: int,
    timeout_s: float = 60.0,
) -> tuple[dict, int]:
    """Back-step from class ``cls`` the way the paper's public code does, as a tree of dicts.

    Args:
        model: Any network with ``Conv*d`` / ``Linear`` modules; it is run once, unchanged.
        clip: The input, ``N×C×...``; only the first sample's activations are used.
        cls: The class (row of the classifier) to explain.
        threshold: θ in ``[0, 1]``; a channel passes when its normalised score is ``>= θ``.
        depth: How many layers of the chain to descend, the classifier included (0: no children).
        timeout_s: Wall-clock budget, forward pass included.

    Returns:
        ``(tree, count)``: the tree maps each channel the classifier row selects to its own
        subtree, ``{channel: {channel: {...}}}``; ``count`` is the number of nodes, the root
        (the class) included.

    Raises:
        DNF: The budget ran out; checked at every node of the recursion.
        ValueError: The model has no ``Conv*d`` / ``Linear`` module, or ``cls``, ``threshold``
            or ``depth`` is out of range.
    """
    deadline = time.perf_counter() + timeout_s
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"paper_literal_backstep: threshold must be in [0, 1], got {threshold}.")
    if depth < 0:
        raise ValueError(f"paper_literal_backstep: depth must be >= 0, got {depth}.")

    inputs: dict[nn.Module, torch.Tensor] = {}

    def keep_first_input(module: nn.Module, args: tuple) -> None:
        # A module called twice keeps its first input, as a model that returns it would.
        inputs.setdefault(module, args[0].detach())

    layers = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
    if not layers:
        raise ValueError(
            f"paper_literal_backstep: {type(model).__name__} has no Conv*d or Linear module."
        )
    handles = [layer.register_forward_pre_hook(keep_first_input) for layer in layers]
    try:
        with torch.no_grad():
            model(clip)
    finally:
        for handle in handles:
            handle.remove()
    # Modules the forward never called have no activation: they drop out of the chain.
    chain = [layer for layer in layers if layer in inputs]
    classes = chain[-1].weight.shape[0]
    if not 0 <= cls < classes:
        raise ValueError(
            f"paper_literal_backstep: cls must be in [0, {classes}) for the classifier "
            f"{type(chain[-1]).__name__}, got {cls}."
        )
    activations = [_pooled_input(layer, inputs[layer]) for layer in chain]
    weights = [_pooled_weight(layer) for layer in chain]

    def select(level: int, kernel: int) -> list[int]:
        row = weights[level][kernel % weights[level].shape[0]]
        # Channels 0..len(row)-1, whatever the kernel's group: the public code's mapping.
        scores = activations[level][: row.shape[0]] * row
        low, high = scores.min(), scores.max()
        if high == low:
            return []
        normalised = (scores - low) / (high - low)
        return torch.nonzero(normalised >= threshold).flatten().tolist()

    count = 1

    def expand(level: int, kernel: int, remaining: int) -> dict:
        nonlocal count
        if time.perf_counter() > deadline:
            raise DNF(
                f"paper_literal_backstep: no result within {timeout_s:g} s "
                f"({count} nodes so far, depth {depth}, threshold {threshold})."
            )
        if remaining == 0 or level < 0:
            return {}
        tree = {}
        for channel in select(level, kernel):
            count += 1
            # No memo: a kernel reached twice is expanded twice. This is the exponential part.
            tree[channel] = expand(level - 1, channel, remaining - 1)
        return tree

    tree = expand(len(chain) - 1, cls, depth)
    return tree, count
