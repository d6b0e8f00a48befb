"""An eval-mode view of the caller's model: what fxcfp traces and runs instead of the model itself.

The analysis runs the model in eval mode. Flipping the caller's ``training`` flags for the length
of a call is not safe: two threads analysing one train-mode model interleave their save and
restore, leave the flags wrong and run BatchNorm in training mode (its running statistics
updated). A *view* is a parallel module tree that shares every parameter, buffer and hook with
the model, but owns its ``training`` flags (all ``False``) and its attribute dictionaries. So:

- eval mode without touching the caller's flags, for any number of threads at once;
- whatever a tracer or a forward *assigns* to a module (torch.export swaps in fake parameters
  while it traces, ``weight_norm``'s and pruning's pre-hooks set ``module.weight``, a forward that
  does ``self.count = self.count + 1``) lands on the view, never on the model;
- in-place updates of the shared tensors by the caller (an optimizer step, ``load_state_dict``)
  are seen at once, so an Analyzer keeps explaining the model as it is trained.

Hooks are shared, not copied: a hook registered on the model later is honoured too.
"""

from __future__ import annotations

import types
from typing import cast

from torch import nn

from . import _fused

__all__ = ["eval_view", "tree_state", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module ``torch.compile`` wrapped (its ``forward`` is bound to the original tree)."""
    inner = model.__dict__.get("_modules", {}).get("_orig_mod")
    if inner is not None and type(model).__name__ == "OptimizedModule":
        return unwrap(inner)
    return model


def eval_view(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree in eval mode that shares its tensors and hooks.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
        >>> view = eval_view(model)
        >>> view[0].weight is model[0].weight, view.training, model.training
        (True, False, True)
    """
    memo: dict[int, nn.Module] = {}

    def copy(module: nn.Module) -> nn.Module:
        if id(module) in memo:  # a module used twice stays one module
            return memo[id(module)]
        view = object.__new__(type(module))
        memo[id(module)] = view
        state = dict(module.__dict__)
        state["training"] = False
        # own dictionaries, shared tensors: assignments stay on the view
        state["_parameters"] = type(module._parameters)(module._parameters)
        state["_buffers"] = type(module._buffers)(module._buffers)
        state["_non_persistent_buffers_set"] = set(module._non_persistent_buffers_set)
        state["_modules"] = type(module._modules)(
            (name, None if child is None else copy(child))
            for name, child in module._modules.items())
        for key, value in state.items():
            # a method bound to the original (a forward assigned in __init__) runs on the view
            if isinstance(value, types.MethodType) and value.__self__ is module:
                state[key] = types.MethodType(value.__func__, view)
        view.__dict__.update(state)
        return view

    return copy(model)


def tree_state(model: nn.Module) -> tuple[tuple[int, ...], bool]:
    """Identities of the module tree and of its tensors, and whether a module below the root has
    a forward (pre-)hook. The identities change when a module, a parameter or a buffer is
    replaced (not when one is updated in place), so a view can be rebuilt.

    One walk of the tree for both, as plain loops over the modules' dictionaries: this runs on
    every call, and ``named_modules`` (a recursive generator building every module's dotted
    name) cost more than the back-step on a 70-layer image CNN. Modules shared by several
    parents count once, as in ``modules()``. Where the compiled extension is loaded
    (:mod:`fxcfp._fused`) the walk runs in C++ and returns the same tuple.
    """
    extension = _fused.loaded()
    if extension is not None:
        found = extension.tree_state(model)
        if found is not None:
            return cast(tuple[tuple[int, ...], bool], found)
    return _tree_state(model)


def _tree_state(model: nn.Module) -> tuple[tuple[int, ...], bool]:
    """:func:`tree_state` in Python."""
    ids: list[int] = []
    seen: set[int] = set()
    hooked = False
    stack = [model]
    # bound methods and the empty-dictionary tests halve the walk's time (0.63 ms for the 359
    # modules of timm's regnety_002, against 1.2 ms)
    append, extend, see, pop, push = ids.append, ids.extend, seen.add, stack.pop, stack.extend
    while stack:
        module = pop()
        key = id(module)
        if key in seen:
            continue
        see(key)
        append(key)
        if module._parameters:
            extend(map(id, module._parameters.values()))
        if module._buffers:
            extend(map(id, module._buffers.values()))
        if module._forward_hooks or module._forward_pre_hooks:
            hooked = hooked or module is not model
        if module._modules:
            # reversed: the walk visits children in their order, as modules() does
            push(reversed([child for child in module._modules.values() if child is not None]))
    return tuple(ids), hooked
