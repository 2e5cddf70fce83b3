"""Public evaluation metrics. Training rewards use the same rule implementations (spell.rules, picked per task type).

from spell.eval.metrics import cover_exact_match, qa_f1, pass_at_k
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from math import comb

from spell.roles.verifier import parse_vote
from spell.rules import cover_exact_match, docmath_match, extract_mc_answer
from spell.task_types import extract_answer as _extract_for_role
from spell.text import normalize_answer
from spell.vocab import DOCMATH, GENERAL_QA, MULTIPLE_CHOICE

__all__ = [
    "cover_exact_match",
    "docmath_match",
    "extract_answer",
    "extract_choice",
    "normalize_answer",
    "parse_judgment",
    "pass_at_k",
    "qa_f1",
]

# benchmark -> the training task whose answer format it uses
BENCHMARK_TASK = {
    "docmath": DOCMATH,
    "frames": GENERAL_QA,
    "hotpotqa": GENERAL_QA,
    "2wikimqa": GENERAL_QA,
    "musique": GENERAL_QA,
    "longbench-v2": MULTIPLE_CHOICE,
}


def qa_f1(prediction: str | None, golds: str | Iterable[str]) -> float:
    """LongBench's token F1 over normalised tokens, best over golds."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in [golds] if isinstance(golds, str) else golds:
        g = normalize_answer(gold).split()
        common = Counter(pred) & Counter(g)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(pred), same / len(g)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def extract_answer(text: str | None, task: str) -> str | None:
    """The answer string of a response (reasoning stripped first), for a benchmark or a training task."""
    return _extract_for_role(text, BENCHMARK_TASK.get(task, task))


def extract_choice(text: str | None) -> str | None:
    """LongBench-v2's letter as the official SPELL evaluation reads it (the training MC patterns, spec Part B
    §6.4): `\\boxed{X}`, 'correct answer is (X)', 'correct answer is X', 'answer is (X)', 'answer is X', the
    first pattern that matches and its last match; uppercase A-D only, reasoning stripped, '*' removed."""
    return extract_mc_answer(text)


def parse_judgment(text: str | None) -> int | None:
    """1 (YES), 0 (NO) or None (unreadable, or reasoning cut off) from a judge reply."""
    vote = parse_vote(text)
    return None if vote == -1 else vote


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021; paper Eq. 11): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def best_of_k(scores: Sequence[float], k: int) -> float:
    """The official evaluation's "best@k": the expected max of k of a question's scores drawn with replacement,
    which its 1,000 seeded draws estimate (spec Part B §6.6); computed exactly here, so no draws and no seed.
    With s sorted ascending, P(max = s_i) = (i/n)^k - ((i-1)/n)^k. Lower than pass@k: at k = n = 8 one right
    sample in 8 gives 1 - (7/8)^8 = 0.66, not 1."""
    n = len(scores)
    if n == 0 or k < 1:
        raise ValueError(f"need at least one score and k >= 1, got {n} scores, k={k}")
    return sum(s * ((i / n) ** k - ((i - 1) / n) ** k) for i, s in enumerate(sorted(scores), start=1))
