"""What an FX node calls: aten ops looked up by name, and the words an error uses for an op."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

__all__ = ["aten_op", "describe_op"]


def aten_op(name: str, overload: str | None = None) -> Any:
    """``torch.ops.aten.<name>`` (the packet) or its ``overload``; ``None`` where this torch
    build lacks either, so tables can name ops of newer releases."""
    try:
        packet = getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return None
    return packet if overload is None else getattr(packet, overload, None)


def describe_op(node: fx.Node, gm: fx.GraphModule) -> str:
    """The op of ``node`` as a user reads it: ``module 'layer1.0' (BasicBlock)``,
    ``method Tensor.view``, ``function torch.nn.functional.relu``."""
    if node.op == "call_module":
        return f"module {node.target!r} ({type(gm.get_submodule(str(node.target))).__name__})"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    target = node.target
    return f"function {getattr(target, '__module__', '')}.{getattr(target, '__name__', target)}"
