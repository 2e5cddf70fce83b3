"""The verifier's calibration against decisive rule checks, and the collapse decision.

A judge that says YES to everything makes the responder reward (max(rule, verdict), Eq. 6) the judge's
bias. Some rule checks are decisive: a multiple-choice letter and a DocMath number are right or wrong
with no paraphrase possible, and a general-QA cover-exact-match hit is right. Measuring the majority
against those tells a calibrated verifier from a collapsed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from spell import task_types


def decisive_label(task: str, prediction: str | None, rule: float, reference: str | None = None) -> int | None:
    """1 or 0 where the rule check settles the answer without a judge, else None (the task type decides:
    a general-QA miss may be a paraphrase, a wrong letter, number or year is wrong)."""
    if prediction is None:
        return None
    return task_types.get(task).decisive_label(prediction, rule, reference)


@dataclass(frozen=True)
class Calibration:
    """One round's verifier majorities against the decisive rule labels."""

    verified: int = 0
    yes_rate: float = 0.0
    decisive_wrong: int = 0
    false_yes_rate: float = 0.0
    decisive_right: int = 0
    false_no_rate: float = 0.0
    decisive_agreement: float = 0.0
    collapsed: bool = False
    # the evidence the collapse decision pooled (guards.collapse_window rounds, this one included)
    window_rounds: int = 1
    window_decisive_wrong: int = 0
    window_false_yes_rate: float = 0.0

    def row(self, ids: dict[str, Any]) -> dict[str, Any]:
        return {**ids, **asdict(self)}


def verifier_calibration(
    samples: Sequence[tuple[Any, ...]],
    false_yes_limit: float = 0.5,
    min_decisive: int = 3,
    guard: bool = True,
    earlier: Sequence[Calibration] = (),
) -> Calibration:
    """`samples`: (task, prediction, rule score, majority or None[, reference]) per responder answer.
    Collapsed when the guard is on and, pooled over this round and the `earlier` ones of its window, at least
    `min_decisive` decisive rule-wrong answers got a verdict and the share of them the majority called YES
    exceeds `false_yes_limit`."""
    verdicts = [(s[0], s[1], s[2], s[3], s[4] if len(s) > 4 else None) for s in samples if s[3] is not None]
    yes = sum(1 for v in verdicts if v[3] == 1)
    wrong = [m for t, p, r, m, ref in verdicts if decisive_label(t, p, r, ref) == 0]
    right = [m for t, p, r, m, ref in verdicts if decisive_label(t, p, r, ref) == 1]
    false_yes = sum(1 for m in wrong if m == 1) / len(wrong) if wrong else 0.0
    false_no = sum(1 for m in right if m == 0) / len(right) if right else 0.0
    decisive = len(wrong) + len(right)
    agree = (sum(1 for m in wrong if m == 0) + sum(1 for m in right if m == 1)) / decisive if decisive else 0.0
    w_wrong = len(wrong) + sum(c.decisive_wrong for c in earlier)
    w_false = sum(1 for m in wrong if m == 1) + sum(c.false_yes_rate * c.decisive_wrong for c in earlier)
    w_rate = w_false / w_wrong if w_wrong else 0.0
    return Calibration(
        verified=len(verdicts),
        yes_rate=yes / len(verdicts) if verdicts else 0.0,
        decisive_wrong=len(wrong),
        false_yes_rate=false_yes,
        decisive_right=len(right),
        false_no_rate=false_no,
        decisive_agreement=agree,
        collapsed=guard and w_wrong >= min_decisive and w_rate > false_yes_limit,
        window_rounds=1 + len(earlier),
        window_decisive_wrong=w_wrong,
        window_false_yes_rate=w_rate,
    )


def from_row(row: dict[str, Any]) -> Calibration:
    """A stored calibration row back as a Calibration (the window's earlier rounds)."""
    names = Calibration.__dataclass_fields__
    return Calibration(**{k: row[k] for k in names if row.get(k) is not None})
