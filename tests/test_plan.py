"""The plan's capture: the first call takes its pooled inputs from the channel-map pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import fxcfp


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def test_the_first_call_runs_the_model_once_and_equals_the_capture():
    model = _net()
    calls = []
    handle = model[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        clip = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(1))
        analyzer = fxcfp.Analyzer(model)
        first = analyzer.analyze(clip)
        assert len(calls) == 1  # the channel-map pass's run, not a second forward
        plan = next(iter(analyzer._plans.values()))
        with torch.no_grad():
            logits, pooled = plan.capture(clip[None])
        assert torch.equal(first.logits, logits[0])
        layer_pooled = [pooled[i][0] for i in plan.pooled_index]
        assert all(torch.equal(first.pooled_input(layer.name), p)
                   for layer, p in zip(plan.layers, layer_pooled, strict=True))
        second = analyzer.analyze(clip)
        assert len(calls) == 3  # now the capture (one more run above, by the test)
        assert (second.depths == first.depths).all()
        # a batch is mapped on its first clip, then captured whole
        calls.clear()
        fxcfp.Analyzer(model).analyze_batch(torch.stack([clip, clip + 1]))
        assert len(calls) == 2
    finally:
        handle.remove()


def test_the_first_call_imports_neither_symbolic_shapes_nor_networkx_nor_scipy():
    # torch.broadcast_shapes imports torch's symbolic shapes and sympy on first use: 0.7 s of
    # CPU, most of a 3D ResNet-50 forward, paid by every process's first call (torchvision
    # imports sympy itself; fxcfp's own networks and a user's model need not); networkx and
    # scipy, 0.3 s each, wait for the graph and the maps
    code = (
        "import sys, torch, fxcfp\n"
        "from tests.models import make_resnet3d\n"
        "model, shape = make_resnet3d()\n"
        "fxcfp.analyze(model, torch.randn(*shape[1:]))\n"
        "print(sorted(m for m in ('sympy', 'torch.fx.experimental.symbolic_shapes',"
        " 'networkx', 'scipy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[]"


class _Squeeze(nn.Module):
    """A squeeze-excitation block: its layers read 1x1 vectors; a BatchNorm inlined into the
    graph (its parameters read as attributes) and a depth of modules under the root."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.gate = nn.Sequential(nn.Conv2d(6, 2, 1), nn.ReLU(), nn.Conv2d(2, 6, 1))
        self.norm = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(x)
        x = x * self.gate(x.mean((2, 3), keepdim=True)).sigmoid()
        n = self.norm
        x = torch.nn.functional.batch_norm(x, n.running_mean, n.running_var, n.weight, n.bias)
        return self.head(x.mean((2, 3)))


def test_the_capture_pools_as_torch_mean_does_bit_for_bit_and_calls_the_same_modules():
    torch.manual_seed(0)
    model = _Squeeze().eval()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.weight.uniform_(0.5, 2)
    seen: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_pre_hook(
                lambda m, args, name=name: seen.__setitem__(name, args[0].detach().clone()))
    clips = torch.randn(3, 3, 9, 7)
    analyzer = fxcfp.Analyzer(model)
    first = analyzer.analyze(clips[0])
    plan = next(iter(analyzer._plans.values()))
    # the graph calls the model's own modules (their hooks ran), each a child of the root
    called = [n for n in plan.capture.graph.nodes if n.op in ("call_module", "get_attr")]
    assert called and all(str(n.target).count(".") <= 1 for n in called)
    # a sum where a 1x1 vector is pooled, sums divided in one call at the end elsewhere
    targets = [n.target for n in plan.capture.graph.nodes if n.op == "call_function"]
    assert torch.mean not in targets and torch.sum in targets
    for clip in clips:
        pyramid = analyzer.analyze(clip)
        for layer in plan.layers:
            value = seen[layer.name]
            expected = value if value.dim() == 2 else torch.mean(value, dim=(2, 3))
            assert torch.equal(pyramid.pooled_input(layer.name), expected[0]), layer.name
    assert torch.equal(analyzer.analyze(clips[0]).pooled_input("head"),
                       first.pooled_input("head"))
    model.norm.weight.data.mul_(3)  # read live from the module by the capture graph
    assert not torch.equal(analyzer.analyze(clips[0]).logits, first.logits)


class _Colliding(nn.Module):
    """Submodules at ``a.b`` and ``a_b``: one flat name for two modules."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Module()
        self.a.b = nn.Conv2d(3, 4, 3, padding=1)
        self.a_b = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.a_b(self.a.b(x).relu()).mean((2, 3)))


def test_the_flat_capture_graph_keeps_modules_whose_flat_names_collide_apart():
    torch.manual_seed(0)
    model = _Colliding().eval()
    clip = torch.randn(3, 6, 6)
    pyramid = fxcfp.analyze(model, clip, threshold=0.0)
    plan = pyramid._plan
    called = {str(n.target) for n in plan.capture.graph.nodes if n.op == "call_module"}
    modules = {id(plan.capture.get_submodule(name)) for name in called}
    traced = plan.traced.gm  # the eval-mode view's modules, which the trace calls
    assert len(called) == 3 and modules == {
        id(traced.get_submodule(path)) for path in ("a.b", "a_b", "head")}
    with torch.no_grad():
        expected = model(clip[None])
    assert torch.equal(pyramid.logits, expected[0])


def test_a_1x1_kernel_is_its_own_pooled_weight_and_the_cache_still_follows_it():
    model = _net()  # model[2] is a 1x1x1 convolution
    clip = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(2))
    analyzer = fxcfp.Analyzer(model)
    first = analyzer.analyze(clip, threshold=0.5)
    plan = first._plan
    index = next(i for i, layer in enumerate(plan.layers) if layer.weight.startswith("2."))
    weight = model[2].weight
    pooled = plan.pooled_weight(plan.layers[index])
    assert pooled.shape == (8, 8) and torch.equal(pooled, weight.mean(dim=(2, 3, 4)))
    assert pooled.data_ptr() == weight.data_ptr()  # a view: no reduction over one element
    cached = first._tensors[index].weight
    assert torch.equal(cached, pooled) and cached.data_ptr() != weight.data_ptr()
    with torch.no_grad():
        weight[:4].neg_()  # the cache is a copy: it must be read again
    second = analyzer.analyze(clip, threshold=0.5)
    assert torch.equal(second._tensors[index].weight, weight.detach().flatten(1))
    fresh = fxcfp.Analyzer(model).analyze(clip, threshold=0.5)
    assert (second.depths == fresh.depths).all()
