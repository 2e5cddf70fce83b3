"""The two evaluation switches that reproduce the released code where spec Part A departs from it:
`eval.pass_k_estimator=bootstrap` (its best@k) and `eval.first_answer_only` (its answers[0])."""

import random

import pytest

from spell.config import EvalConfig
from spell.eval.benchmarks import EvalItem
from spell.eval.metrics import best_of_k, pass_at_k
from spell.eval.runner import run_benchmark


def _monte_carlo(scores: list[float], k: int, draws: int, seed: int) -> float:
    """The released code's procedure, written from its description: k draws with replacement, the max, averaged."""
    rng = random.Random(seed)
    return sum(max(rng.choice(scores) for _ in range(k)) for _ in range(draws)) / draws


@pytest.mark.parametrize("scores", [[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0], [0.5, 0, 1, 0.25], [0, 0, 0]])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_best_of_k_is_the_expectation_the_bootstrap_estimates(scores, k):
    exact = best_of_k(scores, k)
    draws = 20000  # scores lie in [0, 1]: the Monte Carlo mean's standard error is at most 0.5 / sqrt(draws)
    assert _monte_carlo(scores, k, draws, seed=42) == pytest.approx(exact, abs=5 * 0.5 / draws**0.5)


def test_best_of_k_closed_values_and_its_gap_to_pass_at_k():
    one_of_eight = [1.0] + [0.0] * 7
    assert best_of_k(one_of_eight, 1) == pytest.approx(1 / 8)
    assert best_of_k(one_of_eight, 8) == pytest.approx(1 - (7 / 8) ** 8)  # 0.656, where pass@8 says 1
    assert pass_at_k(8, 1, 8) == 1.0
    for c in range(9):  # on 0/1 scores best@k never exceeds pass@k, and they agree at k = 1
        scores = [1.0] * c + [0.0] * (8 - c)
        assert best_of_k(scores, 1) == pytest.approx(pass_at_k(8, c, 1))
        for k in (2, 4, 8):
            assert best_of_k(scores, k) <= pass_at_k(8, c, k) + 1e-12
    with pytest.raises(ValueError):
        best_of_k([], 2)


def _rollout(texts):
    def rollout(ids, params, max_prompt_tokens=None, prefills=None):
        return [{"completions": [{"text": t, "token_ids": [1], "finish_reason": "stop"} for t in texts]} for _ in ids]

    return rollout


def test_the_estimator_switch_reaches_the_summary():
    item = EvalItem("1", "hotpotqa", "ctx", "Who?", None, ("Ann",))
    texts = ["The correct answer is Ann."] + ["The correct answer is Bob."] * 3
    got = {}
    for est in ("unbiased", "bootstrap"):
        cfg = EvalConfig(n_samples=4, pass_k=[1, 4], pass_k_estimator=est)
        got[est] = run_benchmark("hotpotqa", [item], cfg, lambda ps: [[1]], _rollout(texts), None).summary
    assert got["unbiased"]["pass@4"] == 1.0 and got["unbiased"]["pass_k_estimator"] == "unbiased"
    assert got["bootstrap"]["pass@4"] == pytest.approx(1 - (3 / 4) ** 4)
    assert got["bootstrap"]["pass@1"] == got["unbiased"]["pass@1"] == pytest.approx(0.25)


def test_first_answer_only_scores_longbench_qa_against_its_first_answer():
    texts = ["The correct answer is City of Light."]
    qa = EvalItem("1", "hotpotqa", "ctx", "Which city?", None, ("Paris", "City of Light"))
    frames = EvalItem("2", "frames", "ctx", "Which city?", None, ("Paris", "City of Light"))
    for item, first_only, score, golds in (
        (qa, False, 1.0, "all"),
        (qa, True, 0.0, "first"),
        (frames, True, 1.0, "all"),  # only LongBench QA: Frames and the others keep every listed answer
    ):
        cfg = EvalConfig(n_samples=1, pass_k=[1], first_answer_only=first_only)
        res = run_benchmark(item.benchmark, [item], cfg, lambda ps: [[1]], _rollout(texts), None)
        assert (res.summary["rule"], res.summary["golds"]) == (score, golds)
