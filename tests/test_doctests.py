"""Every docstring example in fxcfp runs as written: each module's examples as a doctest."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import fxcfp

# fxcfp.__main__ runs the command line when imported
_NOT_IMPORTED = {"fxcfp.__main__"}
_EXAMPLE = re.compile(r"^\s*>>> ", re.MULTILINE)


def _modules_with_examples() -> list[str]:
    names = ["fxcfp"] + [m.name for m in pkgutil.walk_packages(fxcfp.__path__, "fxcfp.")]
    return sorted(n for n in names if n not in _NOT_IMPORTED
                  and _EXAMPLE.search(inspect.getsource(importlib.import_module(n))))


MODULES = _modules_with_examples()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    found = sum(len(t.examples) for t in doctest.DocTestFinder().find(module))
    # an example doctest cannot find (a docstring of an object imported from elsewhere, a
    # nested function, a comment) would never run
    written = len(_EXAMPLE.findall(inspect.getsource(module)))
    assert found == written, f"{name}: {written} examples written, {found} found by doctest"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_of_every_module_are_collected() -> None:
    # the walk sees sub-packages and a module added later without a list to update
    assert {"fxcfp", "fxcfp._analyzer", "fxcfp.eval.metrics", "fxcfp.zoo.i3d"} <= set(MODULES)
