"""Contrastive pyramids: what separates class A from class B, level by level.

The paper motivates class feature pyramids with classes that share most of their evidence (its
"insert" and "put"): the plain pyramid of A is then almost the pyramid of B (measured in issue
#12: on the demo clip the "bow tie" and "Windsor tie" pyramids overlap at Jaccard 0.995 below the
top levels). A contrastive pyramid asks "why A and not B":

- the root ``(classifier, A)`` is scored with the row difference ``w_A - w_B`` of the pooled
  classifier weight, so ``s[i] = a[i] * (w_A[i] - w_B[i])`` selects the channels that raise
  ``y_A - y_B``. The difference is softmax-neutral: adding one vector to every class's row (the
  ``W -> W - mean W`` re-parametrisation, which changes no probability but changed the plain
  root selection on 56 of 64 clips) leaves it unchanged;
- below the root the back-step is the paper's, from the channels selected there;
- the evidence maps (``mode="evidence"``) differentiate ``y_A - y_B`` instead of ``y_A``.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import torch

from ._backstep import LayerTensors
from ._errors import InvalidArgumentError, InvalidTypeError, UnsupportedModelError

__all__ = ["check_contrast", "contrast_classes", "contrast_tensors"]

RUNNER_UP = "runner-up"


def check_contrast(call: str, contrast: Any) -> int | str | None:
    """The ``contrast`` argument's type, before the model runs."""
    if contrast is None or contrast == RUNNER_UP:
        return contrast
    if isinstance(contrast, torch.Tensor) and contrast.dim() == 0 and not (
            contrast.is_floating_point() or contrast.dtype == torch.bool):
        return int(contrast.item())
    if isinstance(contrast, bool) or not isinstance(contrast, numbers.Integral):
        raise InvalidTypeError(
            f"{call}: contrast must be None, an int class index or 'runner-up', not "
            f"{type(contrast).__name__} {contrast!r}. Hint: {call}(model, clip, cls, "
            "contrast='runner-up') explains why the class beat the next best one"
        )
    return int(contrast)


def contrast_classes(call: str, contrast: int | str | None, targets: list[int],
                     logits: torch.Tensor) -> list[int | None]:
    """The class each sample's target is contrasted with (``"runner-up"``: the highest-scoring
    class other than the target)."""
    num_classes = logits.shape[1]
    if contrast is None:
        return [None] * len(targets)
    if contrast == RUNNER_UP:
        if num_classes < 2:
            raise InvalidArgumentError(
                f"{call}: contrast='runner-up' needs a model with two classes or more; this "
                "one has 1")
        ranked = logits.detach().float().cpu().argsort(1, descending=True)[:, :2].tolist()
        return [second if first == target else first
                for (first, second), target in zip(ranked, targets)]
    assert isinstance(contrast, int)  # check_contrast lets no other str through
    if not 0 <= contrast < num_classes:
        raise InvalidArgumentError(
            f"{call}: contrast={contrast} is out of range; the model has {num_classes} classes "
            f"(0..{num_classes - 1})")
    for index, target in enumerate(targets):
        if target == contrast:
            clip = f" of clip {index}" if len(targets) > 1 else ""
            raise InvalidArgumentError(
                f"{call}: contrast={contrast} is the class explained{clip} (cls={target}); a "
                "contrastive pyramid needs another class. Hint: pass another class index, or "
                "contrast='runner-up' for the next best class"
            )
    return [int(contrast)] * len(targets)


def contrast_tensors(call: str, tensors: list[LayerTensors], output_sources: torch.Tensor,
                     target: int, contrast: int) -> list[LayerTensors]:
    """The layers with each root row of ``target`` replaced by ``w_target - w_contrast``.

    Only the root rows change, and a classifier's other rows are never expanded (the classes
    are only ever roots), so below the root the back-step is the paper's.
    """
    target_row, contrast_row = output_sources[target], output_sources[contrast]
    mine, other = target_row[target_row >= 0].tolist(), contrast_row[contrast_row >= 0].tolist()
    starts = [t.first_id for t in tensors]
    ends = [t.first_id + t.weight.shape[0] for t in tensors]

    def owner(node_id: int) -> int | None:
        return next((i for i, (a, b) in enumerate(zip(starts, ends)) if a <= node_id < b), None)

    def same_row_space(a: int, b: int) -> bool:
        index = owner(a)
        if index is None or owner(b) != index:
            return False
        layer = tensors[index]
        if layer.group_of_kernel is None:
            return True
        # a grouped classifier's rows read different channels: no row difference
        group = layer.group_of_kernel
        return bool(group[a - layer.first_id] == group[b - layer.first_id])

    pairs = list(zip(mine, other))
    if len(mine) != len(other) or not all(same_row_space(a, b) for a, b in pairs):
        raise UnsupportedModelError(
            f"{call}: class {target} and class {contrast} do not come from the same classifier "
            "kernels one for one, so their classifier rows cannot be subtracted; analyse "
            "without contrast"
        )
    changed = list(tensors)
    for a, b in pairs:
        index = owner(a)
        assert index is not None  # same_row_space found every pair an owner
        layer = changed[index]
        weight = layer.weight.clone()
        weight[a - layer.first_id] = layer.weight[a - layer.first_id] - layer.weight[
            b - layer.first_id]
        changed[index] = dataclasses.replace(layer, weight=weight)
    return changed
