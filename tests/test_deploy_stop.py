"""`spell deploy` leaves no process of its Ray instance behind, however it stops (issue 28): the Prefect server
and the deploy stopped together by SIGTERM (as closing a terminal session or stopping a machine does), and
the deploy SIGKILLed alone (its reaper stops Ray)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.deploy import GRACE_SECONDS
from tests.procs import session_processes, short_tmp, start_prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc (Linux)")]
ROOT = Path(__file__).resolve().parents[1]


def _deploy(env: dict[str, str], runs: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "spell.cli", "deploy", "--config", str(ROOT / "configs" / "cpu-smoke.yaml"),
             "--runs-dir", str(runs)],
            cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _ray(sid: int) -> list[tuple[int, str]]:
    return [(p, c) for p, c in session_processes(sid) if p != sid]


def _wait_for(cond, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.5)
    return cond()


def _served(env: dict[str, str]) -> bool:
    out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env=env, capture_output=True, text=True)
    return "spell-iteration" in out.stdout


@pytest.fixture
def server(tmp_path):
    home = tmp_path / "prefect-home"
    home.mkdir()
    proc, _, env = start_prefect_server(home)
    env = {**env, "SPELL_RAY_TMP": str(short_tmp()), "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PYTHONUNBUFFERED": "1"}
    yield proc, env
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    subprocess.run(["pkill", "-9", "-f", env["SPELL_RAY_TMP"]], check=False)


def test_stopping_server_and_deploy_together_stops_ray(server, tmp_path):
    proc, env = server
    deploy = _deploy(env, tmp_path / "runs", tmp_path / "deploy.log")
    try:
        assert _wait_for(lambda: _served(env), 120), (tmp_path / "deploy.log").read_text()[-2000:]
        run = subprocess.run(
            [sys.executable, "-m", "prefect", "deployment", "run", "spell-iteration/local", "-p", "run=stop",
             "--watch", "--watch-timeout", "300"],
            env=env, capture_output=True, text=True, timeout=360,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        before = _ray(deploy.pid)
        assert any("raylet" in c for _, c in before) and any("gcs_server" in c for _, c in before)
        os.killpg(proc.pid, signal.SIGTERM)  # both at once: the deploy's graceful shutdown finds no server
        os.killpg(deploy.pid, signal.SIGTERM)
        assert _wait_for(lambda: deploy.poll() is not None, GRACE_SECONDS + 20), "the deploy did not exit"
        assert _wait_for(lambda: not _ray(deploy.pid), 20), _ray(deploy.pid)
    finally:
        if deploy.poll() is None:
            os.killpg(deploy.pid, signal.SIGKILL)


def test_a_killed_deploy_is_reaped(server, tmp_path):
    _, env = server
    deploy = _deploy(env, tmp_path / "runs", tmp_path / "deploy.log")
    try:
        assert _wait_for(lambda: _served(env), 120), (tmp_path / "deploy.log").read_text()[-2000:]
        assert any("raylet" in c for _, c in _ray(deploy.pid))
        os.kill(deploy.pid, signal.SIGKILL)  # the process alone: no handler, no finally runs
        deploy.wait(timeout=10)
        assert _wait_for(lambda: not _ray(deploy.pid), 30), _ray(deploy.pid)
    finally:
        if deploy.poll() is None:
            os.killpg(deploy.pid, signal.SIGKILL)
