"""Tracing: torch.fx first, torch.export where fx cannot follow, a clear error where neither can."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fxcfp


class ShapeBranch(nn.Module):
    """Python control flow on a shape: symbolic tracing fails, torch.export specialises it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        if x.shape[2] > 2:
            x = x[:, :, 1:]
        return self.fc(x.mean((2, 3, 4)))


class TwoPathways(nn.Module):
    """Takes a list [slow, fast] like pytorchvideo's SlowFast, with a lateral connection."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.Conv3d(3, 8, 1)
        self.fast = nn.Conv3d(3, 2, 1)
        self.lateral = nn.Conv3d(2, 2, (2, 1, 1), stride=(2, 1, 1))
        self.head = nn.Conv3d(10, 8, 1)
        self.fc = nn.Linear(8 + 2, 3)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        if not isinstance(x, list):
            raise TypeError("expects a list of pathways")
        slow, fast = torch.relu(self.slow(x[0])), torch.relu(self.fast(x[1]))
        slow = torch.relu(self.head(torch.cat([slow, self.lateral(fast)], 1)))
        return self.fc(torch.cat([slow.mean((2, 3, 4)), fast.mean((2, 3, 4))], 1))


class DataBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:  # depends on the values: neither tracer can follow
            y = -y
        return self.fc(y.mean((2, 3, 4)))


def test_export_fallback_keeps_module_names():
    torch.manual_seed(0)
    model = ShapeBranch()
    analyzer = fxcfp.Analyzer(model)
    pyramid = analyzer.analyze(torch.randn(3, 4, 6, 6), 1, threshold=0.0)
    assert next(iter(analyzer._plans.values())).traced.method == "export"
    assert [level.name for level in pyramid.layers] == ["fc", "conv"]
    assert {pyramid.graph.nodes[n]["layer"] for n in pyramid.graph} == {"fc", "conv", "input"}


def test_fx_and_export_agree():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv3d(6, 6, 3, groups=3),
                          nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 5))
    clip = torch.randn(3, 4, 8, 8)
    by_fx = fxcfp.Analyzer(model, trace="fx").analyze(clip, 2, threshold=0.3)
    by_export = fxcfp.Analyzer(model, trace="export").analyze(clip, 2, threshold=0.3)
    assert set(by_fx.graph.edges) == set(by_export.graph.edges)
    for u, v, score in by_fx.graph.edges(data="score"):
        assert by_export.graph.edges[u, v]["score"] == pytest.approx(score, abs=1e-5)


def test_list_input_model_gives_one_leaf_set_per_pathway():
    torch.manual_seed(0)
    model = TwoPathways()
    slow, fast = torch.randn(3, 2, 4, 4), torch.randn(3, 4, 4, 4)
    pyramid = fxcfp.analyze(model, [slow, fast], 0, threshold=0.0)
    leaves = {n.split(":")[0] for n in pyramid.graph if pyramid.graph.out_degree(n) == 0}
    assert leaves == {"input0", "input1"}
    # the lateral connection: the slow pathway's head depends on the fast pathway's kernels
    head = [n for n in pyramid.graph if n.startswith("head:")]
    reached = {pyramid.graph.nodes[c]["layer"] for n in head for c in pyramid.graph.successors(n)}
    assert reached == {"slow", "lateral"}
    pathways = {level.name: level.pathway for level in pyramid.layers}
    assert pathways["slow"] == 0 and pathways["fast"] == 1 and pathways["lateral"] == 1
    assert pyramid.layer_map("lateral", upsample=True).shape == (4, 4, 4)
    assert pyramid.layer_map("slow", upsample=True).shape == (2, 4, 4)


def test_untraceable_model_names_the_module_and_the_fix():
    with pytest.raises(fxcfp.UntraceableModelError) as info:
        fxcfp.analyze(DataBranch(), torch.randn(3, 2, 4, 4))
    message = str(info.value)
    assert "torch.fx symbolic tracing failed in module '<root>'" in message
    assert "torch.export failed" in message
    assert "leaf_modules" in message and "concrete_args" in message


def test_export_fallback_is_remembered_per_model(monkeypatch):
    import fxcfp._analyzer as analyzer_module

    calls = []
    real = analyzer_module.trace_model

    def counting(*args, **kwargs):
        calls.append(kwargs.get("method"))
        return real(*args, **kwargs)

    monkeypatch.setattr(analyzer_module, "trace_model", counting)
    torch.manual_seed(0)
    analyzer = fxcfp.Analyzer(ShapeBranch())
    for _ in range(3):
        analyzer.analyze(torch.randn(3, 4, 6, 6), 1)
    assert len(calls) == 1  # traced (fx failed, export) once, then reused


class Attributes(nn.Module):
    """Parameters and buffers read by attribute inside a traced forward: a shared parameter
    under two names, a buffer, a plain tensor attribute (a constant to torch.fx), and a
    submodule's buffers handed to a function as arguments (timm's BatchNormAct2d)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.scale = nn.Parameter(torch.ones(4))
        self.alias = self.scale
        self.register_buffer("shift", torch.zeros(4))
        self.plain = torch.full((4,), 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x) * self.alias[:, None, None] + self.shift[:, None, None]
        norm = self.norm
        y = nn.functional.batch_norm(y, norm.running_mean, norm.running_var, norm.weight)
        return (y * self.plain[:, None, None]).mean((2, 3))


def test_the_tracer_names_attributes_as_torch_fx_does():
    from torch import fx

    from fxcfp._trace import _Tracer

    # two models: a trace stores the constants it meets on its root, numbered per root
    ours = _Tracer(()).trace(Attributes())
    theirs = fx.Tracer().trace(Attributes())
    assert str(ours) == str(theirs)
    targets = {str(n.target) for n in ours.nodes if n.op == "get_attr"}
    assert "scale" in targets and "alias" not in targets and "norm.running_var" in targets


def test_the_traced_graph_writes_its_code_only_when_it_is_read_or_run():
    from torch.fx._lazy_graph_module import _LazyGraphModule

    from fxcfp._trace import trace_model

    model = Attributes().eval()
    x = torch.randn(2, 3, 5, 5)
    traced = trace_model(model, [x])
    gm = traced.gm
    assert traced.method == "fx" and isinstance(gm, _LazyGraphModule)
    assert gm._needs_recompile()  # nothing generated by the trace
    with torch.no_grad():
        assert torch.equal(gm(x), model(x))  # generated on the call, the model's own numbers
    assert not gm._needs_recompile()
    assert "batch_norm" in gm.code
