"""The support matrix: ``fxcfp.analyze`` at full depth on the CNNs people use.

Every row is built with random weights and analysed on the smallest clip it accepts: video CNNs
from torchvision and pytorchvideo, the paper's six networks, and 2D image CNNs from timm. For
each, with ``threshold=0``:

- it runs, through torch.fx or the torch.export fallback;
- every weighted layer that reaches the logits has a kernel in the pyramid's graph. "Reaches"
  is computed here, from the traced graph alone (a walk from the output back through data
  edges), not from fxcfp's channel maps. A layer may legitimately be missing: at
  ``threshold=0`` every candidate channel passes, *except* where all of a kernel's scores are
  equal (SPEC step 5): a layer whose consumers all read all-zero (dead) inputs is never reached.
  The expected set leaves such starved layers out, and says so in the failure message;
- a second call gives the same result;
- the model is unchanged: values, training flags, ``requires_grad``, hooks, and the clip too.

Full-depth pyramids at ``threshold=0`` are the whole channel-dependency graph: up to 3·10^8
edges (3D ResNet-152; residual streams give each channel one producer per block). So which
layers hold a kernel is read from the pyramid's depth per kernel, which decides its graph's node
set exactly (``Pyramid.graph`` has a node for every kernel of finite depth), and the edges are
compared for real only where the graph is small.

Video transformers are out of scope, and must say so: attention multiplies two activations,
mixing tokens with weights computed from the data, and Class Feature Pyramids has no gate for
that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import fx, nn

import fxcfp
from fxcfp.passes import WEIGHTED_LAYER
from tests.dense_backstep import assert_matches_dense
from tests.models import assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # pytorchvideo's jit use

Shape = tuple[int, ...]

# Compare the edge lists of two calls where a threshold-0 graph has at most this many edges
# (about 1 s and 1 GB each; r3d_18, mc3_18 and I3D fit).
EDGE_BUDGET = 3_500_000


# --- the matrix -------------------------------------------------------------------------------


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models.video, name)()

    return build


def _pytorchvideo(name: str, *, adaptive_head: bool = True) -> Callable[[], nn.Module]:
    """A pytorchvideo hub model with random weights (``pretrained=False`` downloads nothing).

    Its head averages with a fixed ``AvgPool3d`` sized for 224² clips (``8x7x7`` for slow_r50);
    ``head_pool=nn.AdaptiveAvgPool3d`` is the builders' own option for a head that fits any
    clip, so small clips run. Every weighted layer is the hub's.
    """

    def build() -> nn.Module:
        import pytorchvideo.models.hub as hub

        kwargs = {"head_pool": nn.AdaptiveAvgPool3d} if adaptive_head else {}
        return getattr(hub, name)(pretrained=False, **kwargs)

    return build


def _paper(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from fxcfp.zoo.paper import PAPER_NETWORKS

        return PAPER_NETWORKS[name][0]()

    return build


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)

    return build


def _paper_clip(name: str) -> Shape:
    from fxcfp.zoo.paper import PAPER_MIN_CLIP

    return (1, 3, *PAPER_MIN_CLIP[name])


@dataclass(frozen=True)
class Case:
    """One row of the support matrix.

    Attributes:
        name: the model's name in its library.
        family: where it comes from.
        build: makes the model, random weights.
        clips: the batched shape of each input; several make a list input (SlowFast).
        slow: the row takes more than about 2.5 s on 2 cores (the rows whose edges are compared
            are among them).
    """

    name: str
    family: str
    build: Callable[[], nn.Module] = field(repr=False)
    clips: tuple[Shape, ...]
    slow: bool = False

    def param(self) -> object:
        return pytest.param(self, id=self.name, marks=[pytest.mark.slow] if self.slow else [])

    def make(self) -> tuple[nn.Module, torch.Tensor | list[torch.Tensor]]:
        """The model (left in training mode, as built) and its clip, both seeded."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = self.build()
            clips = [torch.randn(shape) for shape in self.clips]
        return model, clips if len(clips) > 1 else clips[0]


