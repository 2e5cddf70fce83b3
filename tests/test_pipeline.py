"""End to end: the spell-iteration flow on the cpu-smoke preset, artifacts, skip/replay, DuckDB, MLflow."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

from storage.schemas import SCHEMAS

pytestmark = [pytest.mark.slow, pytest.mark.ray]
CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")


@pytest.fixture(scope="module")
def two_iterations(prefect_api, ray_local, tmp_path_factory):
    from flows.iteration import spell_iteration

    runs = tmp_path_factory.mktemp("runs")
    ov = [f"run.runs_dir={runs}"]
    first = spell_iteration(run="e2e", config=CONFIG, overrides=ov)
    second = spell_iteration(run="e2e", config=CONFIG, overrides=ov)
    return runs, first, second


def test_every_stage_artifact_exists_with_its_schema(two_iterations):
    _runs, first, _ = two_iterations
    d = Path(first["dir"])
    assert first["iteration"] == 1 and first["usable_groups"] >= 4
    for kind in ("prompts", "questions", "grounding", "responses", "verdicts", "rewards"):
        for r in range(1, first["rounds"] + 1):
            t = pq.read_table(d / f"{kind}_r{r:02d}.parquet")
            assert t.schema.equals(SCHEMAS[kind], check_metadata=False), kind
    for kind in ("batch", "train_metrics"):
        assert pq.read_table(d / f"{kind}.parquet").schema.equals(SCHEMAS[kind], check_metadata=False)
    assert (d / "manifest.json").is_file() and (d / "config.yaml").is_file()


def test_group_sizes_and_reward_rows(two_iterations):
    """Part A 'responder group' (G answers per grounded question) and 'verifier' (n votes per parsed answer)."""
    from spell.config import load_config

    _runs, first, _ = two_iterations
    cfg = load_config(CONFIG)
    d = Path(first["dir"])
    questions = pq.read_table(d / "questions_r01.parquet").to_pylist()
    grounding = pq.read_table(d / "grounding_r01.parquet").to_pylist()
    responses = pq.read_table(d / "responses_r01.parquet").to_pylist()
    verdicts = pq.read_table(d / "verdicts_r01.parquet").to_pylist()
    rewards = pq.read_table(d / "rewards_r01.parquet").to_pylist()
    ok = {q["question_id"] for q in questions if q["status"] == "ok"}
    assert {g["question_id"] for g in grounding} == ok
    per_q: dict[str, int] = {}
    for r in responses:
        per_q[r["question_id"]] = per_q.get(r["question_id"], 0) + 1
    assert per_q and set(per_q.values()) == {cfg.responder.group_size}
    per_r: dict[str, int] = {}
    for v in verdicts:
        per_r[v["response_id"]] = per_r.get(v["response_id"], 0) + 1
    parsed = {r["response_id"] for r in responses if r["prediction"] is not None}
    assert set(per_r) == parsed and set(per_r.values()) == {cfg.verifier.votes}
    assert {r["role"] for r in rewards} == {"questioner", "responder", "verifier"}
    assert len([r for r in rewards if r["role"] == "questioner"]) == len(questions)


def test_checkpoint_loads_and_weights_changed(two_iterations):
    from spell.engine.models.loading import resolve_model_path

    runs, _first, _ = two_iterations
    ckpt = runs / "e2e" / "checkpoints" / "iter_0001" / "model"
    trained = AutoModelForCausalLM.from_pretrained(ckpt, use_safetensors=True)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("tiny:qwen2", str(runs / ".models")))
    diffs = [(a - b).abs().max().item() for a, b in zip(trained.parameters(), base.parameters(), strict=True)]
    assert max(diffs) > 0
    second = AutoModelForCausalLM.from_pretrained(runs / "e2e" / "checkpoints" / "iter_0002" / "model")
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), second.parameters(), strict=True))
    assert (runs / "e2e" / "checkpoints" / "LATEST").read_text() == "iter_0002"


def test_mlflow_has_iteration_metrics(two_iterations):
    from storage.layout import RunLayout
    from storage.tracking import Tracker

    runs, *_ = two_iterations
    tracker = Tracker(RunLayout(runs, "e2e"))
    hist = tracker.metric_history("reward/responder/mean")
    assert [step for step, _ in hist] == [1, 2]
    assert [s for s, _ in tracker.metric_history("train/loss")] == [1, 2]


def test_duckdb_views_across_iterations(two_iterations):
    from storage.views import open_history

    runs, *_ = two_iterations
    con = open_history(runs)
    rows = con.execute("SELECT iteration, count(*) FROM rewards WHERE run = 'e2e' GROUP BY ALL ORDER BY ALL").fetchall()
    assert [r[0] for r in rows] == [1, 2] and all(r[1] > 0 for r in rows)
    joined = con.execute("""SELECT count(*) FROM responses r JOIN questions q USING (question_id)
                        JOIN verdicts v USING (response_id)""").fetchone()[0]
    assert joined > 0
    assert con.execute("SELECT count(*) FROM train_metrics").fetchone()[0] == 2


def test_history_memory_rebuilt_from_artifacts(two_iterations):
    """Iteration 2's prompts show remembered questions of iteration 1 (history from stored artifacts)."""
    runs, _, _second = two_iterations
    from storage.views import open_history

    con = open_history(runs)
    admitted = con.execute(
        "SELECT count(*) FROM rewards WHERE iteration = 1 AND role = 'questioner' AND admitted"
    ).fetchone()[0]
    with_history = con.execute("SELECT count(*) FROM prompts WHERE iteration = 2 AND history_size > 0").fetchone()[0]
    assert admitted > 0 and with_history > 0
    drawn = con.execute("SELECT task, count(*) FROM prompts GROUP BY ALL").fetchall()
    assert len(drawn) == 3
    from tests.history_check import live_memory, rebuilt_memory

    for k in (2, 3):  # after one and after two iterations: DuckDB rebuild == what a live process would hold
        rebuilt = rebuilt_memory(CONFIG, runs, "e2e", k)
        assert rebuilt and rebuilt == live_memory(CONFIG, runs, "e2e", k)


