"""The channel-rule contract: what a rule is given (:class:`RuleCall`) and what it answers.

A rule answers one question for one op: given the channel labels of the op's inputs (see
:mod:`fxcfp.passes.labels`), which producer channels reach each element of its output? It returns
a label tensor for a tensor output, a tuple of them for a tuple output, ``None`` where no
producer channel reaches the output. A rule that recognises its op but cannot map this use of it
raises :class:`RuleError`.

The rule kinds live in :mod:`~fxcfp.passes.rule_kinds`, the table of default rules in
:mod:`~fxcfp.passes.rule_table`, and the look-up with the public
:func:`~fxcfp.register_channel_rule` in :mod:`~fxcfp.passes.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import fx

from .._errors import NotExplainableError, RuleError

__all__ = ["NotExplainableError", "Rule", "RuleCall", "RuleError", "RuleKind"]

RuleKind = Literal["pointwise", "passthrough", "shape", "reduce"]


@dataclass(frozen=True)
class RuleCall:
    """Everything a rule may look at for one node.

    Attributes:
        node: the FX node.
        args: the node's positional arguments as concrete values (tensors, ints, lists...).
        kwargs: its keyword arguments as concrete values.
        labels: one entry per positional argument: a label tensor for a tensor that carries
            producer channels, ``None`` for a constant or non-tensor, a tuple for a sequence.
        kwarg_labels: the same for keyword arguments.
        output: the node's concrete output.
        apply: calls the node's op on substitute arguments (used by ``"shape"`` rules).
    """

    node: fx.Node
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    labels: tuple[Any, ...]
    kwarg_labels: dict[str, Any]
    output: Any
    apply: Callable[..., Any]


Rule = Callable[[RuleCall], Any]
"""A rule: ``(RuleCall) -> label`` (see the module docstring)."""
