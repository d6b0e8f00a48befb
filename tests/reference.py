"""A plain, slow, independent implementation of SPEC.md, to check ``fxcfp`` edge for edge.

Nothing here uses torch.fx or any part of ``fxcfp``. The channel maps are *measured*, not
derived from op rules: a producer channel is perturbed while every other weighted layer is
frozen, and the input channels of each layer that move are the ones it reaches through
weight-free operations only — the SPEC's definition, read literally. The back-step is a
loop per kernel and per channel in float64.

Decisions where SPEC.md is silent (the core should agree or say why not):

- Weighted layers are the ``nn.Conv1d/2d/3d`` and ``nn.Linear`` modules that run, plus calls
  of ``F.conv1d/2d/3d`` and ``F.linear`` whose weight is a parameter of the model and that are
  not the module's own call. A functional layer is named like its FX node: the function's
  name, then ``_1``, ``_2`` ... by call order (``conv3d``, ``conv3d_1``). This matches FX unless
  another node of the traced graph already took that name (a parameter called ``conv3d``).
  ``addmm`` is not recognised. A layer called twice is an error.
- The analysis runs on a float64 deep copy in eval mode; dropout is then the identity and batch
  norm uses its running statistics. The caller's model is never touched.
- Clips must be batched (``N x C x ...``); only sample 0 is analysed. Several inputs are passed
  to the model as one list (``model([slow, fast])``), as SlowFast expects, and are named
  ``input0``, ``input1``, ...
- The classifier: the kernels that reach output channel ``c``. A softmax over classes makes
  every logit reach every probability, so when they all belong to one layer the root is that
  layer's kernel ``c`` (SPEC: "softmax is channel c to channel c"); otherwise several sources
  are an error.
- ``probability`` is ``softmax(output[0])[target]``; where the output already is a probability
  distribution (a final softmax) it is the output itself, and ``exp`` of it where it is one in
  log space (a final log-softmax) — told here from the values, not from the graph.

How the perturbation avoids blind spots. The brief suggests shifting one channel by a large
constant at the recorded activations. That misses links where the data hides them: a mean
subtraction cancels a constant shift, and in a gated product ``relu(x * sigmoid(g))`` a
change of ``g`` is invisible where ``x`` is zero (a dead ReLU channel) or negative. Since the
channel map is structural, any operating point will do, so every frozen output and the clip
are replaced by a random positive *base* (``BASE * (1 + U[0,1))``), and each channel gets two
perturbations, ``+BIG`` and ``-BIG`` times a random positive pattern. Positive bases keep
ReLUs open, a sigmoid of a large positive base saturates at 1 so ``-BIG`` moves it, and the
random patterns defeat cancellation by means. What still escapes this is numerical channel
mixing by weight-free ops that SPEC calls links (group/layer/instance norm, batch norm in
train mode); the models in ``tests/models.py`` and ``tests/strategies.py`` avoid them, and
must treat batch samples independently (``flatten(1)``, not ``view(1, -1)``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import networkx as nx
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["layer_widths", "perturbation_channel_map", "reference_pyramid"]

WEIGHTED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
FUNCTIONAL_LAYERS = frozenset({"conv1d", "conv2d", "conv3d", "linear"})

BASE = 100.0
"""Scale of the random positive operating point of the perturbation runs."""
BIG = 1.0e4
"""Scale of a perturbation: far above BASE, so it flips saturations and ReLUs."""
TOL = 1.0e-6
"""A consumer channel moved when some element changed by more than this (float64)."""

Clip = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class _Layer:
    """One weighted layer as the reference sees it."""

    name: str
    weight: torch.Tensor
    groups: int
    linear: bool

    @property
    def channel_dim(self) -> int:
        """Channel dim of its input and output: features are last for a linear layer."""
        return -1 if self.linear else 1

    @property
    def width(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class _Run:
    """What one instrumented forward saw, in call order (a topological order)."""

    layers: dict[str, _Layer] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None


Replace = Callable[[str], torch.Tensor]


class _FunctionalLayers(TorchFunctionMode):
    """Sees ``F.conv*d`` / ``F.linear`` calls on model parameters that no module makes itself."""

    def __init__(
        self,
        params: set[int],
        active: list[nn.Module],
        enter: Callable[[_Layer, torch.Tensor], None],
        leave: Callable[[str, torch.Tensor], None],
        replace: Replace | None,
    ) -> None:
        super().__init__()
        self.params = params
        self.active = active
        self.enter = enter
        self.leave = leave
        self.replace = replace
        self.calls: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        fname = getattr(func, "__name__", None)
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        own_call = bool(self.active) and getattr(self.active[-1], "weight", None) is weight
        if fname not in FUNCTIONAL_LAYERS or id(weight) not in self.params or own_call:
            return func(*args, **kwargs)
        count = self.calls.get(fname, 0)
        self.calls[fname] = count + 1
        name = fname if count == 0 else f"{fname}_{count}"
        groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
        self.enter(_Layer(name, weight, int(groups), fname == "linear"), args[0])
        out = func(*args, **kwargs) if self.replace is None else self.replace(name)
        self.leave(name, out)
        return out


def _instrumented_run(
    model: nn.Module, inputs: list[torch.Tensor], replace: Replace | None
) -> _Run:
    """Run ``model`` recording every weighted layer's input and output.

    With ``replace``, no weighted layer computes: each returns ``replace(name)`` instead (how
    layers are frozen and perturbed). Skipping the convolutions is what keeps the many
    perturbation runs cheap; ``model`` must be the reference's own copy, as the modules'
    ``forward`` is swapped for the run.
    """
    run = _Run()
    active: list[nn.Module] = []

    def enter(layer: _Layer, x: torch.Tensor) -> None:
        if layer.name in run.layers:
            raise ValueError(f"reference: layer {layer.name!r} runs twice; not supported")
        run.layers[layer.name] = layer
        run.inputs[layer.name] = x.detach().clone()

    def leave(name: str, out: torch.Tensor) -> None:
        run.outputs[name] = out.detach().clone()

    def hooks(name: str, module: nn.Module) -> tuple[Callable, Callable]:
        layer = _Layer(
            name, module.weight, getattr(module, "groups", 1), isinstance(module, nn.Linear)
        )

        def pre(mod: nn.Module, args: tuple) -> None:
            active.append(mod)
            enter(layer, args[0])

        def post(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            active.pop()
            leave(name, out)

        return pre, post

    handles = []
    patched: list[nn.Module] = []
    try:
        for name, module in model.named_modules():
            if isinstance(module, WEIGHTED_MODULES):
                pre, post = hooks(name, module)
                handles.append(module.register_forward_pre_hook(pre))
                handles.append(module.register_forward_hook(post))
                if replace is not None:
                    module.forward = functools.partial(_frozen_forward, replace, name)
                    patched.append(module)
        params = {id(p) for p in model.parameters()}
        with _FunctionalLayers(params, active, enter, leave, replace):
            output = model(inputs[0] if len(inputs) == 1 else list(inputs))
    finally:
        for handle in handles:
            handle.remove()
        for module in patched:
            del module.forward
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise ValueError("reference: the model must return N x classes logits")
    run.output = output.detach().clone()
    return run


def _frozen_forward(replace: Replace, name: str, *args: object, **kwargs: object) -> torch.Tensor:
    return replace(name)


def _float64_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode deep copy, so the caller's model is never modified."""
    return copy.deepcopy(model).to(torch.float64).eval()


