"""bench/gpu_check.py, the one script for a bare CUDA machine, runs every check in small shapes on the CPU
(a dry run), so that the GPU run has no error of its own left to find."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_every_check_produces_a_row(tmp_path):
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--small", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    assert "FAILED" not in table, table
    rows = ("weights moved after", "log-prob max abs diff", "dense float mask", "boolean mask on the device",
            "sharded learner", "learner, small")  # fmt: skip
    assert all(row in table for row in rows), table
    # bf16 compute over fp32 master weights moves about what fp32 moves (bf16 weights in place: ratio ~0.04)
    ratio = float(re.search(r"ratio ([0-9.]+)", table).group(1))
    assert ratio > 0.9, table
