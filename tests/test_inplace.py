"""In-place edits: followed where they happen, refused by name where they cannot be (issue 9)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

import fxcfp
from fxcfp.passes.inplace import INPLACE, redirect_inplace
from tests.models import assert_unchanged, snapshot

OPS = ("add", "iadd", "mul", "relu", "functional_relu", "module_relu", "add_to_y", "conv")


class Edits(nn.Module):
    """Three branches and a chain of edits of ``z``, written in place (results discarded) or
    out of place; both forms compute the same values."""

    def __init__(self, ops: tuple[str, ...], inplace: tuple[bool, ...]) -> None:
        super().__init__()
        self.ops, self.inplace = ops, inplace
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 3, padding=1)
        self.g = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, 4, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, y, g = self.a(x), self.b(x), torch.sigmoid(self.g(x))
        for op, inplace in zip(self.ops, self.inplace):
            if op == "add":
                if inplace:
                    z.add_(y)
                else:
                    z = z + y
            elif op == "iadd":
                if inplace:
                    z += y
                else:
                    z = z + y
            elif op == "mul":
                if inplace:
                    z.mul_(g)
                else:
                    z = z * g
            elif op == "relu":
                if inplace:
                    z.relu_()
                else:
                    z = z.relu()
            elif op == "functional_relu":
                if inplace:
                    F.relu(z, inplace=True)
                else:
                    z = F.relu(z)
            elif op == "module_relu":
                if inplace:
                    self.act(z)
                else:
                    z = F.relu(z)
            elif op == "add_to_y":
                if inplace:
                    y.add_(z)
                else:
                    y = y + z
            else:
                z = self.head(z)
        return self.fc(torch.cat([z, y], 1).mean((2, 3)))


def _pair(ops: tuple[str, ...], inplace: tuple[bool, ...]) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    edited = Edits(ops, inplace)
    plain = Edits(ops, (False,) * len(ops))
    plain.load_state_dict(edited.state_dict())
    return edited, plain


def _same_pyramid(a: fxcfp.Pyramid, b: fxcfp.Pyramid) -> None:
    assert a.target == b.target
    assert a.probability == pytest.approx(b.probability, abs=1e-6)
    assert sorted(a.graph.edges) == sorted(b.graph.edges)
    for u, v, score in a.graph.edges(data="score"):
        assert b.graph.edges[u, v]["score"] == pytest.approx(score, abs=1e-5)
    for level in a.layers:
        if level.depth < 10:
            assert torch.allclose(a.layer_map(level.name), b.layer_map(level.name), atol=1e-5)


@settings(deadline=None, max_examples=15)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.booleans()), min_size=1, max_size=5),
       st.sampled_from([0.0, 0.5]))
def test_random_in_place_edits_explain_like_their_out_of_place_twin(steps, threshold):
    ops, inplace = tuple(s[0] for s in steps), tuple(s[1] for s in steps)
    edited, plain = _pair(ops, inplace)
    snap = snapshot(edited)
    clip = torch.randn(3, 6, 6)
    kept = clip.clone()
    got = fxcfp.analyze(edited, clip, 1, threshold=threshold)
    want = fxcfp.analyze(plain, clip, 1, threshold=threshold)
    _same_pyramid(got, want)
    assert torch.equal(clip, kept)
    assert_unchanged(edited, snap)
    assert torch.allclose(got.logits, edited.eval()(kept[None].clone())[0], atol=1e-6)


def test_a_discarded_add_links_the_added_branch():
    edited, _ = _pair(("add",), (True,))
    pyramid = fxcfp.analyze(edited, torch.randn(3, 6, 6), 0, threshold=0.0)
    assert {level.name for level in pyramid.layers} == {"fc", "a", "b"}


def test_redirect_leaves_what_the_graph_computes_unchanged():
    edited, _ = _pair(("add", "relu", "mul", "add_to_y"), (True,) * 4)
    gm = fx.symbolic_trace(edited)
    x = torch.randn(2, 3, 6, 6)
    want = gm(x.clone())
    redirect_inplace(gm)
    assert torch.equal(gm(x.clone()), want)
    marked = [n.name for n in gm.graph.nodes if n.meta.get(INPLACE)]
    assert marked == ["add_", "relu_", "mul_", "add__1"]


class EditsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(2).add_(1)  # the model edits its input: once per call
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_a_model_that_edits_its_input_edits_a_copy_once_per_call():
    torch.manual_seed(0)
    model = EditsInput()
    clip = torch.randn(1, 3, 8, 8)
    kept = clip.clone()
    first = fxcfp.analyze(model, clip)
    assert torch.equal(clip, kept)  # the caller's clip is never changed
    assert torch.allclose(first.logits, model(kept.clone())[0], atol=1e-6)  # one model(clip)
    second = fxcfp.analyze(model, clip)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.layer_map("conv"), second.layer_map("conv"))
    assert torch.equal(first.layer_map("conv"), first.layer_map("conv"))  # maps re-run a copy
    assert torch.equal(clip, kept)


class ViewEdit(nn.Module):
    def __init__(self, alias: str) -> None:
        super().__init__()
        self.alias = alias
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, y = self.a(x), self.b(x)
        if self.alias == "view":
            z[:, :2].add_(y[:, :2])  # edits z through a view of it
            out = z
        else:
            out = self.drop(z)  # in eval mode the same tensor as z
            z.add_(y)
        return self.fc(out.mean((2, 3)))


@pytest.mark.parametrize("alias", ["view", "module"])
def test_an_edit_through_an_alias_is_refused_by_name(alias):
    model = ViewEdit(alias)
    snap = snapshot(model)
    with pytest.raises(fxcfp.UnsupportedOpError, match=r"edits a tensor in place .* write the "
                                                        r"edit out of place"):
        fxcfp.analyze(model, torch.randn(3, 8, 8))
    assert_unchanged(model, snap)


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x[:, :, 1:]).relu().mean((2, 3)))


def _readers(model: nn.Module):
    from fxcfp._capture import input_readers

    return input_readers(fxcfp.analyze(model, torch.randn(3, 8, 8))._plan.capture)


def test_the_capture_copies_the_clip_only_where_a_run_may_edit_it():
    torch.manual_seed(0)
    plain = Plain()
    # a view of the clip, read by a convolution (the eval-mode view's, which shares its hooks)
    assert [type(m) for m in _readers(plain)] == [nn.Conv2d]
    assert _readers(EditsInput()) is None  # an in-place edit of the clip
    model = Plain()
    model.conv.register_forward_pre_hook(lambda module, args: args[0].mul_(2))
    clip = torch.randn(3, 8, 8)
    kept = clip.clone()
    first = fxcfp.analyze(model, clip)
    # the hook edits the capture's copy, never the clip the pyramid keeps for its maps
    assert torch.equal(first._inputs[0][0], kept) and torch.equal(clip, kept)
    second = fxcfp.analyze(model, clip)
    assert torch.equal(first.logits, second.logits)
    assert torch.equal(first.layer_map("conv"), second.layer_map("conv"))


def test_a_leaf_module_of_the_users_reading_the_clip_makes_the_capture_copy_it():
    class Scale(nn.Module):  # kept opaque as a leaf: fxcfp cannot see what its forward does
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul_(2)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = Scale()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.scale(x)).mean((2, 3)))

    from fxcfp._capture import input_readers

    fxcfp.register_channel_rule(Scale, "pointwise")  # a class of this test's own
    torch.manual_seed(0)
    clip = torch.randn(3, 8, 8)
    pyramid = fxcfp.Analyzer(Net(), leaf_modules=(Scale,)).analyze(clip)
    assert input_readers(pyramid._plan.capture) is None
    assert torch.equal(pyramid._inputs[0][0], clip)
