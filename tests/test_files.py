"""Atomic writes and strict JSON (fxcfp/_files.py)."""

from __future__ import annotations

import json

import pytest

from fxcfp._files import atomic_write, dump_json, strict_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "graph.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half way"), atomic_write(target) as file:
        file.write("partial")
        raise RuntimeError("failed half way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["graph.json"]


def test_binary_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "a.bin"
    with atomic_write(target, binary=True) as file:
        file.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_json_is_strict(tmp_path):
    target = tmp_path / "p.json"
    dump_json({"p": float("nan"), "logits": [1.5, float("inf"), -float("inf")]}, target)
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"p": None, "logits": [1.5, None, None]}
    assert strict_json((1.0, {"x": float("nan")})) == [1.0, {"x": None}]
