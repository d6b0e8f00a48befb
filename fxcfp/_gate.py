"""A class-aware gate: ``fxcfp.analyze(..., gate="evidence")``.

The paper's gate ranks a kernel's input channels by ``pooled activation x pooled weight``: a
quantity that does not depend on the class below the classifier. Measured in issue #12 it keeps
78-97% of all kernels of the paper's networks at full depth, and on the demo clip the "bow tie"
and "Windsor tie" pyramids overlap at Jaccard 0.995 below the top levels: one pyramid for every
class.

The evidence gate keeps the paper's test and adds one per channel: input channel ``i`` of layer
``l`` may link only where its first-order contribution to the class,
``c_l[i] = sum over positions of d s / d A_l[i] * A_l[i]``, is positive and at least
:data:`EVIDENCE_FLOOR` of the layer's largest contribution. The score ``s`` is the evidence
maps' (:func:`fxcfp._evidence.rival_margin`): the class's margin over its rivals, the direction of
its log-probability — softmax-neutral, so what all classes share cancels — or ``y_A - y_B`` for a
contrastive pyramid. The contributions of every layer come from one forward and one backward
pass.

Measured on the demo (EfficientNet-Lite0 3D, carphone clip, threshold 0.6, full depth; the
measurement script is in the project's notes): the paper's gate keeps 89% of the kernels and the
top-2 pyramids overlap at Jaccard up to 1.0 below the classifier. Gating on the logit's
contribution being positive keeps 34% at Jaccard up to 0.72; on the log-probability's, 33% at
0.59; with the floor at 0.05 of the layer's largest, 12.6% at 0.43 (every level still reached);
0.1 gives 7% at 0.37 but loses a level. (The margin over the rivals has the log-probability's
direction, so the gate selects as it did when these were measured on the log-probability.)

Why it is not the default. On the synthetic benchmark (``benchmarks/faithfulness.py``, 64
held-out clips, 16 for randomisation) the evidence maps of gated pyramids keep their energy
inside the evidence (0.99x Grad-CAM's at the last convolution, 2.09x on average) and their
pointing game (0.93x at worst), but they fail the randomisation check: with only the classifier
re-initialised they still correlate 0.36 (b2.b) and 0.67 (b3.a) with the trained model's maps
(the paper's selection: |rho| <= 0.09), and their class level's sensitivity is 0.53 (paper's
selection: 0.02). Our reading, not measured apart: a gate that keeps only channels whose total
contribution is positive draws a sum without cancellation, whose picture follows where the
trained blocks' units are active whatever the classifier; the paper's selection keeps channels
of either sign, whose products cancel differently for every classifier. So ``analyze`` keeps the paper's gate by default and
this one is an option for a class-specific structure, not for its maps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

import numpy as np
import torch

from ._backstep import LayerTensors
from ._evidence import _leaf, _Recorder, check_choice, grad_mode, rival_margin

__all__ = ["EVIDENCE_FLOOR", "GATES", "Gate", "check_gate", "evidence_keep", "gated_tensors"]

Gate = Literal["paper", "evidence"]
GATES: tuple[Gate, ...] = ("paper", "evidence")
# a channel links when its contribution is at least this share of its layer's largest
EVIDENCE_FLOOR = 0.05


def check_gate(call: str, gate: Any) -> Gate:
    return cast(Gate, check_choice(call, "gate", gate, "a gate", {
        "paper": "SPEC's selection",
        "evidence": "also require each channel's contribution to the class"}))


def evidence_keep(plan: Any, inputs: list[torch.Tensor],
                  targets: list[int], contrasts: list[int | None]
                  ) -> list[tuple[np.ndarray, ...]]:
    """For every sample and weighted layer, which input channels the evidence gate lets link."""
    nodes = {layer.input_node for layer in plan.layers}
    recorder = _Recorder(plan.traced.gm, nodes)
    # on the eval-mode view's graph (no flag of the model flipped), and out of the caller's
    # inference_mode, whose tensors no autograd graph records
    with grad_mode():
        output = recorder.run(*[_leaf(x) for x in inputs])
        if isinstance(output, (tuple, list)):
            output = output[0]  # torch.export returns a one-tuple
        # the evidence maps' score: one backward of the rows' sum serves the whole batch
        score = rival_margin(output, targets, contrasts)
        names = sorted(n for n in nodes if n in recorder.kept)
        grads = torch.autograd.grad(score, [recorder.kept[n] for n in names], allow_unused=True)
    contribution: dict[str, torch.Tensor] = {}
    for name, grad in zip(names, grads):
        value = recorder.kept[name]
        contribution[name] = (torch.zeros_like(value) if grad is None else grad * value).detach()
    keep: list[list[np.ndarray]] = [[] for _ in targets]
    for layer in plan.layers:
        product = contribution.get(layer.input_node)
        if product is None:
            per_channel = torch.zeros(len(targets), layer.in_channels)
        else:
            moved = product.movedim(layer.channel_dim, 1)
            per_channel = moved.reshape(moved.shape[0], moved.shape[1], -1).sum(2)
        top = per_channel.max(1, keepdim=True).values
        mask = (per_channel > 0) & (per_channel >= EVIDENCE_FLOOR * top)
        for i, row in enumerate(mask.cpu().numpy()):
            keep[i].append(row)
    return [tuple(k) for k in keep]


def gated_tensors(tensors: tuple[LayerTensors, ...] | list[LayerTensors],
                  keep: tuple[np.ndarray, ...], sink: int) -> tuple[LayerTensors, ...]:
    """The layers with every channel the gate closes linked to the sink (to no kernel), and
    counting no edge."""
    out = []
    for layer, open_ in zip(tensors, keep):
        sources = layer.sources.clone()
        closed = torch.from_numpy(~open_).to(sources.device)
        sources[closed] = sink
        members = layer.members
        if members is not None:
            members = members.clone()
            members[closed] = 0
        out.append(dataclasses.replace(layer, sources=sources, members=members))
    return tuple(out)
