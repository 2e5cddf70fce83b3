"""A corpus with every kind of bad row: the iteration skips each one, records why in the `rejects`
table, and trains on the rest; a corpus with too little left stops before any generation."""

import json
from pathlib import Path

import pytest

from spell.data.synthetic import synthetic_rows
from storage.views import open_history

pytestmark = [pytest.mark.slow, pytest.mark.ray]
CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "cpu-smoke.yaml")
HUGE = "The archive of Ostmere lists every ship. " * 3000  # about 120k bytes: over any prompt limit here


def bad_rows() -> list[dict]:
    return [
        {"cluster_id": "empty-doc", "task": "doc_mc", "documents": ["a town", "", "another"]},
        {"cluster_id": "non-text", "task": "doc_mc", "documents": ["a town", 42, {"x": 1}]},
        {"cluster_id": "no-docs", "task": "doc_mc"},
        {"task": "doc_mc", "documents": ["a", "b", "c"]},
        {"cluster_id": "doc_mc-000", "task": "doc_mc", "documents": ["dup", "dup", "dup"]},
        {"cluster_id": "thin", "task": "doc_mc", "documents": ["one", "two"]},
        {"cluster_id": "bad-task", "task": "poetry", "documents": ["a", "b", "c"]},
        {"cluster_id": "one-huge", "task": "doc_general_qa", "documents": ["x is 1.", "y is 2.", HUGE, "z is 3."]},
        {"cluster_id": "mostly-huge", "task": "doc_general_qa", "documents": ["x is 1.", HUGE, HUGE, "z is 3."]},
    ]


def _write(path: Path, rows: list[dict], garbage: int = 1) -> str:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n" + "{not json\n" * garbage)
    return str(path)


def test_bad_rows_skipped_recorded_and_the_run_continues(prefect_api, ray_local, tmp_path):
    from flows.iteration import spell_iteration

    corpus = _write(tmp_path / "corpus.jsonl", synthetic_rows() + bad_rows())
    ov = [f"run.runs_dir={tmp_path / 'runs'}", f"data.corpus={corpus}", "responder.max_prompt_tokens=8192"]
    out = spell_iteration(run="bad", config=CONFIG, overrides=ov)
    assert out["usable_groups"] >= 4 and out["metrics"]["train/tokens"] > 0
    con = open_history(tmp_path / "runs")
    got = con.execute("SELECT cluster_id, doc_index, reason FROM rejects ORDER BY row, doc_index").fetchall()
    reasons = {(c, d): r for c, d, r in got}
    assert reasons[("empty-doc", 1)] == "empty document" and ("empty-doc", -1) not in reasons
    assert reasons[("non-text", 1)] == "document is not text (int)" and reasons[("non-text", 2)].endswith("(dict)")
    assert reasons[("no-docs", -1)] == "missing column 'documents'"
    assert reasons[("<row 21>", -1)] == "missing column 'cluster_id'"
    assert reasons[("doc_mc-000", -1)] == "duplicate cluster_id"
    assert not any(c == "thin" for c, _ in reasons)  # Part A: fewer than m documents is used, not rejected
    assert reasons[("bad-task", -1)] == "unknown task 'poetry'"
    assert reasons[("one-huge", 2)].endswith("> responder.max_prompt_tokens=8192")
    assert ("one-huge", -1) not in reasons  # three documents left: the cluster stays
    assert reasons[("mostly-huge", 1)] == reasons[("mostly-huge", 2)] and ("mostly-huge", -1) not in reasons
    assert any("not JSON" in r for r in reasons.values())
    assert len(got) == 11
    used = {c for (c,) in con.execute("SELECT DISTINCT cluster_id FROM prompts").fetchall()}
    assert not used & {"bad-task", "no-docs"}


def test_too_few_good_rows_stop_with_a_clear_message(prefect_api, ray_local, tmp_path):
    from flows.iteration import spell_iteration
    from spell.data.clusters import CorpusError

    corpus = _write(tmp_path / "corpus.jsonl", synthetic_rows(clusters_per_task=1) + bad_rows(), garbage=5)
    ov = [f"run.runs_dir={tmp_path / 'runs'}", f"data.corpus={corpus}"]
    with pytest.raises(CorpusError, match=r"rows rejected .* data.max_reject_share=0.5\); most common"):
        spell_iteration(run="worse", config=CONFIG, overrides=ov)
    d = tmp_path / "runs" / "worse" / "iter_0001"
    assert (d / "rejects.parquet").is_file() and not list(d.glob("prompts_*"))
