"""Planted reward hacking through the real stages (scripted backend, SPELL_FAULT_HACK): with the guards on,
copied proposals are rejected with reasons in DuckDB and counted in the summary, and an all-YES verifier
trips the collapse guard so the responder reward is the rule check. That with the switches off the same hacks
pass (the paper's behaviour) is checked stage by stage in tests/test_guards.py."""

from pathlib import Path

import pytest

from storage.views import open_history

pytestmark = [pytest.mark.slow, pytest.mark.ray]
CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")
GUARDS_ON = [
    f"guards.{g}=true"
    for g in ("template_answer", "not_a_question", "answer_not_in_docs", "template_number", "mc_options",
              "answer_in_question", "placeholder_answer", "verifier_collapse")
]  # fmt: skip


def _run(runs: Path, name: str, overrides: list[str]) -> dict:
    from flows.iteration import spell_iteration
    from spell.engine.ray_policy import kill_policy_actor
    from tasks.actor import HANDLES

    before = set(HANDLES)
    ov = [f"run.runs_dir={runs}", "sampling.max_rounds=1", *overrides]
    try:
        return spell_iteration(run=name, config=CONFIG, overrides=ov)
    finally:  # the session's Ray has 16 logical CPUs for every test: give this run's policy actor back
        for actor in set(HANDLES) - before:
            kill_policy_actor(actor)
            HANDLES.pop(actor)


def test_planted_hacks_are_rejected_and_the_collapsed_verifier_is_overruled(
    prefect_api, ray_local, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPELL_FAULT_HACK", "copy_template,yes_verifier")
    guarded = _run(tmp_path, "guarded", GUARDS_ON)
    con = open_history(tmp_path)

    def one(sql: str, run: str) -> tuple:
        return con.execute(sql, [run]).fetchone()

    rejected, copied = one(
        "SELECT count(*) FILTER (WHERE status = 'rejected'), "
        "count(*) FILTER (WHERE status = 'ok' AND (answer = '12.5' OR question NOT LIKE '%?')) "
        "FROM questions WHERE run = ?",
        "guarded",
    )
    assert rejected >= 2 and copied == 0
    (reasons,) = one("SELECT list(DISTINCT reason) FROM questions WHERE run = ? AND status = 'rejected'", "guarded")
    assert all(r.startswith("guard ") for r in reasons)
    m = guarded["metrics"]
    assert sum(v for k, v in m.items() if k.startswith("guard/")) == rejected
    assert m["verifier/yes_rate"] == 1.0 and m["verifier/collapsed_rounds"] == 1.0
    rule_mismatch, sources = one(
        "SELECT count(*) FILTER (WHERE reward != rule_score), list(DISTINCT label_source) FROM rewards "
        "WHERE run = ? AND role = 'responder'",
        "guarded",
    )
    assert rule_mismatch == 0 and sources == ["rule"]
    (cases,) = one("SELECT list(DISTINCT \"case\") FROM rewards WHERE run = ? AND role = 'questioner'", "guarded")
    assert "rejected" in cases
