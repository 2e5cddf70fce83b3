"""`spell deploy` serves spell-iteration/local; `prefect deployment run` triggers it and the run completes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import short_tmp

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def test_prefect_deployment_run_completes(prefect_api, tmp_path):
    runs = tmp_path / "runs"
    ray_tmp = str(short_tmp())
    env = {**os.environ, "SPELL_RAY_TMP": ray_tmp, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spell.cli",
            "deploy",
            "--config",
            str(ROOT / "configs" / "cpu-smoke.yaml"),
            "--runs-dir",
            str(runs),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        prefect = [sys.executable, "-m", "prefect"]
        deadline = time.time() + 120
        while time.time() < deadline:
            out = subprocess.run([*prefect, "deployment", "ls"], env=env, capture_output=True, text=True)
            if "spell-iteration" in out.stdout:
                break
            time.sleep(2)
        res = subprocess.run(
            [
                *prefect,
                "deployment",
                "run",
                "spell-iteration/local",
                "--param",
                "run=deployed",
                "--watch",
                "--watch-timeout",
                "400",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=480,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        manifest = json.loads((runs / "deployed" / "iter_0001" / "manifest.json").read_text())
        assert manifest["complete"] is True
        assert (runs / "deployed" / "checkpoints" / "iter_0001" / "model").is_dir()
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)
        log.close()
