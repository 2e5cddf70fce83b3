"""A run killed (SIGKILL) in the middle of a stage resumes with `spell run --resume` and ends with the
same artifacts as an uninterrupted run: same row counts and ids, no duplicates, same weights."""

import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.procs import run_spell, short_tmp

pytestmark = [pytest.mark.slow, pytest.mark.ray]
ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "cpu-smoke.yaml")
QUIET = ["tracking.mlflow=false"]  # MLflow is tested in test_pipeline; here it would only add seconds per process
ID_COLS = {
    "prompts": "prompt_id",
    "questions": "question_id",
    "grounding": "question_id",
    "responses": "response_id",
    "verdicts": "verdict_id",
    "rewards": "sample_id",
    "batch": "sample_id",
}


def _spell(runs: Path, *args: str, kill_at: str | None = None, ray_tmp: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "SPELL_FAULT_KILL"}
    if kill_at:
        env["SPELL_FAULT_KILL"] = kill_at
    log = ray_tmp.with_suffix(".log")
    from spell.engine.ray_policy import shared_address

    # the session's Ray (ray_local): a killed driver's actors die with its job; the next process joins in a
    # second instead of starting its own instance (a stale actor found by name is replaced, see policy_actor)
    sets = [a for s in [f"run.runs_dir={runs}", f"engine.ray_address={shared_address()}", *QUIET] for a in ("--set", s)]
    cmd = ["run", "--config", CONFIG, "--run", "killed", *sets, *args]
    rc = run_spell(cmd, log, ray_tmp, env)
    return rc, log.read_text()[-3000:]


def _snapshot(run_dir: Path) -> dict[str, list[str]]:
    out = {}
    for d in sorted(run_dir.glob("iter_[0-9][0-9][0-9][0-9]")):
        for f in sorted(d.glob("*.parquet")):
            kind = f.stem.split("_r")[0] if f.stem not in ("train_metrics",) else f.stem
            col = ID_COLS.get(kind)
            rows = pq.read_table(f).to_pylist()
            key = f"{d.name}/{f.name}"
            out[key] = sorted(r[col] for r in rows) if col else [str(len(rows))]
            if col and kind != "rewards":
                assert len(set(out[key])) == len(out[key]), f"duplicated ids in {key}"
    return out


# one kill at every stage of iteration 1, in pipeline order: each run resumes the previous one and dies
# at the next point ("after" = output written, manifest entry not; "before" = nothing of the stage written)
KILL_CHAIN = [
    "sample_docs_r01:after",
    "question_r01:before",
    "question_r01:after",
    "respond_r01:after",
    "verify_r01:after",
    "reward_r01:before",
    "reward_r01:after",
    "select_batch:after",
    "grpo_step:after",
    "checkpoint:after",
]


def _reference(tmp_path: Path) -> Path:
    from flows.iteration import spell_iteration

    ref_runs = tmp_path / "ref"
    for _ in range(2):
        spell_iteration(run="killed", config=CONFIG, overrides=[f"run.runs_dir={ref_runs}", *QUIET])
    return ref_runs


def _assert_same(ref_runs: Path, runs: Path) -> None:
    from tests.history_check import rebuilt_memory

    a, b = _snapshot(ref_runs / "killed"), _snapshot(runs / "killed")
    assert a.keys() == b.keys() and a == b
    memory = rebuilt_memory(CONFIG, runs, "killed", 3)  # the memory iteration 3 would start from
    assert memory and memory == rebuilt_memory(CONFIG, ref_runs, "killed", 3)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        wa = AutoModelForCausalLM.from_pretrained(ref_runs / "killed/checkpoints/iter_0002/model")(ids).logits
        wb = AutoModelForCausalLM.from_pretrained(runs / "killed/checkpoints/iter_0002/model")(ids).logits
    torch.testing.assert_close(wa, wb, atol=1e-5, rtol=1e-4)


def test_killed_at_every_stage_resumes_to_identical_artifacts(prefect_api, ray_local, tmp_path):
    ref_runs = _reference(tmp_path)
    runs = tmp_path / "runs"
    rc, out = _spell(runs, "--iterations", "2", kill_at=KILL_CHAIN[0], ray_tmp=short_tmp())
    assert rc == -signal.SIGKILL, out
    for point in KILL_CHAIN[1:]:
        rc, out = _spell(runs, "--iterations", "2", "--resume", kill_at=point, ray_tmp=short_tmp())
        assert rc == -signal.SIGKILL, f"{point} was never reached: {out}"
    rc, out = _spell(runs, "--iterations", "2", "--resume", ray_tmp=short_tmp())
    assert rc == 0, out
    from spell.cli import main

    # refusing to start over an existing run without --resume (decided before anything starts: in-process)
    assert main(["run", "--config", CONFIG, "--run", "killed", "--set", f"run.runs_dir={runs}"]) == 2
    _assert_same(ref_runs, runs)


def test_dead_policy_actor_is_rebuilt_and_the_stage_retried(prefect_api, ray_local, tmp_path, monkeypatch):
    """The actor is killed inside respond, the GRPO step and the checkpoint (after the step was taken):
    each stage rebuilds it from the latest checkpoint, retries, and the run ends as if nothing happened."""
    from flows.iteration import spell_iteration
    from storage.layout import Manifest

    ref_runs = _reference(tmp_path)
    runs = tmp_path / "runs"
    monkeypatch.setenv("SPELL_FAULT_ACTOR_KILL", "respond_r01,grpo_step,checkpoint")
    for _ in range(2):
        spell_iteration(run="killed", config=CONFIG, overrides=[f"run.runs_dir={runs}", *QUIET])
    stages = Manifest(runs / "killed" / "iter_0001").data["stages"]
    assert {k: v["summary"].get("actor_restarts") for k, v in stages.items() if "actor_restarts" in v["summary"]} == {
        "respond_r01": 1,
        "grpo_step": 1,
        "checkpoint": 1,
    }
    _assert_same(ref_runs, runs)
