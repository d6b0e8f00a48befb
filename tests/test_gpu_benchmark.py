"""benchmarks/gpu.py runs end to end on the CPU in its quick mode and writes its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_on_the_cpu_in_quick_mode(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other: kept\n\nuntouched\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick",
         "--networks", "r3d_18", "--results", str(results)],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    text = results.read_text()
    assert "## Other: kept\n\nuntouched" in text  # only its own section is replaced
    assert "## GPU: forward, analyze and back-step on CPU" in text
    rows = [line for line in text.splitlines() if line.startswith("| r3d_18 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["1 x 16x32x32", "2 x 16x32x32"]
    assert all(row.count("skipped (CPU)") == 2 for row in rows)
    assert "sync check and the CUDA graph are skipped" in done.stdout
