"""The loop learns: through the real stages (sample docs -> question -> respond -> verify -> reward -> batch ->
GRPO step -> next iteration), the real transformers generator and the real learner raise the responder's rule
reward on a controlled task, and the same run with negated advantages does not.

The task: documents pair marker words with colour words ("zorp red . klim tan ."); the questioner and the
verifier are played by rule (`engine.scripted_roles`) and ask "which word comes right after 'zorp'?"; the
responder is a tiny random model with a word-level vocabulary of 12 tokens that answers in one token after
the prefilled answer phrase. A random model is right ~8% of the time (so groups have reward variance from
the first iteration); GRPO then raises the rule accuracy by learning which words answer. The accuracy is
the rule check's (CEM), never the verifier's, so a lenient verifier cannot fake the rise.
"""

import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]
MARKERS = ["zorp", "klim", "vask", "trel"]
COLOURS = ["red", "tan", "sky", "ash"]  # <= 3 letters: the rule questioner asks only about longer words
ITERATIONS = 6


def _corpus(path: Path, clusters: int = 12, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = []
    for c in range(clusters):
        docs = [" ".join(f"{m} {COLOURS[MARKERS.index(m)]} ." for m in rng.sample(MARKERS, 2)) for _ in range(4)]
        rows.append({"cluster_id": f"c{c}", "task": "doc_general_qa", "documents": docs})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def _accuracy_curve(tmp: Path, name: str) -> list[float]:
    from flows.iteration import spell_iteration

    config = tmp / "controlled.yaml"
    config.write_text(
        "data:\n  task_weights: {doc_general_qa: 1, doc_mc: 0, docmath_qa: 0}\n  docs_per_visit: 2\n"
        "engine:\n  backend: transformers\n  scripted_roles: [questioner, verifier]\n"
        "rollout:\n  prefill: [responder]\n  role_max_new_tokens: {questioner: 64, responder: 1, verifier: 16}\n"
        "grounding:\n  enabled: false\nhistory:\n  enabled: false\n"
        "responder:\n  group_size: 8\nverifier:\n  votes: 4\n"
        "sampling:\n  questions_per_round: 16\n  train_batch_size: 8\n  max_rounds: 2\n"
        "optim:\n  lr: 3.0e-3\ntracking:\n  mlflow: false\n"
    )
    ov = [f"run.runs_dir={tmp / name}", f"data.corpus={tmp / 'corpus.jsonl'}", f"model.path={tmp / 'model'}"]
    curve = []
    for _ in range(ITERATIONS):
        out = spell_iteration(run=name, config=str(config), overrides=ov)
        rows = [r for f in sorted(Path(out["dir"]).glob("responses_r*.parquet")) for r in pq.read_table(f).to_pylist()]
        assert rows  # (a collapsed control may have no group left to train on: that is its point)
        curve.append(sum(r["rule_score"] for r in rows) / len(rows))
    return curve


def test_grpo_raises_the_rule_reward_and_negated_advantages_do_not(prefect_api, ray_local, tmp_path, monkeypatch):
    from spell.engine.models.tiny import build_tiny_model

    build_tiny_model(tmp_path / "model", words=[*MARKERS, *COLOURS, "."])
    _corpus(tmp_path / "corpus.jsonl")
    learned = _accuracy_curve(tmp_path, "learn")
    monkeypatch.setenv("SPELL_FAULT_NEGATE_ADVANTAGES", "1")  # test-only switch, read by the select-batch task
    control = _accuracy_curve(tmp_path, "control")
    print(
        f"rule accuracy per iteration: GRPO {[round(x, 3) for x in learned]}, negated {[round(x, 3) for x in control]}"
    )
    assert learned[0] == control[0]  # the same model, seeds and questions before the first step
    # ~110 answers per iteration: the mean of the last three has a standard error of ~0.025
    assert sum(learned[-3:]) / 3 >= learned[0] + 0.08, learned
    assert sum(control[-3:]) / 3 <= control[0], control