# The clips are the smallest each model accepts where every stride still reads real data: the
# last stage sees 1 (x 1 x 1), or what a fixed pooling kernel demands (S3D's 2x7x7 average
# pool, X3D's head sized for 160² crops by its hub function).
MATRIX: tuple[Case, ...] = (
    Case("r3d_18", "torchvision", _torchvision("r3d_18"), ((1, 3, 8, 16, 16),), slow=True),
    Case("mc3_18", "torchvision", _torchvision("mc3_18"), ((1, 3, 1, 16, 16),)),
    Case("r2plus1d_18", "torchvision", _torchvision("r2plus1d_18"), ((1, 3, 8, 16, 16),)),
    Case("s3d", "torchvision", _torchvision("s3d"), ((1, 3, 13, 209, 209),), slow=True),
    Case("x3d_xs", "pytorchvideo", _pytorchvideo("x3d_xs", adaptive_head=False),
         ((1, 3, 4, 129, 129),)),
    Case("x3d_s", "pytorchvideo", _pytorchvideo("x3d_s", adaptive_head=False),
         ((1, 3, 13, 129, 129),)),
    Case("slow_r50", "pytorchvideo", _pytorchvideo("slow_r50"), ((1, 3, 1, 32, 32),)),
    Case("slowfast_r50", "pytorchvideo", _pytorchvideo("slowfast_r50"),
         ((1, 3, 1, 32, 32), (1, 3, 4, 32, 32)), slow=True),
    Case("i3d_r50", "pytorchvideo", _pytorchvideo("i3d_r50"), ((1, 3, 2, 32, 32),)),
    Case("c2d_r50", "pytorchvideo", _pytorchvideo("c2d_r50"), ((1, 3, 2, 32, 32),)),
    Case("csn_r101", "pytorchvideo", _pytorchvideo("csn_r101"), ((1, 3, 8, 32, 32),)),
    Case("r2plus1d_r50", "pytorchvideo", _pytorchvideo("r2plus1d_r50"), ((1, 3, 4, 32, 32),)),
    *(
        Case(name, "paper", _paper(name), (_paper_clip(name),),
             slow=name in ("resnet3d_101", "resnet3d_152", "i3d"))
        for name in ("resnet3d_50", "resnet3d_101", "resnet3d_152", "resnext3d_101",
                     "mfnet3d", "i3d")
    ),
    Case("resnet50", "timm", _timm("resnet50"), ((1, 3, 32, 32),)),
    Case("efficientnet_b0", "timm", _timm("efficientnet_b0"), ((1, 3, 32, 32),)),
    Case("regnety_002", "timm", _timm("regnety_002"), ((1, 3, 32, 32),)),
    Case("convnext_atto", "timm", _timm("convnext_atto"), ((1, 3, 32, 32),)),
)


# --- what the traced graph says, independently of fxcfp's channel maps --------------------------

_SIZE_METHODS = {"size", "dim", "numel", "stride"}
_SIZE_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "is_cuda"}


def _is_size_query(node: fx.Node) -> bool:
    """A node that reads only an activation's metadata: its input's values do not flow on."""
    if node.op == "call_method":
        return node.target in _SIZE_METHODS
    if node.op == "call_function":
        if node.target is getattr:
            return node.args[1] in _SIZE_ATTRIBUTES
        name = getattr(node.target, "__name__", "")
        return name.startswith(("sym_size", "sym_numel", "sym_stride"))
    return False


def _producers(start: fx.Node, weighted: dict[fx.Node, object]) -> set[fx.Node]:
    """The weighted nodes and placeholders whose values reach ``start`` through weight-free
    nodes: a backward walk over data edges that stops at the first weighted node."""
    found, seen, stack = set(), set(), [start]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node in weighted or node.op == "placeholder":
            found.add(node)
        elif not _is_size_query(node):
            stack.extend(node.all_input_nodes)
    return found


