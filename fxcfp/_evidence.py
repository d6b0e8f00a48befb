"""Evidence maps: the pyramid's selected channels, each voxel weighted by its own first-order
contribution to the class's margin over its rivals.

The paper's maps (SPEC "Kernel-wise map", "Layer-wise map") sum the *activations* of the selected
channels. Measured on clips whose evidence is known (issue #12: a residual 3D CNN trained on a
moving square among static distractors), they are indistinguishable from the plain mean
activation, the same for every class (Spearman 1.000 between the maps of two classes from the stem
to the middle block) and unchanged when the classifier is re-initialised (rho >= 0.999): they show
where a layer fires, not what the class reads. Keeping the pyramid's selection and counts but
weighting each voxel by ``ds/dA * A`` — the first-order Taylor term of that voxel's share of a
class score ``s`` — fixes most of that with one backward pass.

The score. For one pyramid of class ``c``, with ``y`` the model's output::

    s = y_c - sum over k != c of q_k * y_k,   q = softmax of the other classes' logits (constant)

the class's margin over its rivals, each weighted by how likely the model finds it. Its gradient
is ``d log p_c / (1 - p_c)``: the direction of the log-probability without its scale, which
vanishes for a confident class (in float32 it rounds to zero and would leave only the rivals'
part). Two reasons for it over the plain logit ``y_c``:

- it is *softmax-neutral*: adding one vector to every row of the classifier (``W -> W - mean W``,
  which changes no probability) changes no ``s``, so no gradient and no evidence product;
- evidence every class shares — the same-coloured distractors, the texture — raises ``y_c`` and
  the rivals' logits alike and cancels, so what is left is what tells ``c`` from the classes it
  competes with. A contrastive pyramid ("why ``A`` and not ``B``") is the special case with all of
  ``q`` on ``B``: ``s = y_A - y_B``.

For one pyramid, with ``A`` the activation a layer's maps are drawn on (its input, or the pre-pool
tensor for a classifier: ``LayerInfo.map_node``) and ``G = ds/dA`` at that tensor:

- evidence kernel map of ``(l, j)``: ``relu(mean over passing i of G[i] * A[i])``;
- evidence layer map of ``l``: ``relu(sum over passing (j, i) of G[i] * A[i])``, a channel counted
  once per kernel that selected it, as in the paper's layer map. The products are signed; only the
  sum is rectified, as Grad-CAM keeps the positive part of its sum.

Measured with ``fxcfp.eval`` (``benchmarks/faithfulness.py``: the synthetic benchmark with
ground-truth evidence masks, a small residual 3D CNN at 99.6% held-out accuracy, 64 held-out
clips, 16 for randomisation; threshold 0.6; the tables with 95% intervals are in
``benchmarks/RESULTS.md``), against Grad-CAM on the same tensor:

- energy inside the evidence: 1.00x Grad-CAM at the last convolution (b3.b: 0.043 vs 0.043;
  with the plain logit ``y_c`` 0.036, 0.84x), 2.06x on average over the convolutional layers;
  the class level 0.076 (CAM 0.076; logit 0.074);
- pointing game: at least 0.93x Grad-CAM's at every convolutional layer, 1.33x on average;
- class sensitivity (Spearman of the maps of the class and the runner-up): -0.72 to -0.32 at
  the convolutional layers and 0.02 at the classifier (logit: 0.20-0.38, and 0.88). Partly by
  construction: the runner-up's rival is mostly the class itself, so its margin is nearly the
  class's with the sign flipped and the two maps are close to complementary;
- cascading randomisation, only the classifier re-initialised: |rho| <= 0.09 at every
  convolutional layer (logit: <= 0.11).

Centring the logits on their plain mean instead (``q`` uniform) changed nothing measurable on 12
clips (b3.b 0.035, classifier sensitivity 0.96): the rival that matters is the runner-up, which
a uniform mean dilutes. What the score does not fix: after the classifier is re-initialised the
class level still correlates at rho 0.93 with the trained one's (Grad-CAM 0.04). It draws the
3-5 channels the root selects, and the paper's root score ``pooled activation x weight`` favours
the strongest channels whatever the weights: the re-initialised root shares a channel with the
trained one on 12 of 16 clips (Jaccard 0.16), and a few strong channels dominate the sum (on
one clip the roots {14, 17, 20} and {4, 17} draw pictures at rho 0.95).
CAM and Grad-CAM change because they draw every channel with a signed weight.

The products ``G[i] * A[i]`` of every requested map node come from one forward and one backward
pass through the traced graph (:func:`record_evidence`), with the gradient taken with
``torch.autograd.grad`` with respect to the recorded activations only: no parameter gradient is
computed or stored, and the model's flags and ``requires_grad`` are left as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import fx

from ._errors import InvalidArgumentError, UnsupportedModelError

__all__ = ["DEFAULT_MAPS", "MAP_MODE_HELP", "check_choice", "evidence_products", "grad_mode",
           "pick_channels", "record_evidence", "rival_margin"]

# what the pictures (render_pyramid, write_report, fxcfp explain) draw unless asked otherwise:
# the mode the faithfulness measurements support; the library's map methods keep "paper"
DEFAULT_MAPS = "evidence"
# every map mode with what it draws: the words an error offers the choices in
MAP_MODE_HELP = {
    "paper": "SPEC's maps: the selected channels' activations",
    "evidence": "the same channels, each voxel weighted by its contribution to the class's "
                "margin over its rivals",
}


def check_choice(call: str, option: str, value: Any, kind: str, choices: dict[str, str]) -> str:
    """``value`` when it names one of ``choices``; otherwise an error naming the call, the
    option and every choice with what it does (map modes, gates and the pictures' ``maps=``
    are all checked here, so their messages read alike)."""
    if not isinstance(value, str) or value not in choices:
        ways = " or ".join(f"{option}={name!r} ({why})" for name, why in choices.items())
        raise InvalidArgumentError(f"{call}: {option}={value!r} is not {kind}; use {ways}")
    return value


class _Recorder(fx.Interpreter):
    """Runs ``gm`` keeping the full output of every requested node inside the autograd graph."""

    def __init__(self, gm: fx.GraphModule, nodes: set[str]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.nodes = nodes
        self.kept: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        if n.name in self.nodes and isinstance(value, torch.Tensor):
            self.kept[n.name] = value
            # downstream gets a copy: an in-place op further on (ReLU(inplace=True)) would
            # otherwise change the kept tensor and its place in the graph
            return value.clone()
        return value


def rival_margin(output: torch.Tensor, targets: list[int], contrasts: list[int | None]
                 ) -> torch.Tensor:
    """Each row's class margin over its rivals, ``y_c - sum_{k != c} q_k y_k`` (see the module's
    docstring), summed over the rows: rows are independent in eval mode, so one backward of the
    sum gives every row's gradient.

    Args:
        output: ``rows x classes`` logits inside the autograd graph.
        targets: the class of each row.
        contrasts: per row, ``None`` (the rivals weighted by their softmax) or the one class
            the target is contrasted with.
    """
    rows = torch.arange(len(targets), device=output.device)
    wanted = torch.tensor(targets, device=output.device)
    with torch.no_grad():
        # q is held constant: the softmax of the other classes (the target masked out)
        logits = output.detach().float()
        mine = torch.zeros_like(logits, dtype=torch.bool)
        mine[rows, wanted] = True
        q = logits.masked_fill(mine, -torch.inf).softmax(1)
        if logits.shape[1] == 1:  # one class has no rival: the margin is the logit itself
            q = torch.zeros_like(logits)
        for row, other in enumerate(contrasts):
            if other is not None:
                q[row] = 0
                q[row, other] = 1
    return (output[rows, wanted] - (q.to(output.dtype) * output).sum(1)).sum()


@contextlib.contextmanager
def grad_mode() -> Iterator[None]:
    """Gradients on, also inside the caller's ``torch.inference_mode()`` (whose tensors no
    autograd graph can record): the evidence maps' forward and backward run in this block."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _leaf(x: torch.Tensor) -> torch.Tensor:
    # the clip is a leaf that needs a gradient, so the graph exists even for a frozen model
    leaf = x.detach().clone()
    return leaf.requires_grad_(True) if leaf.is_floating_point() else leaf


