"""The command line: ``fxcfp explain VIDEO --model SPEC`` and ``fxcfp explain-dataset``.

Reads a clip, explains the model's top class (or ``--class``) with a Class Feature Pyramid, and
writes an HTML report with the overlays beside it, plus the class dependency graph as GraphML and
JSON. With no ``--model`` the embedded default explains an ImageNet class with EfficientNet-Lite0
inflated to 3D; with no VIDEO it reads a bundled clip, so ``fxcfp explain`` runs offline as it is.

Bad input ends with one line on stderr, ``fxcfp: error: ...``, and exit status 2.

The package, one idea a file (nothing in the analysis imports it):

* ``_options``: the parser and the option groups every command shares;
* ``_explain``: ``fxcfp explain`` (one clip, or ``--windows`` through :mod:`fxcfp.windows`);
* ``_dataset``: ``fxcfp explain-dataset`` (the command of :mod:`fxcfp.dataset`);
* ``_spec``: ``--model SPEC`` into a model and what it expects to read.

Example:
    >>> from fxcfp.cli import main
    >>> main(["explain", "--frames", "4", "--size", "64", "--out", "out"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from .._errors import FxcfpError
from ._explain import check_paths, identity
from ._options import (
    DEFAULT_MAPS,
    _parser,
    _UsageError,
    add_analysis_options,
    add_clip_options,
    add_model_options,
    add_run_options,
)

__all__ = ["DEFAULT_MAPS", "add_analysis_options", "add_clip_options", "add_model_options",
           "add_run_options", "check_paths", "identity", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 2 for bad input).

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        return _fail(str(err))
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else 0
    if args.command is None:
        return _fail("choose a command: explain or explain-dataset (see fxcfp --help)")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("fxcfp: interrupted", file=sys.stderr)
        return 130
    except (FxcfpError, ValueError, OSError) as err:  # OSError: a disk that fills mid-run
        if args.debug:
            traceback.print_exc()
        return _fail(str(err) or type(err).__name__)


def _fail(message: str) -> int:
    # one line, whatever the message holds: scripts read the last line of stderr
    print(f"fxcfp: error: {' '.join(message.split())}", file=sys.stderr)
    return 2

