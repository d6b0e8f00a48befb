"""What an FX node calls: aten ops looked up by name, and the words an error uses for an op."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

__all__ = ["ModulesByPath", "aten_op", "describe_op"]


def aten_op(name: str, overload: str | None = None) -> Any:
    """``torch.ops.aten.<name>`` (the packet) or its ``overload``; ``None`` where this torch
    build lacks either, so tables can name ops of newer releases."""
    try:
        packet = getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return None
    return packet if overload is None else getattr(packet, overload, None)


class ModulesByPath:
    """A graph module's modules by path, from one walk of its tree: ``get_submodule`` (and
    torch.fx's own lookups) do a ``hasattr`` and a ``getattr`` per dot of the path, most of a
    small layer's bookkeeping in a pass over every node."""

    def __init__(self, gm: nn.Module) -> None:
        self._gm = gm
        self._found = dict(gm.named_modules())

    def get(self, path: Any) -> nn.Module | None:
        """The module at ``path``, or ``None`` where the walk named none there."""
        return self._found.get(str(path))

    def __call__(self, path: Any) -> nn.Module:
        """The module at ``path``; a path the walk did not name (a shared module's second
        one) is looked up by ``get_submodule``."""
        module = self._found.get(str(path))
        return module if module is not None else self._gm.get_submodule(str(path))


def describe_op(node: fx.Node, gm: nn.Module) -> str:
    """The op of ``node`` as a user reads it: ``module 'layer1.0' (BasicBlock)``,
    ``method Tensor.view``, ``function torch.nn.functional.relu``."""
    if node.op == "call_module":
        return f"module {node.target!r} ({type(gm.get_submodule(str(node.target))).__name__})"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    target = node.target
    return f"function {getattr(target, '__module__', '')}.{getattr(target, '__name__', target)}"
