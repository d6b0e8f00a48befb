"""Follow in-place edits: later readers of an edited tensor read the edit's node.

``z.add_(y)`` whose result is discarded leaves the graph's later users of ``z`` pointing at the
node made *before* the edit, although at run time they read the edited tensor. Every analysis
that walks the graph (channel labels, the pooled capture, the maps) would then miss ``y``'s
channels. An in-place op returns the very tensor it edits, so pointing those later users at the
edit's node changes nothing the graph computes, and every pass sees the edit where it happens.

Edits through another alias (a view of the tensor, or a module that returns its input, such as
``Dropout`` in eval mode) cannot be followed by a graph rewrite; the channel-map pass checks for
them on real values and refuses them by name.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from .targets import ModulesByPath

__all__ = ["INPLACE", "is_inplace", "redirect_inplace"]

INPLACE = "fxcfp.inplace"

_AUGMENTED = {operator.iadd, operator.isub, operator.imul, operator.itruediv,
              operator.ifloordiv, operator.imod, operator.ipow, operator.iand, operator.ior,
              operator.ixor, operator.ilshift, operator.irshift, operator.imatmul}
# ops that give sizes and numbers, not tensors: `n += 1` on them rebinds, it edits nothing
_SIZES = {"size", "dim", "numel", "item", "tolist", "__len__", "stride"}


def _named_inplace(target: Any) -> bool:
    name = getattr(target, "__name__", "")
    if not name.endswith("_") or name.startswith("_"):
        return False
    return any(getattr(namespace, name, None) is target
               for namespace in (torch, F, torch.Tensor, torch.special))


def _inplace_argument(target: Any, node: fx.Node,
                      signatures: dict[int, tuple[Any, inspect.Signature | None]]) -> bool:
    """``F.relu(x, inplace=True)`` and the like, by keyword or position. ``signatures``: the
    pass's own cache by target (a graph calls a few functions hundreds of times, and
    ``inspect.signature`` per node cost a tenth of a first call on a 70-layer image CNN); it
    keeps each target beside its entry, so an id is never reused while the cache lives."""
    if node.kwargs.get("inplace") is True:
        return True
    entry = signatures.get(id(target))
    if entry is None:
        try:
            found: inspect.Signature | None = inspect.signature(target)
        except (TypeError, ValueError):
            found = None
        entry = signatures[id(target)] = (target, found)
    signature = entry[1]
    if signature is None:
        return False
    try:
        bound = signature.bind_partial(*node.args, **node.kwargs)
    except TypeError:
        return False
    return bound.arguments.get("inplace") is True


def _sizes(node: Any) -> bool:
    if not isinstance(node, fx.Node):
        return True
    if node.op == "call_method" and node.target in _SIZES:
        return True
    return node.op == "call_function" and node.target in (getattr, len)


def is_inplace(node: fx.Node, gm: fx.GraphModule,
               signatures: dict[int, tuple[Any, inspect.Signature | None]] | None = None,
               modules: ModulesByPath | None = None) -> bool:
    """Does ``node`` edit its first argument in place (and return it)? ``signatures``: a cache
    of the functions' signatures, ``modules`` the graph's modules by path, for a pass over many
    nodes."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False
    if node.op == "call_method":
        method = str(node.target)  # a call_method's target is the method's name
        return method.endswith("_") and not method.startswith("_")
    if node.op == "call_module":
        module = (modules(node.target) if modules is not None
                  else gm.get_submodule(str(node.target)))
        return getattr(module, "inplace", False) is True
    if node.op != "call_function":
        return False
    target = node.target
    if target in _AUGMENTED:
        return not _sizes(node.args[0])
    if isinstance(target, torch._ops.OpOverload):
        arguments = target._schema.arguments
        info = arguments[0].alias_info if arguments else None
        return bool(info is not None and info.is_write and not arguments[0].kwarg_only)
    if _named_inplace(target):
        return True
    return callable(target) and _inplace_argument(target, node, {} if signatures is None
                                                  else signatures)


def redirect_inplace(gm: fx.GraphModule) -> fx.GraphModule:
    """Point every use of a tensor that comes after an in-place edit of it at the edit's node,
    and mark the edit (``node.meta[INPLACE]``) for the alias check of the channel-map pass."""
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    changed = False
    signatures: dict[int, tuple[Any, inspect.Signature | None]] = {}
    modules = ModulesByPath(gm)
    for node in list(gm.graph.nodes):
        if not is_inplace(node, gm, signatures, modules):
            continue
        node.meta[INPLACE] = True
        edited = node.args[0]
        position = order[node]
        later = [user for user in edited.users if order.get(user, -1) > position]
        for user in later:
            user.replace_input_with(edited, node)
            changed = True
    if changed:
        gm.recompile()
    return gm
