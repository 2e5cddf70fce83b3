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
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = out.read_text()
    assert "FAILED" not in table, table
    rows = ("versions", "Qwen3-4B LoRA preset learner step", "7B-width step peak above resident",
            "attention fwd+bwd, qwen2.5-7b", "cross-process reserve", "weight-sync sender",
            "FSDP2 world size 1")  # fmt: skip
    assert all(row in table for row in rows), table
    assert re.search(r"causal [0-9.]+ ms, dense mask [0-9.]+ ms", table), table


def test_the_device_script_runs_each_check_alone_under_a_cap():
    """gpu_check.sh: python3, rows under $OUT, one process and one time cap per check, every check in order."""
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    assert "python3 bench/gpu_check.py --only" in script and 'timeout "$cap"' in script and "OUT" in script
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_checks import CHECKS

    names = re.findall(r"(\w+):\d+", script.split("for spec in", 1)[1].split(";", 1)[0])
    assert names == list(CHECKS)