def _prepare(clip: Clip) -> tuple[list[torch.Tensor], list[str]]:
    """Sample 0 of each clip in float64, and the node-name prefix of each clip."""
    tensors = [clip] if isinstance(clip, torch.Tensor) else list(clip)
    names = (
        ["input"] if isinstance(clip, torch.Tensor) else [f"input{i}" for i in range(len(tensors))]
    )
    for t in tensors:
        if t.dim() < 3:
            raise ValueError(
                f"reference: clips must be batched N x C x ..., got shape {tuple(t.shape)}"
            )
    return [t[:1].detach().to(torch.float64) for t in tensors], names


def _perturb(t: torch.Tensor, channel_dim: int, gen: torch.Generator) -> None:
    """In place: sample ``1 + 2k`` gets ``+BIG`` on channel ``k``, sample ``2 + 2k`` gets ``-BIG``."""
    width = t.shape[channel_dim]
    sample_dim = channel_dim - 1 if channel_dim > 0 else channel_dim
    for k in range(width):
        for s, sign in enumerate((1.0, -1.0)):
            view = t[1 + 2 * k + s].select(sample_dim, k)
            pattern = BIG * (1.0 + torch.rand(view.shape, generator=gen, dtype=t.dtype))
            view.add_(sign * pattern)


def _moved(before: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``(batch - 1) x C`` booleans: which channels of samples 1.. differ from sample 0."""
    x = before.movedim(channel_dim, 1)
    diff = (x[1:] - x[:1]).abs()
    if diff.dim() > 2:
        diff = diff.flatten(2).amax(dim=2)
    return diff > TOL


def _channel_maps(
    model: nn.Module, inputs: list[torch.Tensor], names: list[str], real: _Run
) -> tuple[dict[str, list[set[str]]], list[set[str]]]:
    """Measured channel maps of every layer's input and of the model's output."""
    gen = torch.Generator().manual_seed(0)
    base_out = {
        n: BASE * (1.0 + torch.rand(o.shape, generator=gen, dtype=o.dtype))
        for n, o in real.outputs.items()
    }
    base_in = [BASE * (1.0 + torch.rand(t.shape, generator=gen, dtype=t.dtype)) for t in inputs]
    maps = {
        name: [set() for _ in range(real.inputs[name].shape[layer.channel_dim])]
        for name, layer in real.layers.items()
    }
    assert real.output is not None
    out_map: list[set[str]] = [set() for _ in range(real.output.shape[1])]

    producers = [(name, 1, t.shape[1]) for name, t in zip(names, inputs)]
    producers += [(name, layer.channel_dim, layer.width) for name, layer in real.layers.items()]
    for producer, channel_dim, width in producers:
        batch = 1 + 2 * width

        def widen(base: torch.Tensor, batch: int = batch) -> torch.Tensor:
            return base.expand(batch, *base.shape[1:]).clone()

        clips = [widen(b) for b in base_in]
        for name, c in zip(names, clips):
            if name == producer:
                _perturb(c, channel_dim, gen)

        def replace(
            name: str, producer: str = producer, cd: int = channel_dim, widen=widen
        ) -> torch.Tensor:
            frozen = widen(base_out[name])
            if name == producer:
                _perturb(frozen, cd, gen)
            return frozen

        run = _instrumented_run(model, clips, replace)
        if list(run.layers) != list(real.layers):
            raise ValueError(
                "reference: the layers ran in a different order; data-dependent control flow?"
            )
        for consumer, layer in run.layers.items():
            for b, i in _moved(run.inputs[consumer], layer.channel_dim).nonzero().tolist():
                maps[consumer][i].add(f"{producer}:{b // 2}")
        assert run.output is not None
        for b, i in _moved(run.output, 1).nonzero().tolist():
            out_map[i].add(f"{producer}:{b // 2}")
    return maps, out_map


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread, restoring the caller's setting (also for runs compared bit
    for bit with a one-thread run: another thread count rounds differently in the last bits).

    The tensors here are tiny: with two threads on a busy two-core machine, OpenMP's
    hand-offs made a float64 batch norm 15-200x slower than on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _analyse(
    model: nn.Module, clip: Clip
) -> tuple[_Run, list[str], dict[str, list[set[str]]], list[set[str]]]:
    """The recorded forward of sample 0, and the measured channel maps (layers, output)."""
    model64 = _float64_copy(model)
    inputs, names = _prepare(clip)
    with torch.no_grad(), one_thread():
        real = _instrumented_run(model64, inputs, None)
        maps, out_map = _channel_maps(model64, inputs, names, real)
    return real, names, maps, out_map


def perturbation_channel_map(model: nn.Module, clip: Clip) -> dict[str, list[set[str]]]:
    """Per weighted layer, per input channel, the producer keys ``"<layer>:<k>"`` that reach it.

    Producers are the weighted layers and the clip channels (``"input:c"``). For a linear layer
    the input channels are its input features.
    """
    return _analyse(model, clip)[2]


def layer_widths(model: nn.Module, clip: Clip) -> dict[str, int]:
    """Output width of every node layer: each weighted layer, and each clip's channel count."""
    model64 = _float64_copy(model)
    inputs, names = _prepare(clip)
    with torch.no_grad(), one_thread():
        real = _instrumented_run(model64, inputs, None)
    widths = {name: int(t.shape[1]) for name, t in zip(names, inputs)}
    widths.update({name: layer.width for name, layer in real.layers.items()})
    return widths


def _root(out_map: list[set[str]], target: int) -> str:
    sources = out_map[target]
    if len(sources) == 1:
        return next(iter(sources))
    layers = {key.rsplit(":", 1)[0] for key in sources}
    if len(layers) == 1:
        (layer,) = layers
        if f"{layer}:{target}" in sources:
            return f"{layer}:{target}"
    raise ValueError(
        f"reference: output channel {target} has no single classifier kernel: {sorted(sources)}"
    )


def _pooled_input(x: torch.Tensor, layer: _Layer) -> list[float]:
    """``a_l``: sample 0 of the layer's input, averaged over every dim but the channel."""
    x = x[0].movedim(layer.channel_dim if layer.linear else 0, 0)
    return x.reshape(x.shape[0], -1).mean(dim=1).tolist()


def _pooled_weight(layer: _Layer) -> list[list[float]]:
    """``w_l``: the weight averaged over its kernel dims, ``C_out x C_in/groups``."""
    w = layer.weight.detach()
    return w.reshape(w.shape[0], w.shape[1], -1).mean(dim=2).tolist()


def _selected(
    layer: _Layer,
    a: list[float],
    w: list[list[float]],
    j: int,
    threshold: float,
    top_k: int | None,
) -> list[tuple[int, float]]:
    """The input channels kernel ``j`` selects, with their normalised scores (SPEC steps 3–6)."""
    per_group_in = len(w[j])
    per_group_out = len(w) // layer.groups
    first = (j // per_group_out) * per_group_in  # a grouped kernel reads its own group only
    candidates = list(range(first, first + per_group_in))
    scores = []
    for i in candidates:
        scores.append(a[i] * w[j][i - first])
    if len(candidates) == 1:
        normalised = [1.0]  # a depth-wise kernel has one channel: always a link
    else:
        lo, hi = min(scores), max(scores)
        if hi == lo:
            return []
        normalised = []
        for s in scores:
            normalised.append((s - lo) / (hi - lo))
    passing = []
    for i, n in zip(candidates, normalised):
        if n >= threshold:
            passing.append((i, n))
    if top_k is not None:
        passing = sorted(passing, key=lambda p: (-p[1], p[0]))[:top_k]
    return passing


def _check_options(threshold: float, max_depth: int | None, top_k: int | None) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"reference: threshold must be in [0, 1], got {threshold}")
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"reference: max_depth must be >= 0 or None, got {max_depth}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"reference: top_k must be >= 1 or None, got {top_k}")


def _probability(output: torch.Tensor, target: int) -> float:
    values = output.double()
    if bool((values >= 0).all()) and abs(float(values.sum()) - 1) < 1e-5:
        return float(values[target])
    if bool((values <= 0).all()) and abs(float(values.exp().sum()) - 1) < 1e-5:
        return float(values[target].exp())
    return float(torch.softmax(values, dim=0)[target])


def reference_pyramid(
    model: nn.Module,
    clip: Clip,
    cls: int | None = None,
    *,
    threshold: float = 0.6,
    max_depth: int | None = None,
    top_k: int | None = None,
) -> nx.DiGraph:
    """The class feature pyramid of SPEC.md as a ``networkx.DiGraph``, computed the slow way.

    Same node keys and attributes as ``fxcfp.analyze(...).graph``: nodes ``"<layer>:<channel>"``
    with ``layer``, ``channel``, ``depth``, ``score``; edges with ``score``; graph attributes
    ``target``, ``threshold``, ``max_depth``, ``probability``.
    """
    _check_options(threshold, max_depth, top_k)
    real, names, maps, out_map = _analyse(model, clip)
    assert real.output is not None
    logits = real.output[0]
    if cls is not None and not 0 <= cls < logits.shape[0]:
        raise ValueError(f"reference: cls {cls} out of range for {logits.shape[0]} classes")
    target = int(torch.argmax(logits)) if cls is None else int(cls)
    probability = _probability(logits, target)
    root = _root(out_map, target)

    pooled = {
        name: (_pooled_input(real.inputs[name], layer), _pooled_weight(layer))
        for name, layer in real.layers.items()
    }
    depth = {root: 0}
    edges: dict[tuple[str, str], float] = {}
    queue = deque([root])
    while queue:  # breadth first: a node's depth is fixed when it is first discovered
        node = queue.popleft()
        layer_name, channel = node.rsplit(":", 1)
        if layer_name in names:
            continue  # a clip channel: nothing to expand
        if max_depth is not None and depth[node] >= max_depth:
            continue
        layer = real.layers[layer_name]
        a, w = pooled[layer_name]
        for i, n in _selected(layer, a, w, int(channel), threshold, top_k):
            for source in sorted(maps[layer_name][i]):
                # several passing channels reaching one kernel: keep the largest score
                edges[(node, source)] = max(edges.get((node, source), -1.0), n)
                if source not in depth:
                    depth[source] = depth[node] + 1
                    queue.append(source)

    graph = nx.DiGraph(
        target=target, threshold=float(threshold), max_depth=max_depth, probability=probability
    )
    score = {root: 1.0}
    for (_, dst), n in edges.items():
        score[dst] = max(score.get(dst, -1.0), n)
    for node, d in depth.items():
        layer_name, channel = node.rsplit(":", 1)
        graph.add_node(node, layer=layer_name, channel=int(channel), depth=d, score=score[node])
    for (src, dst), n in edges.items():
        graph.add_edge(src, dst, score=n)
    return graph
