"""``python -m fxcfp``: the command line of :mod:`fxcfp.cli`."""

from __future__ import annotations

from fxcfp.cli import main

raise SystemExit(main())
