"""Short-context held-out sets (spell.data.heldout): what each holds, on a synthetic file and on the shared
samples where they are present."""

import json
from pathlib import Path

import pytest

from spell.data.heldout import held_out, hotpot_gold, musique_single_hop

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_musique_steps_stand_alone(tmp_path):
    row = {
        "id": "2hop__1",
        "paragraphs": [{"idx": 0, "title": "Song", "paragraph_text": "Hello Love is sung by Hank Snow."},
                       {"idx": 1, "title": "Hank Snow", "paragraph_text": "Hank Snow died in Madison."}],
        "question_decomposition": [
            {"id": 1, "question": "Hello Love >> performer", "answer": "Hank Snow", "paragraph_support_idx": 0},
            {"id": 2, "question": "Where did #1 die?", "answer": "Madison", "paragraph_support_idx": 1},
        ],
    }  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps([row]))
    steps = musique_single_hop(tmp_path / "m.json")
    assert [s.question for s in steps] == ["What is the performer of Hello Love?", "Where did Hank Snow die?"]
    assert [s.golds for s in steps] == [("Hank Snow",), ("Madison",)]
    assert steps[1].documents == ("Hank Snow\nHank Snow died in Madison.",)  # its supporting paragraph only


def test_hotpot_keeps_gold_paragraphs_and_drops_yes_no(tmp_path):
    ctx = [["A", ["a1. ", "a2."]], ["B", ["b1."]], ["C", ["c1."]]]
    rows = [
        {"_id": "1", "question": "Q?", "answer": "x", "supporting_facts": [["A", 0], ["C", 0]], "context": ctx},
        {"_id": "2", "question": "Is it?", "answer": "yes", "supporting_facts": [["A", 0]], "context": ctx},
    ]
    (tmp_path / "h.json").write_text(json.dumps(rows))
    (q,) = hotpot_gold(tmp_path / "h.json")
    assert q.documents == ("A\na1. a2.", "C\nc1.")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared data folder is absent on this machine")
def test_the_shared_sets_have_the_sizes_the_experiments_plan_for():
    sets = held_out(SHARED)
    assert {k: len(v) for k, v in sets.items()} == {"musique_single_hop": 237, "hotpot_gold": 91,
                                                    "tatqa_text_spans": 349}  # fmt: skip
    assert not any("#" in q.question or ">>" in q.question for q in sets["musique_single_hop"])
    assert all(q.documents and all(d.strip() for d in q.documents) for v in sets.values() for q in v)
