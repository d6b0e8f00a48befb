"""The docstring examples of the modules a user reads first run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

# fxcfp.video's and fxcfp.cli._spec's examples decode a clip and build networks (half a minute on
# two cores): tests/test_video.py and tests/test_cli.py run the same calls
MODULES = ["fxcfp._files", "fxcfp.render.writers", "fxcfp.cli", "fxcfp.clip", "fxcfp.render.report._page"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
