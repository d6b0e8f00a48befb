"""Running a user's model for the metrics without changing it: eval mode for the call, and an
``fx.Interpreter`` that keeps the activations the maps are drawn on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import fx, nn

from .._errors import InvalidArgumentError, InvalidInputError

__all__ = ["eval_mode", "probabilities", "Recorded", "record"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the call; every module's own ``training`` flag comes back afterwards, also
    when the call raises."""
    flags = [(module, module.training) for module in model.modules()]
    try:
        for module, _ in flags:
            module.training = False
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def batched(call: str, model: nn.Module, clip: torch.Tensor) -> torch.Tensor:
    """``clip`` (``C x T x H x W``, ``1 x C x T x H x W``, or an image's ``C x H x W``) as a
    batch of one on the model's device."""
    if not isinstance(clip, torch.Tensor):
        raise InvalidInputError(f"{call}: clip must be a torch.Tensor, got {type(clip).__name__}")
    if not clip.is_floating_point():
        raise InvalidInputError(f"{call}: clip must be a floating-point tensor, got {clip.dtype}")
    if clip.dim() == 5 and clip.shape[0] != 1:
        raise InvalidInputError(f"{call}: one clip at a time, got a batch of {clip.shape[0]}; "
                                "loop over the batch")
    if clip.dim() not in (3, 4, 5):
        raise InvalidInputError(f"{call}: clip must be C x T x H x W (or C x H x W for an "
                                f"image), got shape {tuple(clip.shape)}")
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else clip.device
    return (clip if clip.dim() == 5 else clip[None]).to(device)


def probabilities(model: nn.Module, clips: torch.Tensor, cls: int, *, batch: int = 8
                  ) -> torch.Tensor:
    """Softmax probability of ``cls`` for each of ``N x ...`` clips, in eval mode (cpu float64)."""
    out = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, clips.shape[0], batch):
            logits = model(clips[i: i + batch])
            out.append(logits.double().softmax(1)[:, cls].cpu())
    return torch.cat(out)


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, nodes: Sequence[str]) -> None:
        super().__init__(gm)
        self.wanted = set(nodes)
        self.values: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        if n.name in self.wanted:
            self.values[n.name] = value
        return value


class Recorded:
    """Activations at some nodes of one forward, with the logits, ready for gradients.

    Attributes:
        logits: ``classes`` (detached, cpu).
        activations: node name -> the node's output for the clip (batch of one, detached).
    """

    def __init__(self, logits: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        self._logits = logits
        self._values = values
        self.logits = logits.detach()[0].cpu()
        self.activations = {name: value.detach() for name, value in values.items()}
        self._grads: dict[int, dict[str, torch.Tensor]] = {}

    def gradients(self, cls: int) -> dict[str, torch.Tensor]:
        """``d logit_cls / d activation`` for every recorded node (one backward pass, cached)."""
        if cls not in self._grads:
            names = list(self._values)
            with torch.enable_grad():
                grads = torch.autograd.grad(self._logits[0, cls], [self._values[n] for n in names],
                                            retain_graph=True, allow_unused=True)
            self._grads[cls] = {n: (torch.zeros_like(self._values[n]) if g is None
                                    else g.detach()) for n, g in zip(names, grads)}
        return self._grads[cls]


def record(model: nn.Module, gm: fx.GraphModule, inputs: Sequence[torch.Tensor],
           nodes: Sequence[str]) -> Recorded:
    """Run ``gm`` (traced from ``model``, sharing its modules) on ``inputs`` in eval mode with
    autograd on, keeping the outputs of ``nodes``.

    The clip is the only tensor made to require a gradient, so the graph exists even for a
    frozen model; gradients are taken with ``torch.autograd.grad`` towards the activations
    only, so no parameter's ``.grad`` is ever written.
    """
    missing = set(nodes) - {n.name for n in gm.graph.nodes}
    if missing:
        raise InvalidArgumentError(
            f"fxcfp.eval: no FX node {sorted(missing)[0]!r} in the traced graph; pass a layer "
            "name from Pyramid.layers")
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    recorder = _Recorder(gm, nodes)
    with eval_mode(model), torch.enable_grad():
        logits = recorder.run(*leaves)
    return Recorded(logits, recorder.values)
