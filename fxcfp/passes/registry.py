"""The channel-rule registry: the look-up the channel-map pass makes for every node, and
:func:`register_channel_rule`, the public way to add a rule. It starts with
:data:`~fxcfp.passes.rule_table.DEFAULT_RULES`."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from .._errors import InvalidArgumentError, InvalidTypeError
from .rule_kinds import KINDS, pointwise
from .rule_table import DEFAULT_RULES, RuleRow
from .rules import Rule, RuleKind
from .targets import aten_op

__all__ = ["lookup_rule", "register_channel_rule"]

_FUNCTION_RULES: dict[Any, Rule] = {}
_METHOD_RULES: dict[str, Rule] = {}
_MODULE_RULES: dict[type, Rule] = {}

_KIND_HINT = (f"Hint: pass one of {sorted(KINDS)} or a function (RuleCall) -> label, e.g. "
              "fxcfp.register_channel_rule(my_op, 'pointwise')")


def register_channel_rule(target: Any, rule: RuleKind | Rule) -> None:
    """Teach fxcfp how channels flow through an op it does not know.

    Args:
        target: what the FX node calls: a function (``torch.nn.functional.gelu``, an aten
            overload such as ``torch.ops.aten.gelu.default`` or its packet
            ``torch.ops.aten.gelu``), a tensor method name (``"gelu"``), or an ``nn.Module``
            subclass (a leaf module of your own).
        rule: one of ``"pointwise"``, ``"passthrough"``, ``"shape"``, ``"reduce"`` (see
            :mod:`fxcfp.passes.rule_kinds`), or a function ``(RuleCall) -> label``.

    Raises:
        InvalidArgumentError: ``rule`` is a string that names no rule kind.
        InvalidTypeError: ``rule`` is neither a kind nor callable, or ``target`` is none of the
            above.

    Example:
        >>> import fxcfp, torch
        >>> def my_act(x):
        ...     return x * torch.sigmoid(1.702 * x)
        >>> fxcfp.register_channel_rule(my_act, "pointwise")
    """
    if isinstance(rule, str):
        if rule not in KINDS:
            raise InvalidArgumentError(
                f"fxcfp.register_channel_rule: unknown rule kind {rule!r}. {_KIND_HINT}")
        rule = KINDS[rule]
    if not callable(rule):
        raise InvalidTypeError(
            f"fxcfp.register_channel_rule: rule must be a kind name or a callable, not "
            f"{type(rule).__name__}. {_KIND_HINT}")
    if isinstance(target, str):
        _METHOD_RULES[target] = rule
    elif isinstance(target, type) and issubclass(target, nn.Module):
        _MODULE_RULES[target] = rule
    elif callable(target):
        _FUNCTION_RULES[target] = rule
    else:
        raise InvalidTypeError(
            "fxcfp.register_channel_rule: target must be a function, an aten op, a method name "
            f"or an nn.Module subclass, not {type(target).__name__}. Hint: pass what the FX "
            "node calls (node.target), e.g. torch.cumsum, 'cumsum' or torch.ops.aten.cumsum")


def lookup_rule(node: fx.Node, module: nn.Module | None = None) -> Rule | None:
    """The rule for ``node`` (``module`` is the called submodule for ``call_module`` nodes)."""
    if node.op == "call_module":
        for cls in type(module).__mro__:
            if cls in _MODULE_RULES:
                return _MODULE_RULES[cls]
        return None
    if node.op == "call_method":
        return _METHOD_RULES.get(str(node.target))
    if node.op == "call_function":
        target = node.target
        if target in _FUNCTION_RULES:
            return _FUNCTION_RULES[target]
        if isinstance(target, torch._ops.OpOverload):
            if target.overloadpacket in _FUNCTION_RULES:
                return _FUNCTION_RULES[target.overloadpacket]
            if torch.Tag.pointwise in target.tags:
                return pointwise
        return None
    return None


def _install(rows: tuple[RuleRow, ...]) -> None:
    for row in rows:
        aten = (aten_op(name) for name in row.aten)
        for target in (*row.functions, *(op for op in aten if op is not None), *row.methods,
                       *row.modules):
            register_channel_rule(target, row.rule)


_install(DEFAULT_RULES)
