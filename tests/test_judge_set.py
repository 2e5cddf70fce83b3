"""The verifier's labelled judge set (issue 25, rung B): balanced, and blind to the biases it must expose."""

from pathlib import Path

import pytest

from spell.data.qa import LabelledQA
from spell.eval.judge_set import balanced_accuracy, build_judge_set, reformat
from spell.text import normalize_answer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _qa(i: int, gold: str, *aliases: str) -> LabelledQA:
    return LabelledQA(f"q{i}", "doc_general_qa", ("A doc.",), f"Question {i}?", (gold, *aliases))


def _check(items) -> None:
    labels = [x.label for x in items]
    assert sum(labels) * 2 == len(labels)  # one positive per negative
    assert balanced_accuracy(labels, [1] * len(items)) == 0.5  # always YES
    assert balanced_accuracy(labels, [0] * len(items)) == 0.5  # always NO
    equal = [int(x.candidate == x.reference) for x in items]
    assert balanced_accuracy(labels, equal) == 0.5  # string equality: a positive is never the reference's string
    for x in items:
        if x.label == 0:  # a negative is another answer, not a variant of this one
            assert normalize_answer(x.candidate) != normalize_answer(x.reference)


def test_positives_are_variants_and_negatives_other_golds_of_the_same_kind():
    qa = [_qa(0, "Paris"), _qa(1, "the Nile"), _qa(2, "1,200"), _qa(3, "1991"), _qa(4, "Rome", "Roma"), _qa(5, "44")]
    items = build_judge_set(qa, seed=0)
    _check(items)
    by_id = {x.item_id: x for x in items}
    assert by_id["q0:pos"].candidate == "the Paris" and by_id["q1:pos"].candidate == "Nile"
    assert by_id["q2:pos"].candidate == "1200" and by_id["q4:pos"].candidate == "Roma"
    assert by_id["q2:neg"].candidate in ("1991", "44")  # a number for a number
    assert by_id["q0:neg"].candidate in ("the Nile", "Rome")
    assert balanced_accuracy([1, 0], [None, 0]) == 0.5  # an unreadable verdict counts as wrong
    assert reformat("5.5") is None


def test_the_held_out_sets_give_at_least_400_balanced_triples():
    from spell.data.heldout import held_out

    sets = held_out(SHARED)
    if not sets:
        pytest.skip(f"the shared data folder {SHARED} is absent on this machine")
    questions = [x for qa in sets.values() for x in qa[:80]]
    items = build_judge_set(questions, seed=0)
    assert len(items) >= 400
    _check(items)
