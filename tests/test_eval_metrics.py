"""Evaluation metrics on tricky cases, pass@k against the closed form, middle truncation."""

from itertools import combinations
from math import comb

import pytest

from spell.eval.benchmarks import EvalItem
from spell.eval.metrics import (
    cover_exact_match,
    docmath_match,
    extract_answer,
    extract_choice,
    normalize_answer,
    parse_judgment,
    pass_at_k,
    qa_f1,
)
from spell.eval.prompts import item_prompt, middle_truncate
from spell.eval.runner import paper_average, rule_score


@pytest.mark.parametrize(
    ("pred", "golds", "cem"),
    [
        ("The Beatles", "Beatles", 1.0),  # articles
        ("U.S.A!", "usa", 1.0),  # punctuation
        ("PARIS, France", "paris", 1.0),  # case
        ("It was Lyon", ["Paris", "Lyon"], 1.0),  # several golds
        ("Lyon", ["Paris", "Marseille"], 0.0),
        ("", "x", 0.0),
        ("word " * 5000 + "needle", "needle", 1.0),  # very long prediction
        ("Ångström unit", "ångström", 1.0),  # unicode
    ],
)
def test_cover_exact_match(pred, golds, cem):
    assert cover_exact_match(pred, golds) == cem


def test_qa_f1():
    assert qa_f1("the cat sat", "cat sat") == pytest.approx(1.0)
    assert qa_f1("a big red dog", "red cat") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert qa_f1("dog", ["cat", "dog"]) == 1.0
    assert qa_f1("", "x") == 0.0 and qa_f1(None, "x") == 0.0


@pytest.mark.parametrize(
    ("text", "task", "answer"),
    [
        ("<think>The answer is Rome</think>The correct answer is Paris.", "hotpotqa", "Paris"),
        ("<think>unclosed... the answer is Rome", "frames", None),
        ("so \\boxed{42}", "docmath", "42"),
        ("Therefore, the answer is 1,234.5.", "docmath", "1234.5"),
        ("The answer is (B)", "longbench-v2", "B"),
        ("no answer here", "musique", None),
    ],
)
def test_extract_answer(text, task, answer):
    assert extract_answer(text, task) == answer


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (C)**", "C"),
        ("The correct answer is D.", "D"),
        ("B.", None),  # LongBench-v2's extraction needs its sentence
        ("the correct answer is (b)", None),  # lowercase is not accepted, as in LongBench-v2
        ("<think>The correct answer is (A)</think>The correct answer is (B)", "B"),
        ("<think>The correct answer is (A)", None),
        # the official patterns in order (spec Part B §3.1, §6.4): the first pattern that matches wins
        ("\\boxed{C} although the correct answer is (B)", "C"),
        ("the correct answer is (A) or the correct answer is D", "A"),
        ("the correct answer is D, not the answer is (B)", "D"),
        ("the answer is (A), and then the answer is B", "A"),
        ("first the answer is B, finally the answer is C", "C"),  # the last match of the pattern
        ("The answer is Apple", None),  # a word starting with A is no letter
    ],
)
def test_extract_choice(text, choice):
    assert extract_choice(text) == choice


@pytest.mark.parametrize(
    ("pred", "gold", "ok"),
    [
        ("1,234.5", "1234.5", True),
        ("12.5%", "0.125", True),
        ("3.2 million", "3200000", True),
        ("$100.1", "100", True),
        ("99", "100", False),
        ("0.3334", "0.3333", True),
    ],
)
def test_docmath_numbers(pred, gold, ok):
    assert docmath_match(pred, gold) is ok


def test_parse_judgment():
    assert parse_judgment("Explanation: same.\nDecision: [[YES]]") == 1
    assert parse_judgment("Decision: [[NO]]") == 0
    assert parse_judgment("I am not sure") is None
    assert parse_judgment("<think>hmm") is None


def _brute_pass_at_k(n, c, k):
    correct = set(range(c))
    subsets = list(combinations(range(n), k))
    return sum(1 for s in subsets if correct & set(s)) / len(subsets)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(8, 0, 1), (8, 1, 1), (8, 1, 8), (8, 3, 2), (8, 4, 4), (8, 8, 1), (5, 2, 3), (10, 7, 5), (4, 1, 2)],
)
def test_pass_at_k_matches_closed_form(n, c, k):
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))
    assert pass_at_k(8, 1, 8) == 1.0  # unlike the official bootstrap best-of-k


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError):
        pass_at_k(8, 9, 1)
    with pytest.raises(ValueError):
        pass_at_k(8, 1, 9)


def test_middle_truncation_keeps_first_and_last_halves():
    ids = list(range(100))
    assert middle_truncate(ids, 200) == ids
    out = middle_truncate(ids, 10)
    assert out == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert middle_truncate(ids, 11) == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]  # floor(11/2) each side


def test_rule_scores_and_prompts_per_benchmark():
    mc = EvalItem("1", "longbench-v2", "ctx", "Q?", {"A": "a", "B": "b", "C": "c", "D": "d"}, ("B",))
    assert rule_score(mc, "The correct answer is (B)")[1] == 1.0
    assert "Choices:\n(A) a" in item_prompt(mc)
    dm = EvalItem("2", "docmath", "ctx", "How much?", None, ("0.25",))
    assert rule_score(dm, "Therefore, the answer is 25%.")[1] == 1.0
    assert "Therefore, the answer is" in item_prompt(dm)
    qa = EvalItem("3", "hotpotqa", "ctx", "Who?", None, ("Ann Lee", "Ann"))
    pred, rule, f1 = rule_score(qa, "The correct answer is Ann Lee.")
    assert (pred, rule, f1) == ("Ann Lee", 1.0, 1.0)


def test_paper_average_uses_lb_mqa_mean():
    s = {
        b: {"score": v}
        for b, v in [
            ("docmath", 0.384),
            ("frames", 0.403),
            ("hotpotqa", 0.5),
            ("2wikimqa", 0.4),
            ("musique", 0.453),
            ("longbench-v2", 0.29),
        ]
    }
    # Table 1 check from the spec: (38.4 + 40.3 + 45.1 + 29.0) / 4 = 38.2
    assert 100 * paper_average(s) == pytest.approx((38.4 + 40.3 + 45.1 + 29.0) / 4, abs=0.01)
    assert normalize_answer("The End.") == "end"


def test_prefill_reaches_the_engine_when_asked():
    from spell.config import EvalConfig
    from spell.eval.runner import run_benchmark

    seen = {}

    def rollout(ids, params, max_prompt_tokens=None, prefills=None):
        seen["prefills"] = prefills
        return [{"completions": [{"text": "The correct answer is Ann.", "token_ids": [1], "finish_reason": "stop"}]}]

    item = EvalItem("1", "hotpotqa", "ctx", "Who?", None, ("Ann",))
    res = run_benchmark(
        "hotpotqa", [item], EvalConfig(n_samples=1, pass_k=[1]), lambda ps: [[1]], rollout, None, prefill=True
    )
    assert seen["prefills"] == ["The correct answer is"] and res.summary["score"] == 1.0
    run_benchmark("hotpotqa", [item], EvalConfig(n_samples=1, pass_k=[1]), lambda ps: [[1]], rollout, None)
    assert seen["prefills"] is None