class _PooledInputs(fx.Interpreter):
    """Runs the traced graph and keeps each weighted layer's input averaged over every dim but
    its channels (SPEC step 2), computed here, not read from fxcfp's capture."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.wanted = {}
        for node in gm.graph.nodes:
            layer = node.meta.get(WEIGHTED_LAYER)
            if layer is not None:
                self.wanted.setdefault(layer.input, []).append(node)
        self.pooled: dict[fx.Node, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> object:
        value = super().run_node(n)
        for layer_node in self.wanted.get(n.name, ()):
            # sample 0; a conv reads channels first, a linear layer features last
            channel = 0 if layer_node.meta[WEIGHTED_LAYER].kind == "conv" else -1
            moved = value[0].movedim(channel, 0)
            self.pooled[layer_node] = moved.reshape(moved.shape[0], -1).double().mean(1)
        return value


def _all_flat(gm: fx.GraphModule, node: fx.Node, pooled: torch.Tensor) -> bool:
    """True when no kernel of the layer can select anything: for each kernel, its scores
    ``a_i * w_ji`` over the channels it reads are all equal (SPEC step 5; one channel is a
    link, never flat)."""
    layer = node.meta[WEIGHTED_LAYER]
    weight = gm.get_parameter(layer.weight).detach().double()
    if layer.weight_transposed:
        weight = weight.t()
    if weight.dim() > 2:
        weight = weight.mean(dim=tuple(range(2, weight.dim())))
    per_group = weight.shape[1]
    if per_group == 1:
        return False
    group = torch.arange(layer.out_channels) // (layer.out_channels // layer.groups)
    scores = pooled.view(layer.groups, per_group)[group] * weight
    return bool((scores.amax(1) == scores.amin(1)).all())


@dataclass(frozen=True)
class Reach:
    """Weighted layers (and model inputs) by whether they reach the logits."""

    expected: set[str]  # reach the logits through a layer that selects something
    starved: set[str]  # reach the logits only through layers whose kernels are all flat
    inputs: set[int]  # model inputs the expected layers read


def reaching_layers(gm: fx.GraphModule, inputs: list[torch.Tensor]) -> Reach:
    """Which weighted layers of ``gm`` a threshold-0 pyramid must hold, from the graph alone.

    Layer-level: a layer passes the search on to its producers unless every one of its kernels
    is flat (then, at threshold 0, nothing it reads is selected). Which layers are weighted
    comes from ``node.meta``; which of them reach the output, and through what, from a walk of
    the graph's data edges.
    """
    weighted = {n: n.meta[WEIGHTED_LAYER] for n in gm.graph.nodes if WEIGHTED_LAYER in n.meta}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    recorder = _PooledInputs(gm)
    with torch.no_grad():
        recorder.run(*inputs)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    flat: dict[fx.Node, bool] = {}

    def walk(stop_at_flat: bool) -> set[fx.Node]:
        seen: set[fx.Node] = set()
        frontier = list(_producers(output, weighted))
        while frontier:
            node = frontier.pop()
            if node in seen or node.op == "placeholder":
                seen.add(node)
                continue
            seen.add(node)
            if stop_at_flat:
                if node not in flat:
                    flat[node] = _all_flat(gm, node, recorder.pooled[node])
                if flat[node]:
                    continue  # its kernels are in the pyramid, but select nothing
            start = next(a for a in node.all_input_nodes if a.name == weighted[node].input)
            frontier.extend(_producers(start, weighted))
        return seen

    reached, everything = walk(stop_at_flat=True), walk(stop_at_flat=False)
    return Reach(
        expected={weighted[n].name for n in reached if n in weighted},
        starved={weighted[n].name for n in everything - reached if n in weighted},
        inputs={placeholders.index(n) for n in reached if n.op == "placeholder"},
    )


# --- what the pyramid holds ---------------------------------------------------------------------


def pyramid_layers(pyramid: fxcfp.Pyramid) -> set[str]:
    """Layers with at least one node in ``pyramid.graph``, without building the graph: a kernel
    is a node exactly when its depth is finite."""
    return {layer.name for layer in pyramid._plan.layers
            if (pyramid.kernel_depths(layer.name) >= 0).any()}


def pyramid_inputs(pyramid: fxcfp.Pyramid) -> dict[str, int]:
    """Per model input (``input`` or ``input0``...), how many of its channels are leaves."""
    plan, depth = pyramid._plan, pyramid.depths
    return {name: int((depth[first: first + count] >= 0).sum())
            for name, (first, count) in zip(plan.input_names, plan.input_ranges)}


def edge_bound(pyramid: fxcfp.Pyramid) -> int:
    """The edges a threshold-0 graph can have: every kernel to every producer it reads."""
    total = 0
    for layer in pyramid._plan.layers:
        valid = (layer.sources >= 0).sum(1).view(layer.groups, -1).sum(1)
        total += int(valid.sum()) * (layer.out_channels // layer.groups)
    return total


def _clone(clip: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
    return [c.clone() for c in clip] if isinstance(clip, list) else [clip.clone()]


@pytest.mark.parametrize("case", [case.param() for case in MATRIX])
def test_support_matrix(case: Case) -> None:
    model, clip = case.make()
    before, clip_before = snapshot(model), _clone(clip)

    first = fxcfp.analyze(model, clip, threshold=0.0, max_depth=None)
    second = fxcfp.analyze(model, clip, threshold=0.0, max_depth=None)

    # the model and the clip are as they were (SlowFast's blocks write into the list they get)
    assert_unchanged(model, before)
    for now, then in zip(_clone(clip), clip_before):
        assert torch.equal(now, then), "the clip was changed"

    # every weighted layer that reaches the logits has a kernel in the pyramid
    plan = first._plan
    inputs = [c[:1] for c in ([clip] if isinstance(clip, torch.Tensor) else clip)]
    model.eval()  # the traced graph shares the model's modules: no batch-norm update here
    reach = reaching_layers(plan.traced.gm, inputs)
    layers = pyramid_layers(first)
    assert {layer.name for layer in plan.layers} >= reach.expected | reach.starved
    missing, extra = reach.expected - layers, layers - reach.expected
    assert not missing, (f"{case.name}: layers reach the logits but hold no kernel: "
                         f"{sorted(missing)} (starved, so rightly absent: {sorted(reach.starved)})")
    assert not extra, f"{case.name}: layers in the pyramid that the graph says cannot be: {sorted(extra)}"
    assert not reach.starved & layers, "a starved layer was reached"
    leaves = pyramid_inputs(first)
    assert set(leaves) == set(plan.input_names)
    for index, (name, count) in enumerate(leaves.items()):
        assert (count > 0) == (index in reach.inputs), f"{case.name}: leaves of {name}: {count}"

    # the early-exit back-step and its edge counts equal the dense back-step's, bit for bit
    assert_matches_dense(first, thresholds=(0.0, 0.6), depths=(None, 3))

    # the same result on a second call. The depths decide the graph's nodes, and with the
    # pooled inputs (and the model's weights) every edge; the edges themselves are compared
    # where they fit in memory
    assert (second.target, second.probability) == (first.target, first.probability)
    assert torch.equal(second.logits, first.logits)
    assert np.array_equal(second.depths, first.depths)
    assert all(torch.equal(second.pooled_input(layer.name), first.pooled_input(layer.name))
               for layer in plan.layers)
    if edge_bound(first) <= EDGE_BUDGET:
        edges, expected = second.edge_arrays(), first.edge_arrays()
        for name in ("src", "dst", "score"):
            assert np.array_equal(getattr(edges, name), getattr(expected, name))
        assert second.layers == first.layers
        assert {level.name for level in first.layers} == layers


class _DeadBranch(nn.Module):
    """``dead`` reads a tensor that is zero everywhere, so all its kernels' scores are equal and
    it selects nothing: ``feeder`` reaches the logits in the graph, only through it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.feeder = nn.Conv2d(4, 4, 1)
        self.dead = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        zeros = torch.relu(-self.feeder(x).abs() - 1.0)
        both = torch.cat([x, self.dead(zeros)], dim=1)
        return self.head(both.mean((2, 3)))