def test_rerun_of_complete_iteration_skips_every_stage(two_iterations):
    from flows.iteration import spell_iteration

    runs, first, _ = two_iterations
    d = Path(first["dir"])
    before = {p.name: p.stat().st_mtime_ns for p in d.glob("*.parquet")}
    again = spell_iteration(run="e2e", config=CONFIG, iteration=1, overrides=[f"run.runs_dir={runs}"])
    after = {p.name: p.stat().st_mtime_ns for p in d.glob("*.parquet")}
    assert before == after
    assert all(v == 0.0 for v in again["timings"].values())


def test_replay_from_reward_writes_a_branch_and_keeps_the_original(two_iterations):
    from flows.replay import spell_replay

    runs, first, _ = two_iterations
    orig = Path(first["dir"])
    before = {p.name: p.stat().st_mtime_ns for p in orig.glob("*.parquet")}
    out = spell_replay(
        run="e2e", iteration=1, from_stage="reward", runs_dir=str(runs), overrides=["questioner.reward=reverse"]
    )
    branch = Path(out["dir"])
    assert branch.name == "iter_0001.replay1" and out["branch"] == "replay1"
    assert {p.name: p.stat().st_mtime_ns for p in orig.glob("*.parquet")} == before
    a = pq.read_table(orig / "prompts_r01.parquet").to_pylist()
    b = pq.read_table(branch / "prompts_r01.parquet").to_pylist()
    assert a == b  # copied, not regenerated
    ra = {
        r["sample_id"]: r["reward"]
        for r in pq.read_table(orig / "rewards_r01.parquet").to_pylist()
        if r["role"] == "questioner" and r["case"] == "good"
    }
    rb = {
        r["sample_id"]: r["reward"]
        for r in pq.read_table(branch / "rewards_r01.parquet").to_pylist()
        if r["role"] == "questioner" and r["case"] == "good"
    }
    assert ra.keys() == rb.keys() and ra != rb
    assert (branch / "checkpoints" / "iter_0001" / "model").is_dir()
    assert (runs / "e2e" / "checkpoints" / "LATEST").read_text() == "iter_0002"  # main line untouched


def test_static_rlvr_baseline_is_one_config_switch(prefect_api, ray_local, tmp_path):
    """run.mode=rlvr: labelled questions, rule reward, no questioner/grounding/verifier (paper App. E.5)."""
    import json

    from flows.iteration import spell_iteration

    qa = tmp_path / "qa.jsonl"
    with qa.open("w") as fh:
        for i, (a, b) in enumerate([("Varnholt", "was"), ("bridge", "is"), ("salt", "trade"), ("town", "of")] * 2):
            docs = [f"The {a} {b} here, said doc {i}.", f"Another {a} {b} there.", "Nothing else."]
            fh.write(
                json.dumps(
                    {
                        "id": f"qa{i}",
                        "documents": docs,
                        "answer": b,
                        "question": f"In the documents, which word comes right after '{a}'?",
                    }
                )
                + "\n"
            )
    ov = [
        f"run.runs_dir={tmp_path / 'runs'}",
        "run.mode=rlvr",
        f"data.qa_file={qa}",
        "data.task_weights={doc_general_qa: 1, doc_mc: 0, docmath_qa: 0}",
        "sampling.questions_per_round=8",
        "sampling.train_batch_size=2",
    ]
    out = spell_iteration(run="rlvr", config=CONFIG, overrides=ov)
    d = Path(out["dir"])
    questions = pq.read_table(d / "questions_r01.parquet").to_pylist()
    assert all(q["status"] == "ok" and q["reason"] == "labelled" for q in questions)
    assert pq.read_table(d / "grounding_r01.parquet").num_rows == 0
    assert pq.read_table(d / "verdicts_r01.parquet").num_rows == 0
    roles = {r["role"] for r in pq.read_table(d / "batch.parquet").to_pylist()}
    assert roles == {"responder"}
    assert (tmp_path / "runs" / "rlvr" / "checkpoints" / "iter_0001" / "model").is_dir()


def test_report_png_and_html(two_iterations):
    from storage.report import build_report

    runs, *_ = two_iterations
    png, html = build_report(runs, "e2e")
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "mean reward per role" in html.read_text()


def test_rounds_without_usable_groups_end_the_iteration_cleanly(prefect_api, ray_local, tmp_path):
    """Every responder prompt (8 documents) over the limit, each document under it: max_rounds rounds, then a
    clear note; nothing half-written."""
    import json

    from flows.iteration import spell_iteration

    ov = [f"run.runs_dir={tmp_path}", "responder.max_prompt_tokens=400", "sampling.max_rounds=2"]
    out = spell_iteration(run="empty", config=CONFIG, overrides=ov)
    assert out["usable_groups"] == 0 and out["rounds"] == 2 and "no responder group" in out["note"]
    d = Path(out["dir"])
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["complete"] and manifest["trained"] is False
    assert pq.read_table(d / "responses_r02.parquet").num_rows == 0
    assert not list(d.glob("*.tmp")) and (tmp_path / "empty" / "checkpoints" / "iter_0001" / "model").is_dir()
    assert spell_iteration(run="empty", config=CONFIG, overrides=ov)["iteration"] == 2  # the run goes on
