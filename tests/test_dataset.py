"""``fxcfp explain-dataset``: outputs, resuming (also after a kill), bad input, and torchrun on
CPU with gloo and two processes giving what one process gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import fxcfp
from fxcfp._backstep import UNREACHED
from fxcfp.cli import main
from tests.reference import one_thread
from tests.videos import write_video

pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[1]
TINY = "tests.dataset_models:tiny"
SLOW = "tests.dataset_models:slow"
OPTIONS = ["--frames", "4", "--size", "16", "--threshold", "0.5", "--top-k", "2"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Six tiny clips in two class folders (``0`` and ``2``: the tiny model has no names)."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(6):
        write_video(folder / ("0" if i % 2 else "2") / f"clip{i}.mp4", seed=i)
    return folder


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tables(out: Path) -> dict[str, object]:
    found: dict[str, object] = {
        name: pq.read_table(out / "aggregate" / f"{name}.parquet").to_pydict()
        for name in ("kernel_class", "class_overlap", "classes")}
    for path in sorted((out / "aggregate" / "classes").glob("*.graphml")):
        graph = nx.read_graphml(path)
        found[path.name] = (dict(graph.nodes(data=True)),
                            {(u, v): d for u, v, d in graph.edges(data=True)}, graph.graph)
    return found


def done(out: Path) -> list[str]:
    keys = []
    for path in (out / "manifest").glob("*.jsonl"):
        keys += [json.loads(line)["key"] for line in path.read_text().splitlines()
                 if json.loads(line)["status"] == "done"]
    return keys


@pytest.fixture(scope="module")
def single(videos, tmp_path_factory) -> Path:
    """One process, one clip per forward, one torch thread: the runs compared with it batch
    alike and run their processes on one thread (torchrun's default, and the env below), since
    a forward pass of another batch composition or thread count rounds differently in the last
    bits."""
    out = tmp_path_factory.mktemp("single")
    with one_thread():
        assert main(["explain-dataset", str(videos), "--out", str(out), "--model", TINY,
                     "--workers", "1", "--batch", "1", "--quiet", *OPTIONS]) == 0
    return out


def test_one_pyramid_per_clip_and_aggregates_that_follow_from_them(single, videos):
    keys = sorted(done(single))
    assert keys == sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*.mp4"))
    records = [json.loads(line) for path in (single / "manifest").glob("*.jsonl")
               for line in path.read_text().splitlines()]
    pyramids = {r["key"]: fxcfp.load_pyramid(single / r["file"]) for r in records}
    # the label is the folder, and the pyramid explains it
    for key, pyramid in pyramids.items():
        assert pyramid.target == int(key.split("/")[0])
    table = pq.read_table(single / "aggregate" / "kernel_class.parquet").to_pydict()
    plan = next(iter(pyramids.values()))._plan
    for cls in (0, 2):
        members = [p for k, p in pyramids.items() if k.startswith(f"{cls}/")]
        selected = np.sum([p._depth < UNREACHED for p in members], axis=0)
        rows = {(layer, channel): (clips, freq) for c, layer, channel, clips, freq in zip(
            table["class"], table["layer"], table["channel"], table["clips"],
            table["frequency"]) if c == cls}
        expected = {(plan.names[plan.id_owner[i]], int(plan.id_channel[i])):
                    (int(selected[i]), float(selected[i] / len(members)))
                    for i in np.flatnonzero(selected)}
        assert rows == expected
        graph = nx.read_graphml(next((single / "aggregate" / "classes").glob(f"{cls:04d}_*")))
        kept = {f"{layer}:{channel}" for (layer, channel), (_, f) in expected.items()
                if f >= 0.5}
        assert set(graph.nodes) == kept
    overlap = pq.read_table(single / "aggregate" / "class_overlap.parquet").to_pydict()
    same = [j for a, b, layer, j in zip(overlap["class_a"], overlap["class_b"],
                                        overlap["layer"], overlap["jaccard"]) if a == b]
    assert same and all(j == 1.0 for j in same)
    report = (single / "aggregate" / "report.html").read_text()
    assert "Kernels x classes" in report and "data:image/png;base64," in report


def test_rerun_skips_finished_clips_and_keeps_the_result(single, videos, tmp_path, capsys):
    before = tables(single)
    code, out, _ = run(["explain-dataset", str(videos), "--out", str(single), "--model", TINY,
                        "--workers", "0", "--quiet", *OPTIONS], capsys)
    assert code == 0
    assert "0 analysed now, 6 finished before" in out
    assert sorted(done(single)) == sorted(set(done(single)))
    assert tables(single) == before


def test_undecodable_clip_is_logged_and_skipped(videos, tmp_path, capsys):
    folder = tmp_path / "videos"
    for path in sorted(videos.rglob("*.mp4"))[:2]:
        target = folder / path.relative_to(videos)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (folder / "0").mkdir(exist_ok=True)
    (folder / "0" / "broken.mp4").write_bytes(b"\x00" * 100)
    code, out, err = run(["explain-dataset", str(folder), "--out", str(tmp_path / "out"),
                          "--model", TINY, "--workers", "0", *OPTIONS], capsys)
    assert code == 0, err
    assert "skipped 0/broken.mp4: VideoError" in err
    assert "1 skipped" in out
    assert len(done(tmp_path / "out")) == 2


def test_bad_input_is_one_line_and_exit_2(videos, tmp_path, capsys):
    def error(argv: list[str], words: str) -> None:
        code, _, err = run(["explain-dataset", *argv, "--model", TINY, "--workers", "0",
                            *OPTIONS], capsys)
        assert code == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fxcfp: error: ") and words in lines[0], err

    empty = tmp_path / "empty"
    empty.mkdir()
    error([str(empty), "--out", str(tmp_path / "o1")], "holds no clip")
    csv = tmp_path / "clips.csv"
    csv.write_text("file,label\nx.mp4,0\n")
    error([str(csv), "--out", str(tmp_path / "o2")], "has no column 'path'")
    clip = next(videos.rglob("*.mp4"))
    csv.write_text(f"path,label\n{clip},7\n")
    error([str(csv), "--out", str(tmp_path / "o3")], "label '7' of")
    csv.write_text(f"path,label\n{clip},dog\n")
    error([str(csv), "--out", str(tmp_path / "o4")], "is not a class of the model")
    error([str(tmp_path / "missing"), "--out", str(tmp_path / "o5")], "no such folder")
    # a run folder made with other options is not silently mixed into
    csv.write_text(f"path,label\n{clip},1\n")
    assert main(["explain-dataset", str(csv), "--out", str(tmp_path / "o6"), "--model", TINY,
                 "--workers", "0", "--quiet", *OPTIONS]) == 0
    capsys.readouterr()
    code, _, err = run(["explain-dataset", str(csv), "--out", str(tmp_path / "o6"), "--model",
                        TINY, "--workers", "0", *OPTIONS[:-1], "3"], capsys)
    assert code == 2 and "holds a run with other settings" in err


def test_labels_by_name_with_the_library_call(videos, tmp_path):
    from fxcfp.dataset import explain_dataset
    from tests.dataset_models import tiny

    csv = tmp_path / "clips.csv"
    rows = [f"{p},{'walk' if i % 2 else 'Run'}" for i, p in enumerate(sorted(videos.rglob("*.mp4")))]
    csv.write_text("path,label\n" + "\n".join(rows[:3]) + "\n")
    result = explain_dataset(tiny(), csv, tmp_path / "out", labels=("run", "walk", "sit"),
                             frames=4, size=16, workers=0)
    assert (result.analysed, result.clips, result.skipped) == (3, 3, 0)
    classes = pq.read_table(tmp_path / "out" / "aggregate" / "classes.parquet").to_pydict()
    assert classes["label"] == ["run", "walk"] and classes["clips"] == [2, 1]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    env.pop("WORLD_SIZE", None)
    return env


def test_killed_run_resumed_loses_no_clip_and_repeats_none(single, videos, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "fxcfp", "explain-dataset", str(videos), "--out", str(out),
            "--model", SLOW, "--workers", "0", "--batch", "1", "--quiet", *OPTIONS]
    process = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "manifest").is_dir() and len(done(out)) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = set(done(out))
    assert 2 <= len(finished) < 6, "the kill should land in the middle of the run"
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "pyramids").glob("*.fxcfp")}
    rerun = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{6 - len(finished)} analysed now, {len(finished)} finished before" in rerun.stdout
    keys = done(out)
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 6  # none lost, none repeated
    records = [json.loads(line) for path in (out / "manifest").glob("*.jsonl")
               for line in path.read_text().splitlines()]
    for record in records:
        path = out / record["file"]
        if record["key"] in finished:
            assert path.stat().st_mtime_ns == mtimes[path]  # not analysed again
    # the slow model is the tiny one with a pause: the same as one uninterrupted run
    assert tables(out) == tables(single)


def test_a_failing_disk_stops_the_run_and_keeps_every_clip_written_before(
        single, videos, tmp_path, capsys, monkeypatch):
    from fxcfp.dataset import _run

    written = []

    def full_disk(path, meta, arrays):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(_real(path, meta, arrays))

    _real = _run.write_state
    monkeypatch.setattr(_run, "write_state", full_disk)
    out = tmp_path / "out"
    argv = ["explain-dataset", str(videos), "--out", str(out), "--model", TINY, "--workers",
            "0", "--batch", "1", "--quiet", *OPTIONS]
    with one_thread():
        code, _, err = run(argv, capsys)
    # the writer thread's failure ends the run in one line, as a failure in the loop would
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    lines = (out / "manifest" / "rank-00000.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # exactly the clips whose files were written, in the order they were analysed
    assert [out / r["file"] for r in records] == written
    order = sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*.mp4"))
    assert [r["key"] for r in records] == order[:2]
    monkeypatch.undo()
    with one_thread():
        code, printed, _ = run(argv, capsys)
    assert code == 0 and "4 analysed now, 2 finished before" in printed
    assert "clips/s after the first batch" in printed
    assert sorted(done(out)) == order
    assert tables(out) == tables(single)


def test_torchrun_two_processes_match_one(single, videos, tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "fxcfp", "explain-dataset", str(videos), "--out", str(out), "--model",
            TINY, "--workers", "1", "--batch", "1", "--quiet", *OPTIONS]
    result = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 analysed now" in result.stdout
    manifests = sorted(p.name for p in (out / "manifest").glob("*.jsonl"))
    assert manifests == ["rank-00000.jsonl", "rank-00001.jsonl"]
    per_rank = [len(p.read_text().splitlines()) for p in sorted((out / "manifest").glob("*"))]
    assert per_rank == [3, 3]
    assert sorted(done(out)) == sorted(done(single))
    assert tables(out) == tables(single)
