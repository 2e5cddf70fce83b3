"""A labelled judge set for the verifier (issue 25, rung B): (question, reference, candidate, label) triples
built from held-out labelled QA, on which always-YES, always-NO and string equality each score 50% balanced
accuracy, so a verifier's score above 50% is judgment, not a bias.

- a positive is the gold said another way: an alias where the set has one, else the gold reformatted
  (article added or dropped, case changed, thousands separators), never the reference's own string;
- a negative is another question's gold of the same kind (a number for a number, text for text).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from spell.data.qa import LabelledQA
from spell.rules import parse_number
from spell.text import normalize_answer

_PLAIN_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class JudgeItem:
    item_id: str
    question: str
    reference: str
    candidate: str
    label: int  # 1: the candidate means the reference; 0: it does not


def _kind(answer: str) -> str:
    return "number" if _PLAIN_NUMBER.fullmatch(answer.strip()) else "text"


def reformat(answer: str) -> str | None:
    """The same answer written differently, or None where no reformatting applies."""
    a = answer.strip()
    if _kind(a) == "number":
        value = parse_number(a)
        if value is None:
            return None
        if "," in a:
            return a.replace(",", "")
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{a}.0" if "." not in a else None
    if a.lower().startswith("the "):
        return a[4:]
    if a[:1].isalpha():
        return f"the {a}"
    return a.upper() if a.upper() != a else a.lower() if a.lower() != a else None


def positive(qa: LabelledQA) -> str | None:
    """An alias that differs from the reference's string, else the reference reformatted."""
    ref = qa.golds[0]
    for alias in qa.golds[1:]:
        if alias.strip() and alias.strip() != ref.strip():
            return alias.strip()
    return reformat(ref)


def build_judge_set(questions: Sequence[LabelledQA], seed: int = 0) -> list[JudgeItem]:
    """One positive and one negative per question where both exist (the set stays balanced)."""
    rng = random.Random(seed)
    by_kind: dict[str, list[LabelledQA]] = {}
    for qa in questions:
        by_kind.setdefault(_kind(qa.golds[0]), []).append(qa)
    out: list[JudgeItem] = []
    for qa in questions:
        ref = qa.golds[0]
        pos = positive(qa)
        norm = {normalize_answer(g) for g in qa.golds}
        others = [
            o.golds[0]
            for o in by_kind[_kind(ref)]
            if o.qa_id != qa.qa_id
            and not norm & {normalize_answer(g) for g in o.golds}
            and not any(n and (n in normalize_answer(o.golds[0]) or normalize_answer(o.golds[0]) in n) for n in norm)
        ]
        if pos is None or not others:
            continue
        out.append(JudgeItem(f"{qa.qa_id}:pos", qa.question, ref, pos, 1))
        out.append(JudgeItem(f"{qa.qa_id}:neg", qa.question, ref, rng.choice(others), 0))
    return out


def balanced_accuracy(labels: Sequence[int], verdicts: Sequence[int | None]) -> float:
    """Mean of the YES rate on positives and the NO rate on negatives; an unreadable verdict is wrong."""
    pos = [v == 1 for lab, v in zip(labels, verdicts, strict=True) if lab == 1]
    neg = [v == 0 for lab, v in zip(labels, verdicts, strict=True) if lab == 0]
    return (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2 if pos and neg else float("nan")
