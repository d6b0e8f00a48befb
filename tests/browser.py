"""Headless Chromium for the tests of the pages: one offline run on a page, its console lines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(`make test` installs it when it can: scripts/ensure-chromium)",
)


def chromium(profile: Path, url: str, *flags: str,
             virtual_time: bool = True) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on ``url``: no network, no sync, a throwaway profile."""
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        # let load handlers and timers run before the DOM is dumped
        "--run-all-compositor-stages-before-draw",
        # virtual time also stops the clocks a page reads: off where the page times itself
        *(["--virtual-time-budget=5000"] if virtual_time else []),
        *flags,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def console_errors(stderr: str) -> list[str]:
    """The console lines of a run: the pages log nothing, so any is a problem; page exceptions
    say "Uncaught"."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
