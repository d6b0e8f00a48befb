"""The README's printed demo output is what the command line prints today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fxcfp.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _printed_demo() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = text.split("```\n$ make demo\n", 1)[1].split("```", 1)[0]
    return block.rstrip("\n").splitlines()


def _without_time(lines: list[str]) -> list[str]:
    # the run's wall time is the one thing that differs between machines and runs
    return [re.sub(r" in \d+(\.\d+)? s$", " in … s", line) for line in lines]


def test_the_readme_prints_what_make_demo_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # make demo writes to fxcfp-out/demo, relative
    assert main(["explain", "--out", "fxcfp-out/demo"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    assert _without_time(_printed_demo()) == _without_time(printed)
    assert (tmp_path / "fxcfp-out" / "demo" / "report.html").stat().st_size <= 4_000_000
