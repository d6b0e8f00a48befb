"""The capture stage (:mod:`fxcfp._capture`) and the package's import graph."""

from __future__ import annotations

import ast
from pathlib import Path

import torch
from torch import nn

import fxcfp
from fxcfp._capture import record
from tests.models import make_resnet3d

PACKAGE = Path(fxcfp.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, everywhere: bool) -> set[str]:
    """The fxcfp modules ``path`` imports: at import time (module level, outside
    ``if TYPE_CHECKING``), or with ``everywhere`` also inside functions."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: never run
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and not everywhere:
                continue
            if isinstance(child, ast.ImportFrom):
                base = package
                for _ in range(child.level - 1):
                    base = base.rpartition(".")[0]
                module = (f"{base}.{child.module}" if child.module else base) if child.level \
                    else (child.module or "")
                if module.startswith("fxcfp"):
                    found.add(module)
                    # ``from . import _fused`` imports a submodule
                    found.update(f"{module}.{a.name}" for a in child.names)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("fxcfp"))
            visit(child, top)

    visit(tree, True)
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def _graph(*, everywhere: bool) -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        # a package imports its submodules to re-export them; a submodule importing its own
        # package's siblings goes through the package: not a cycle of ideas
        graph[name] = {m for m in _imports(path, everywhere=everywhere)
                       if not name.startswith(m + ".")}
    return graph


def test_no_module_of_the_package_imports_itself_back_at_import_time():
    assert _cycle(_graph(everywhere=False)) is None


def test_the_pyramid_and_the_capture_stage_never_import_the_analyzer():
    graph = _graph(everywhere=True)
    for name in ("fxcfp._pyramid", "fxcfp._capture", "fxcfp._plan", "fxcfp._backstep"):
        assert "fxcfp._analyzer" not in graph[name], name
    assert "fxcfp._pyramid" not in graph["fxcfp._capture"]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_record_keeps_only_the_requested_channels_of_one_clip_and_leaves_the_clip_alone():
    model, shape = make_resnet3d()
    clips = torch.randn(2, *shape[1:], generator=torch.Generator().manual_seed(0))
    before = clips.clone()
    pyramid = fxcfp.Analyzer(model).analyze_batch(clips)[1]
    plan = pyramid._plan
    layer = plan.layer_index("layer2.conv2")
    layer = plan.layers[layer]
    wanted = torch.tensor([0, 2, 5])
    found = record(plan, (clips,), {layer.input_node: {1: wanted}}, 1)
    full = {}

    def keep(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        full["x"] = args[0]

    handle = model.get_submodule(layer.name).register_forward_pre_hook(keep)
    try:
        with torch.no_grad():
            model.eval()(clips)
    finally:
        handle.remove()
    assert list(found) == [(layer.input_node, 1)]
    torch.testing.assert_close(found[(layer.input_node, 1)], full["x"][1, wanted],
                               rtol=0, atol=1e-6)
    assert torch.equal(clips, before)


def test_summed_pools_divided_in_one_call_equal_torch_mean_bit_for_bit():
    from fxcfp._capture import divide, pooler

    generator = torch.Generator().manual_seed(0)
    pooled, counts, expected = [], [], []
    for trial in range(120):
        dtype = torch.float32 if trial % 2 else torch.float64
        trailing = (1 + (trial * k) % 13 for k in (3, 5, 7)[: trial % 3 + 1])
        shape = (1 + trial % 3, 1 + trial % 17, *trailing)
        value = torch.randn(shape, generator=generator, dtype=dtype).mul_(10).exp_()
        if trial % 4 == 0:  # channels last: another reduction order inside torch.sum
            value = value.transpose(1, -1).contiguous().transpose(1, -1)
        kind = "linear" if trial % 5 == 0 else "conv"
        function, dims, count = pooler(value, kind)
        if function is None:
            continue
        pooled.append(function(value, dim=dims))
        counts.append(count)
        expected.append(torch.mean(value, dim=dims))
    assert any(counts) and not all(counts)  # divided sums, and sums of one element
    for got, want in zip(divide(tuple(pooled), tuple(counts)), expected, strict=True):
        assert torch.equal(got, want)
