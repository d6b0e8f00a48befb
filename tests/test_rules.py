"""The channel rules: the default table as data, the registry, the rule kinds, and the errors of
fxcfp.register_channel_rule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import fxcfp
from fxcfp.passes import registry
from fxcfp.passes.labels import NONE, new_label
from fxcfp.passes.rule_kinds import KINDS, passthrough, pointwise, reduce, shape
from fxcfp.passes.rule_table import DEFAULT_RULES
from fxcfp.passes.rules import RuleCall, RuleError
from fxcfp.passes.targets import aten_op


def _call(fn, *args, labels, **kwargs) -> RuleCall:
    graph = fx.Graph()
    node = graph.call_function(fn, ())
    return RuleCall(node, args, kwargs, labels, {}, fn(*args, **kwargs), fn)


def test_every_row_of_the_table_is_installed_with_its_rule() -> None:
    for row in DEFAULT_RULES:
        rule = KINDS[row.rule] if isinstance(row.rule, str) else row.rule
        for target in row.functions:
            assert registry._FUNCTION_RULES[target] is rule, target
        for name in row.aten:
            op = aten_op(name)
            if op is not None:  # a name this torch build lacks is skipped, not an error
                assert registry._FUNCTION_RULES[op] is rule, name
        for name in row.methods:
            assert registry._METHOD_RULES[name] is rule, name
        for cls in row.modules:
            assert registry._MODULE_RULES[cls] is rule, cls


def test_no_op_is_named_by_two_rows() -> None:
    seen: dict[object, int] = {}
    for index, row in enumerate(DEFAULT_RULES):
        for target in (*row.functions, *(f"aten.{a}" for a in row.aten),
                       *(f"method.{m}" for m in row.methods), *row.modules):
            assert target not in seen, f"{target} in rows {seen[target]} and {index}"
            seen[target] = index


def test_lookup_finds_subclasses_overloads_and_tagged_pointwise_aten_ops() -> None:
    graph = fx.Graph()
    x = graph.placeholder("x")
    pool = nn.MaxPool3d(2)  # registered through its base class _MaxPoolNd
    module_node = graph.call_module("pool", (x,))
    assert registry.lookup_rule(module_node, pool) is KINDS["passthrough"]
    overload = graph.call_function(torch.ops.aten.cat.default, ([x],))
    assert registry.lookup_rule(overload) is KINDS["shape"]  # found through its packet
    # no row names aten.gelu: its pointwise tag is the rule
    assert registry.lookup_rule(graph.call_function(torch.ops.aten.gelu.default, (x,))) is pointwise
    assert registry.lookup_rule(graph.call_function(torch.cumsum, (x, 1))) is None
    assert registry.lookup_rule(graph.call_method("cumsum", (x, 1))) is None


def test_aten_op_answers_none_for_an_op_this_build_lacks() -> None:
    assert aten_op("cat") is torch.ops.aten.cat
    assert aten_op("conv2d", "default") is torch.ops.aten.conv2d.default
    assert aten_op("no_such_op_fxcfp") is None
    assert aten_op("cat", "no_such_overload") is None


def test_register_refuses_unknown_kinds_with_the_call_and_the_fix() -> None:
    with pytest.raises(fxcfp.InvalidArgumentError,
                       match=r"fxcfp.register_channel_rule: unknown rule kind 'identity'\. Hint: "
                             r"pass one of \['passthrough', 'pointwise', 'reduce', 'shape'\]"):
        fxcfp.register_channel_rule(torch.cumsum, "identity")
    # still a ValueError, for code that caught one before
    with pytest.raises(ValueError):
        fxcfp.register_channel_rule(torch.cumsum, "identity")
    assert torch.cumsum not in registry._FUNCTION_RULES


def test_register_refuses_what_is_neither_a_rule_nor_a_target() -> None:
    with pytest.raises(fxcfp.InvalidTypeError,
                       match=r"register_channel_rule: rule must be a kind name or a callable, "
                             r"not int\. Hint"):
        fxcfp.register_channel_rule(torch.cumsum, 3)  # type: ignore[arg-type]
    with pytest.raises(fxcfp.InvalidTypeError,
                       match=r"target must be a function.*not int\. Hint: pass what the FX node "
                             r"calls \(node\.target\)"):
        fxcfp.register_channel_rule(3, "pointwise")
    assert issubclass(fxcfp.InvalidTypeError, TypeError)


def test_pointwise_unites_broadcast_labels() -> None:
    x, bias = torch.randn(1, 2, 3), torch.randn(1, 1, 3)
    label_x = new_label(torch.tensor([0, 1]), 3, 1)
    label_b = new_label(torch.tensor([5, 6, 7]), 3, 2)
    out = pointwise(_call(torch.add, x, bias, labels=(label_x, label_b)))
    assert out.shape[:3] == (1, 2, 3)
    assert set(out[0, 1, 2].tolist()) - {NONE} == {1, 7}


def test_reduce_over_a_labelled_dim_unites_its_labels() -> None:
    x = torch.randn(1, 3, 4)
    label = new_label(torch.tensor([4, 5, 6]), 3, 1)
    out = reduce(_call(torch.sum, x, 1, labels=(label, None)))
    assert out.shape[:-1] == (1, 1)
    assert sorted(out.flatten().tolist()) == [4, 5, 6]
    kept = reduce(_call(torch.sum, x, 2, labels=(label, None)))  # over an unlabelled dim
    assert kept.flatten().tolist() == [4, 5, 6]


def test_shape_runs_the_op_on_the_labels() -> None:
    x = torch.randn(1, 4, 2)
    label = new_label(torch.tensor([10, 11, 12, 13]), 3, 1)
    out = shape(_call(torch.flip, x, (1,), labels=(label, None)))
    assert out[0, :, 0, 0].tolist() == [13, 12, 11, 10]


def test_passthrough_refuses_a_change_of_the_channel_dim() -> None:
    x = torch.randn(1, 4, 6)
    label = new_label(torch.arange(4), 3, 1)
    assert passthrough(_call(F.avg_pool1d, x, 2, labels=(label, None))) is label
    with pytest.raises(RuleError, match=r"changes dimension 1 \(4 -> 2\)"):
        passthrough(_call(lambda t: t[:, :2], x, labels=(label,)))
