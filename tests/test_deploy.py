"""`spell deploy` serves spell-iteration/local; `prefect deployment run` triggers it and the run completes;
the next run of the same spell run finds the policy warm; a run's own overrides add to the deployment's."""

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

        def deployment_run(*params: str) -> subprocess.CompletedProcess:
            cmd = [*prefect, "deployment", "run", "spell-iteration/local", "--watch", "--watch-timeout", "400"]
            for p in params:
                cmd += ["--param", p]
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=480)

        res = deployment_run("run=deployed")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        first = json.loads((runs / "deployed" / "iter_0001" / "manifest.json").read_text())
        assert first["complete"] is True
        assert (runs / "deployed" / "checkpoints" / "iter_0001" / "model").is_dir()
        # overrides add to the deployment's parameters: the runs dir stays the deployment's
        res = deployment_run("run=deployed", 'overrides=["sampling.max_rounds=2"]')
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        second = json.loads((runs / "deployed" / "iter_0002" / "manifest.json").read_text())
        assert "max_rounds: 2" in (runs / "deployed" / "iter_0002" / "config.yaml").read_text()
        # ... and the policy was built once: the second flow run found it warm in the deploy's Ray
        assert second["policy"]["started_at"] == first["policy"]["started_at"]
        assert second["policy"]["pid"] == first["policy"]["pid"]
        # a user error fails the flow run with its one line
        res = deployment_run("run=deployed", 'overrides=["sampling.max_rounds=0"]')
        assert res.returncode != 0 and "Failed" in res.stdout
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

        with get_client(sync_client=True) as client:
            name = FlowRunFilter(name=FlowRunFilterName(any_=["deployed-iter"]))
            bad = next(r for r in client.read_flow_runs(flow_run_filter=name) if r.state.is_failed())
            assert bad.state.message.startswith("spell: ") and "sampling.max_rounds" in bad.state.message
            assert "\n" not in bad.state.message
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[bad.id])))
            messages = [e.message for e in logs]
            assert any(m.startswith("spell: ") for m in messages), messages
            first_error = next(i for i, m in enumerate(messages) if "Traceback" in m or m.startswith("spell: "))
            assert messages[first_error].startswith("spell: ")  # the reason comes first, Prefect's report after
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-f", ray_tmp], check=False)
        log.close()
