"""Soak: 20 iterations of the cpu-smoke preset (small sizes) under random faults: the driver SIGKILLed
at random stages of random iterations, the policy actor killed mid-stage, a corpus with malformed rows,
a share of every role's generations replaced by garbage, then an evaluation against a judge that fails
two requests in three. Every iteration must end complete and consistent."""

import random
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from spell.data.synthetic import synthetic_rows
from storage.layout import Manifest, RunLayout
from storage.views import open_history
from tests.procs import short_tmp
from tests.test_bad_input import _write, bad_rows
from tests.test_resume import CONFIG, _snapshot, _spell

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.soak]
ITERATIONS = 20
SMALL = [
    "sampling.questions_per_round=6",
    "sampling.train_batch_size=2",
    "responder.group_size=2",
    "verifier.votes=2",
    "rollout.max_new_tokens=64",
    "tracking.mlflow=false",
]
KILL_KEYS = ["sample_docs_r01", "question_r01", "respond_r01", "verify_r01", "reward_r01", "select_batch",
             "grpo_step", "checkpoint"]  # fmt: skip
ACTOR_KEYS = ["question_r01", "respond_r01", "verify_r01", "grpo_step", "checkpoint"]


def test_soak_twenty_iterations_with_random_faults(prefect_api, ray_local, tmp_path, monkeypatch):
    rng = random.Random(2026)
    corpus = _write(tmp_path / "corpus.jsonl", synthetic_rows() + bad_rows(), garbage=2)
    runs = tmp_path / "runs"
    sets = [a for s in [f"data.corpus={corpus}", *SMALL] for a in ("--set", s)]
    kill_at = sorted(rng.sample(range(2, ITERATIONS), 5))
    faults = [f"{rng.choice(KILL_KEYS)}:{rng.choice(['before', 'after'])}@{k}" for k in kill_at]
    actor_kills = ",".join(f"{rng.choice(ACTOR_KEYS)}@{k}" for k in rng.sample(range(1, ITERATIONS + 1), 6))
    monkeypatch.setenv("SPELL_FAULT_GARBAGE", "0.1")
    monkeypatch.setenv("SPELL_FAULT_ACTOR_KILL", actor_kills)
    layout = RunLayout(runs, "killed")
    outcomes = []
    for attempt, fault in enumerate([*faults, None]):
        left = ITERATIONS - len(layout.completed_iterations())
        resume = ["--resume"] if attempt else []
        rc, out = _spell(runs, "--iterations", str(left), *resume, *sets, kill_at=fault, ray_tmp=short_tmp())
        outcomes.append((fault, rc))
        assert rc == (-signal.SIGKILL if fault else 0), (fault, out)
    assert layout.completed_iterations() == list(range(1, ITERATIONS + 1)), outcomes

    _snapshot(layout.root)  # no duplicated ids in any stage file
    restarts = 0
    for k in range(1, ITERATIONS + 1):
        d = layout.iter_dir(k)
        m = Manifest(d)
        assert m.complete and not list(d.glob("*.tmp")), k
        for key, rec in m.data["stages"].items():
            assert all((d / o).is_file() for o in rec["outputs"]), (k, key)
            restarts += rec["summary"].get("actor_restarts", 0)
        metrics = pq.read_table(d / "train_metrics.parquet").to_pylist()
        assert [r["iteration"] for r in metrics] == [k]
        rewards = {r["sample_id"] for f in d.glob("rewards_r*.parquet") for r in pq.read_table(f).to_pylist()}
        assert {r["sample_id"] for r in pq.read_table(d / "batch.parquet").to_pylist()} <= rewards
        assert (layout.checkpoints / f"iter_{k:04d}" / "model" / "model.safetensors").is_file()
    assert (layout.checkpoints / "LATEST").read_text().strip() == f"iter_{ITERATIONS:04d}"
    assert restarts == len(actor_kills.split(","))  # every actor death was survived by a retry

    con = open_history(runs)
    per_iter = con.execute("SELECT count(DISTINCT iteration), count(*) FROM rejects").fetchone()
    assert per_iter == (ITERATIONS, ITERATIONS * 12)  # 12 bad rows or documents, recorded every iteration
    statuses = dict(con.execute("SELECT status, count(*) FROM questions GROUP BY status").fetchall())
    assert statuses.get("bad_format", 0) > 0 and statuses.get("ok", 0) > 0
    trained = con.execute("SELECT count(*) FROM train_metrics WHERE skipped = 0 AND tokens > 0").fetchone()[0]
    assert trained >= ITERATIONS // 2

    # the trained policy evaluated against a judge that fails two requests in three: no crash, failures recorded
    from flows.eval import spell_eval
    from tests.test_eval_e2e import write_fixtures
    from tests.test_secrets import EchoingJudge, serve

    write_fixtures(tmp_path / "data")
    with serve(EchoingJudge) as url:
        ov = [f"run.runs_dir={runs}", f"eval.data_dir={tmp_path / 'data'}", "eval.n_samples=2", "eval.judge=openai",
              f"eval.judge_base_url={url}", "eval.judge_retries=0", "eval.judge_all=true", "rollout.prefill=true",
              "eval.max_new_tokens=8", "eval.max_input_tokens=256"]  # fmt: skip
        out = spell_eval(model=str(layout.checkpoints / f"iter_{ITERATIONS:04d}" / "model"),
                         config=str(Path(CONFIG).parent / "eval-16k.yaml"), name="soak-eval",
                         benchmarks=["hotpotqa", "musique"], overrides=ov)  # fmt: skip
    samples = [r for f in Path(out["dir"]).glob("eval_samples_*.parquet") for r in pq.read_table(f).to_pylist()]
    errors = [s["judge_error"] for s in samples]
    assert any(errors) and not all(errors), errors  # some verdicts, some recorded failures