def test_a_layer_behind_all_equal_inputs_is_legitimately_missing() -> None:
    model = _DeadBranch().eval()
    clip = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    pyramid = fxcfp.analyze(model, clip, threshold=0.0)
    reach = reaching_layers(pyramid._plan.traced.gm, [clip])
    assert reach.starved == {"feeder"}
    assert reach.expected == {"stem", "dead", "head"}
    assert pyramid_layers(pyramid) == reach.expected
    assert {level.name for level in pyramid.layers} == reach.expected


# --- SlowFast: two pathways and their lateral connections ---------------------------------------


def _narrow_slowfast() -> nn.Module:
    """slowfast_r50's builder and wiring (pytorchvideo ``create_slowfast``, 7x1x1 lateral fusion
    convs, ``[slow, fast]`` list input) at depth 18 and 1/8 of the width, so that its
    threshold-0 graph (1.5·10^5 edges, against 4.5·10^7 at full width) can be built whole."""
    from pytorchvideo.models.slowfast import create_slowfast

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_slowfast(model_depth=18, stem_dim_outs=(8, 1), model_num_class=10,
                               slowfast_fusion_conv_kernel_size=(7, 1, 1),
                               head_pool=nn.AdaptiveAvgPool3d)


def _slowfast_clips(seed: int) -> list[torch.Tensor]:
    """[slow, fast] for the narrow SlowFast: 1 and 4 frames (alpha 4) at 32x32."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, 1, 32, 32, generator=generator),
            torch.randn(1, 3, 4, 32, 32, generator=generator)]


def test_slowfast_shows_both_pathways_and_their_lateral_connections() -> None:
    model = _narrow_slowfast()
    pyramid = fxcfp.analyze(model, _slowfast_clips(0), threshold=0.0)
    graph = pyramid.graph

    def pathway(layer: str) -> str:
        if "multipathway_fusion" in layer:
            return "fusion"
        if ".multipathway_blocks.0." in layer or layer == "input0":
            return "slow"
        if ".multipathway_blocks.1." in layer or layer == "input1":
            return "fast"
        return "head"

    kind = {node: pathway(data["layer"]) for node, data in graph.nodes(data=True)}
    assert {n.split(":")[0] for n in graph if n.startswith("input")} == {"input0", "input1"}
    into = {v for u, v in graph.edges if kind[u] == "slow" and kind[v] == "fusion"}
    out_of = {u for u, v in graph.edges if kind[u] == "fusion" and kind[v] == "fast"}
    crossing = into & out_of  # slow kernel -> lateral fusion kernel -> fast kernel
    fusions = sorted({graph.nodes[n]["layer"] for n in crossing})
    assert fusions == [f"blocks.{i}.multipathway_fusion.conv_fast_to_slow" for i in range(4)]
    # nothing else joins the pathways: the fast pathway never reads the slow one
    assert not [(u, v) for u, v in graph.edges if kind[u] == "fast" and kind[v] == "slow"]
    for level in pyramid.layers:
        # maps are drawn over the input a layer is fewest weighted layers away from; a fusion
        # conv reads the fast pathway
        side = pathway(level.name)
        if side != "head":
            assert level.pathway == (0 if side == "slow" else 1), level.name


def test_slowfast_traced_symbolically_gives_the_pyramid_torch_export_gives() -> None:
    # its list of pathways is traced as one placeholder per clip; its last fusion, an
    # nn.Identity handed the list, passes the list on
    model = _narrow_slowfast()
    clips = _slowfast_clips(3)
    by_fx = fxcfp.analyze(model, clips, threshold=0.3)
    by_export = fxcfp.Analyzer(model, trace="export").analyze(clips, threshold=0.3)
    assert (by_fx.trace_method, by_export.trace_method) == ("fx", "export")
    assert [level.name for level in by_fx.layers] == [level.name for level in by_export.layers]
    assert by_fx.target == by_export.target
    assert torch.allclose(by_fx.logits, by_export.logits, rtol=1e-5, atol=1e-6)
    assert set(by_fx.graph.edges) == set(by_export.graph.edges)


# --- video transformers: refused, with the reason -----------------------------------------------

_ATTENTION = r"multiplies two activations.*attention.*no gate for data-dependent mixing"


class _TinyAttention(nn.Module):
    """A conv stem, one self-attention over its T*H*W tokens, a linear head."""

    def __init__(self, product: str) -> None:
        super().__init__()
        self.product = product
        self.stem = nn.Conv3d(3, 8, 3, padding=1)
        self.qkv = nn.Linear(8, 24)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        if self.product == "sdpa":
            mixed = nn.functional.scaled_dot_product_attention(q, k, v)
        elif self.product == "einsum":
            weights = torch.einsum("bic,bjc->bij", q, k).softmax(-1)
            mixed = torch.einsum("bij,bjc->bic", weights, v)
        elif self.product == "bmm":
            mixed = torch.bmm(torch.bmm(q, k.transpose(1, 2)).softmax(-1), v)
        else:
            mixed = (q @ k.transpose(1, 2)).softmax(-1) @ v
        return self.head(mixed.mean(1))


@pytest.mark.parametrize("trace", ["fx", "export"])
@pytest.mark.parametrize("product", ["matmul", "bmm", "einsum", "sdpa"])
def test_attention_is_refused_with_the_reason(product: str, trace: str) -> None:
    model = _TinyAttention(product)
    before = snapshot(model)
    analyzer = fxcfp.Analyzer(model, trace=trace)  # export: the aten ops of the same products
    with pytest.raises(fxcfp.UnsupportedModelError, match=_ATTENTION) as info:
        analyzer.analyze(torch.randn(3, 2, 4, 4))
    assert "FX node" in str(info.value)  # where, for the user to find it
    assert_unchanged(model, before)


def test_product_with_a_constant_matrix_is_refused() -> None:
    class Mixing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("mix", torch.randn(4, 4))
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).mean((2, 3)) @ self.mix)

    with pytest.raises(fxcfp.UnsupportedOpError,
                       match=r"tensor of shape \(4, 4\) that is not the weight parameter"):
        fxcfp.analyze(Mixing(), torch.randn(3, 4, 4))


def _video_transformer(name: str) -> nn.Module:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return getattr(torchvision.models.video, name)().eval()


TRANSFORMERS = [
    pytest.param("mvit_v2_s", (3, 16, 224, 224), id="mvit_v2_s", marks=pytest.mark.slow),
    pytest.param("swin3d_t", (3, 2, 32, 32), id="swin3d_t", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "shape"), TRANSFORMERS)
def test_video_transformers_are_refused_for_their_attention(name: str, shape: Shape) -> None:
    # torch.export sees through torchvision's fx-wrapped helpers down to the attention matmul
    analyzer = fxcfp.Analyzer(_video_transformer(name), trace="export")
    with pytest.raises(fxcfp.UnsupportedModelError, match=_ATTENTION):
        analyzer.analyze(torch.randn(*shape))


@pytest.mark.parametrize(("name", "shape"), TRANSFORMERS)
def test_video_transformers_are_refused_for_their_attention_by_default(
        name: str, shape: Shape) -> None:
    # fx keeps torchvision's wrapped helpers opaque; analyze re-traces with torch.export
    with pytest.raises(fxcfp.UnsupportedModelError, match=_ATTENTION):
        fxcfp.analyze(_video_transformer(name), torch.randn(*shape))
