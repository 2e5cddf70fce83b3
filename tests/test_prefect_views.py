"""What a user sees in the Prefect UI and MLflow, read through their client APIs against the test servers:
flow-run names, stage artifacts, Skipped states, log lines, one-line failures; MLflow run states and replay
runs; DuckDB views that keep replays out of the main line."""

import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]
CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")


@pytest.fixture(scope="module")
def seen(prefect_api, ray_local, tmp_path_factory):
    """Two iterations (the actor killed once in the second), a re-run of the first (every stage skipped), a
    replay of it with an override, and a run that fails on a user error."""
    import os

    from flows.iteration import spell_iteration
    from flows.replay import spell_replay
    from spell.config import ConfigError

    runs = tmp_path_factory.mktemp("runs")
    spell_iteration(run="ui", config=CONFIG, runs_dir=str(runs))
    os.environ["SPELL_FAULT_ACTOR_KILL"] = "respond_r01@2"
    try:
        spell_iteration(run="ui", config=CONFIG, runs_dir=str(runs))
    finally:
        del os.environ["SPELL_FAULT_ACTOR_KILL"]
    spell_iteration(run="ui", config=CONFIG, iteration=1, runs_dir=str(runs))
    spell_replay(run="ui", iteration=1, from_stage="reward", runs_dir=str(runs), overrides=["questioner.sigma=0.25"])
    with pytest.raises(ConfigError, match=r"sampling\.max_rounds"):
        spell_iteration(run="ui", config=CONFIG, runs_dir=str(runs), overrides=["sampling.max_rounds=0"])
    return runs


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _flow_runs(client, name):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))


def _logs(client, flow_run_id, needle, timeout=30.0):
    """Log lines reach the server in batches: wait (bounded) for the one we look for."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    while True:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        if any(needle in entry.message for entry in logs) or time.monotonic() > deadline:
            return [entry.message for entry in logs]
        time.sleep(0.5)


def test_flow_runs_are_named_after_run_iteration_and_branch(seen):
    with _client() as client:
        for name in ("ui-iter1", "ui-iter2", "ui-iter1-replay1"):
            runs = _flow_runs(client, name)
            assert runs and all(r.state.is_completed() for r in runs), name
        assert len(_flow_runs(client, "ui-iter1")) == 2  # the first run and its re-run


def test_every_stage_publishes_its_summary_and_skips_say_so(seen):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterName

    with _client() as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ui-iter2-respond-r01", "ui-iter2-summary"]))
        )
        by_key = {a.key: a for a in arts}
        respond = by_key["ui-iter2-respond-r01"].data
        assert "questions_answered" in respond and "rule_accuracy" in respond and "responses_r01.parquet" in respond
        assert "| actor_restarts | 1 |" in respond
        assert "reward/responder/mean" in by_key["ui-iter2-summary"].data
        rerun = max(_flow_runs(client, "ui-iter1"), key=lambda r: r.start_time)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["ui-iter1"])))
        mine = [t for t in tasks if t.flow_run_id == rerun.id]
        assert mine and all(t.state.name == "Skipped" for t in mine)
        assert all(t.state.message == "skipped: already in the manifest" for t in mine)


def test_warnings_and_user_errors_reach_the_flow_run(seen):
    with _client() as client:
        second = _flow_runs(client, "ui-iter2")[0]
        logs = _logs(client, second.id, "policy actor died")
        assert any("respond_r01: policy actor died" in m and "retry 1 of 2" in m for m in logs), logs[-5:]
        assert any("usable responder groups so far" in m for m in logs)
        failed = [r for r in _flow_runs(client, "ui-iter") if r.state.is_failed()]
        assert failed, "the bad override did not fail a flow run"
        message = failed[0].state.message
        assert message.startswith("spell: ") and "sampling.max_rounds" in message and "Traceback" not in message


def test_mlflow_runs_finish_and_replays_get_their_own_run(seen):
    import mlflow

    from storage.layout import RunLayout
    from storage.tracking import Tracker

    runs = seen
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    main_id = (runs / "ui" / "mlflow_run_id").read_text().strip()
    replay_id = (runs / "ui" / "iter_0001.replay1" / "mlflow_run_id").read_text().strip()
    main, replay = client.get_run(main_id), client.get_run(replay_id)
    assert main.info.status == "FINISHED" and replay.info.status == "FINISHED"
    assert replay.data.tags["spell.parent_run_id"] == main_id and replay.data.tags["spell.branch"] == "replay1"
    assert replay.data.params["replay.override.0"] == "questioner.sigma=0.25"
    # the main line keeps one value per step: the replay of iteration 1 went to its own run
    steps = [m.step for m in client.get_metric_history(main_id, "reward/questioner/mean")]
    assert sorted(steps) == [1, 2]  # a re-run of iteration 1 logs nothing twice
    exp = client.get_experiment(main.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on training runs
    assert Tracker(RunLayout(runs, "ui")).run_id == main_id


def test_history_views_keep_replays_out_of_the_main_line(seen):
    from storage.views import open_history

    con = open_history(seen, "ui")
    main = con.execute("SELECT count(*), count(DISTINCT branch) FROM rewards WHERE iteration = 1").fetchone()
    every = dict(con.execute("SELECT branch, count(*) FROM rewards_all WHERE iteration = 1 GROUP BY ALL").fetchall())
    assert main == (every[""], 1) and every["replay1"] == every[""]
