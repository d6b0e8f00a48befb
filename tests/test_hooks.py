"""Hooks: the model explained as ``model(clip)`` behaves, hooks run as often as in a plain
forward, and the hooks fxcfp cannot honour refused by name (issue 9)."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

import fxcfp
from tests.models import assert_unchanged, snapshot


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(x).mean((2, 3)))


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


def _clip() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 8, 8)


def test_a_forward_hook_on_the_model_changes_what_is_explained():
    model = _net()
    boost = torch.zeros(5)
    boost[4] = 100.0  # the hook makes class 4 the prediction
    handle = model.register_forward_hook(lambda module, args, out: out + boost)
    snap = snapshot(model)
    pyramid = fxcfp.analyze(model, _clip())
    assert_unchanged(model, snap)
    expected = model(_clip()[None])[0]
    assert pyramid.target == int(expected.argmax()) == 4
    assert torch.allclose(pyramid.logits, expected, atol=1e-5)
    assert pyramid.root == "fc:4"
    handle.remove()


def test_a_pre_hook_on_the_model_rescales_the_clip_as_in_a_plain_call():
    model = _net()
    handle = model.register_forward_pre_hook(lambda module, args: (args[0] * 10.0,))
    pyramid = fxcfp.analyze(model, _clip())
    assert torch.allclose(pyramid.logits, model(_clip()[None])[0], atol=1e-5)
    handle.remove()
    plain = fxcfp.analyze(_net(), _clip() * 10.0)
    assert sorted(pyramid.graph.edges) == sorted(plain.graph.edges)


def test_a_hook_that_reshapes_the_output_is_refused():
    model = _net()
    model.register_forward_hook(lambda module, args, out: out[:, :2])
    with pytest.raises(fxcfp.UnsupportedModelError, match="forward hook .* turns its"):
        fxcfp.analyze(model, _clip())


def test_leaf_hooks_run_once_per_call_as_in_a_plain_forward():
    model = _net()
    calls: list[type] = []
    model.block.conv.register_forward_hook(lambda module, args, out: calls.append(type(out)))
    model.fc.register_forward_pre_hook(lambda module, args: calls.append(type(args[0])))
    model(_clip()[None])
    plain = len(calls)
    calls.clear()
    fxcfp.analyze(model, _clip())  # the first call traces and maps the channels too
    assert len(calls) == plain
    fxcfp.analyze(model, _clip())
    assert len(calls) == 2 * plain
    assert set(calls) == {torch.Tensor}  # never a torch.fx.Proxy


def test_a_leaf_hook_that_edits_the_output_is_part_of_the_explained_model():
    model = _net()
    model.block.conv.register_forward_hook(lambda module, args, out: out * 3.0)
    pyramid = fxcfp.analyze(model, _clip())
    assert torch.allclose(pyramid.logits, model(_clip()[None])[0], atol=1e-5)


@pytest.mark.parametrize("kind", ["forward", "pre"])
def test_a_container_hook_is_refused_by_name_and_never_sees_a_proxy(kind):
    model = _net()
    seen: list[type] = []
    if kind == "forward":
        model.block.register_forward_hook(lambda module, args, out: seen.append(type(out)))
    else:
        model.block.register_forward_pre_hook(lambda module, args: seen.append(type(args[0])))
    snap = snapshot(model)
    with pytest.raises(fxcfp.UnsupportedModelError,
                       match=r"hooks of 'block' \(Block: forward.*register the hook on a leaf"):
        fxcfp.analyze(model, _clip())
    assert fx.Proxy not in seen and seen == []
    assert_unchanged(model, snap)


def test_global_module_hooks_are_refused():
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
    try:
        with pytest.raises(fxcfp.UnsupportedModelError, match="global module hooks"):
            fxcfp.analyze(_net(), _clip())
    finally:
        handle.remove()
    assert fxcfp.analyze(_net(), _clip()).layers[0].name == "fc"


def test_hooks_on_an_export_path_model_are_refused_by_name():
    from tests.test_trace import TwoPathways

    model = TwoPathways()
    model.slow.register_forward_hook(lambda *args: None)
    with pytest.raises(fxcfp.UnsupportedModelError, match="'slow' .*torch.export inlines"):
        fxcfp.Analyzer(model, trace="export").analyze(
            [torch.randn(3, 2, 4, 4), torch.randn(3, 4, 4, 4)])


def test_a_hook_of_a_list_input_model_runs_once_per_call_on_the_fx_path():
    from tests.test_trace import TwoPathways

    model = TwoPathways()
    seen: list[tuple[int, ...]] = []
    handle = model.slow.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    try:
        clips = [torch.randn(3, 2, 4, 4), torch.randn(3, 4, 4, 4)]
        analyzer = fxcfp.Analyzer(model)
        first = analyzer.analyze(clips, 0, threshold=0.0)
        second = analyzer.analyze(clips, 0, threshold=0.0)
        assert first.trace_method == "fx"
        assert seen == [(1, 8, 2, 4, 4)] * 2  # real tensors, once per call
        assert (first.depths == second.depths).all()
    finally:
        handle.remove()


def test_hooks_of_a_model_that_needs_torch_export_never_see_its_fake_tensors():
    from tests.test_trace import ShapeBranch

    model = ShapeBranch()  # symbolic tracing fails on its shape branch; torch.export does not
    seen: list[type] = []
    model.conv.register_forward_hook(lambda module, args, out: seen.append(type(out)))
    with pytest.raises(fxcfp.UnsupportedModelError, match="'conv' .*torch.export inlines"):
        fxcfp.analyze(model, torch.randn(3, 4, 6, 6))
    assert seen == []


def test_a_container_hook_added_after_a_first_call_is_refused_on_the_next():
    # the per-call walk of the module tree is what notices a hook, not the first call's trace
    model = _net()
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(_clip())
    handle = model.block.register_forward_hook(lambda *args: None)
    try:
        with pytest.raises(fxcfp.UnsupportedModelError, match=r"hooks of 'block' \(Block"):
            analyzer.analyze(_clip())
    finally:
        handle.remove()
    assert analyzer.analyze(_clip()).layers[0].name == "fc"


def test_the_tree_walk_lists_modules_and_tensors_as_modules_does_and_sees_only_inner_hooks():
    from fxcfp._view import tree_state

    model = _net()
    model.shared = model.block.conv  # a module with two parents counts once
    ids, hooked = tree_state(model)
    expected = [i for m in model.modules()
                for i in (id(m), *map(id, m._parameters.values()), *map(id, m._buffers.values()))]
    assert list(ids) == expected and not hooked
    model.register_forward_hook(lambda *args: None)  # the model's own hooks run around the graph
    assert not tree_state(model)[1]
    model.fc.register_forward_pre_hook(lambda *args: None)
    assert tree_state(model)[1]
    before = tree_state(model)[0]
    model.fc.weight = nn.Parameter(model.fc.weight.detach().clone())
    assert tree_state(model)[0] != before  # a replaced parameter rebuilds the view


def test_the_compiled_tree_walk_returns_the_python_walks_tuple():
    from fxcfp import _fused
    from fxcfp._view import _tree_state

    extension = _fused.wait()
    if extension is None:
        pytest.skip(f"the C++ extension cannot be built here: {_fused._state['error']}")
    model = _net()
    model.shared = model.block.conv  # one module, two parents
    model.empty = None  # a child slot holding nothing
    model.fc.register_parameter("unset", None)  # a parameter slot holding nothing
    model.register_buffer("steps", torch.zeros(()))
    assert extension.tree_state(model) == _tree_state(model) and not _tree_state(model)[1]
    handle = model.block.conv.register_forward_hook(lambda *args: None)
    assert extension.tree_state(model) == _tree_state(model) and _tree_state(model)[1]
    handle.remove()
    model.fc.weight = nn.Parameter(model.fc.weight.detach().clone())
    assert extension.tree_state(model) == _tree_state(model)
    odd = nn.Linear(2, 2)
    object.__delattr__(odd, "_buffers")  # not laid out as nn.Module lays it out
    assert extension.tree_state(odd) is None