def pick_channels(row: torch.Tensor, dim: int, channels: torch.Tensor) -> torch.Tensor:
    """One clip's ``channels`` along the batched tensor's channel ``dim``, channels first
    (whichever axis the layer reads them on: channels-last linears), on the host."""
    picked = row.index_select(dim - 1, channels.to(row.device))
    return picked.movedim(dim - 1, 0).detach().cpu()


def evidence_products(output: Any, kept: dict[str, torch.Tensor],
                      requests: dict[str, dict[int, torch.Tensor]], sample: int, target: int,
                      contrast: int | None, *, call: str = "Pyramid.prefetch_maps"
                      ) -> dict[tuple[str, int], torch.Tensor]:
    """``G * A`` at the requested channels of the requested nodes, from a forward already run
    with gradients: ``output`` the graph's output and ``kept`` the requested nodes' outputs,
    both inside the autograd graph. One ``torch.autograd.grad`` of the class's margin over its
    rivals (:func:`rival_margin`) with respect to the kept tensors only."""
    if isinstance(output, (tuple, list)):
        output = output[0]  # torch.export returns a one-tuple
    with grad_mode():
        score = rival_margin(output[sample: sample + 1], [target], [contrast])
        names = [name for name in requests if name in kept]
        values = [kept[name] for name in names]
        try:
            grads = torch.autograd.grad(score, values, allow_unused=True) if values else ()
        except RuntimeError as err:
            if "modified by an inplace operation" not in str(err):
                raise
            raise UnsupportedModelError(
                f"{call}: evidence maps need the gradient of the class score, and the model "
                "edits in place a tensor its backward pass needs (for example a layer's input "
                "after the layer read it), so the model could not be trained as written either "
                f"({str(err).splitlines()[0]}). Hint: draw mode='paper' maps, or write that "
                "edit out of place (y = y + z instead of y += z)") from err
    found: dict[tuple[str, int], torch.Tensor] = {}
    for name, value, grad in zip(names, values, grads):
        with torch.no_grad():
            product = (torch.zeros_like(value) if grad is None else grad * value)[sample]
            for dim, channels in requests[name].items():
                found[(name, dim)] = pick_channels(product, dim, channels)
    return found


def record_evidence(gm: fx.GraphModule, inputs: list[torch.Tensor],
                    requests: dict[str, dict[int, torch.Tensor]], sample: int, target: int,
                    contrast: int | None) -> dict[tuple[str, int], torch.Tensor]:
    """``G * A`` at the requested channels of the requested nodes, for one sample.

    Args:
        gm: the traced graph of the model's eval-mode view (the model is never changed).
        inputs: the inputs the graph is called with.
        requests: ``node -> channel dim -> channel ids``.
        sample: the batch row explained.
        target: the class whose margin over its rivals (:func:`rival_margin`) is differentiated.
        contrast: ``None``, or the one rival (a contrastive pyramid: ``y_target - y_contrast``).

    Returns:
        ``(node, dim) -> channels x ...`` float tensors on the host, channels first.
    """
    recorder = _Recorder(gm, set(requests))
    # the graph is traced from fxcfp's eval-mode view of the model (fxcfp._view): eval mode
    # needs no flag of the caller's flipped, which would race with other threads
    with grad_mode():
        output = recorder.run(*[_leaf(x) for x in inputs])
    return evidence_products(output, recorder.kept, requests, sample, target, contrast)
