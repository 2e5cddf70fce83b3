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


def decisive_label(task: str, prediction: str | None, rule: float) -> int | None:
    """1 or 0 where the rule check settles the answer without a judge, else None (the task type decides:
    a general-QA miss may be a paraphrase, a wrong letter or number is wrong)."""
    if prediction is None:
        return None
    return task_types.get(task).decisive_label(prediction, rule)


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

    def row(self, ids: dict[str, Any]) -> dict[str, Any]:
        return {**ids, **asdict(self)}


def verifier_calibration(
    samples: Sequence[tuple[str, str | None, float, int | None]],
    false_yes_limit: float = 0.5,
    min_decisive: int = 3,
    guard: bool = True,
) -> Calibration:
    """`samples`: (task, prediction, rule score, majority or None) per responder answer. Collapsed when the
    guard is on, at least `min_decisive` decisive rule-wrong answers got a verdict, and the share of them the
    majority called YES exceeds `false_yes_limit`."""
    verdicts = [(t, p, r, m) for t, p, r, m in samples if m is not None]
    yes = sum(1 for *_, m in verdicts if m == 1)
    wrong = [m for t, p, r, m in verdicts if decisive_label(t, p, r) == 0]
    right = [m for t, p, r, m in verdicts if decisive_label(t, p, r) == 1]
    false_yes = sum(1 for m in wrong if m == 1) / len(wrong) if wrong else 0.0
    false_no = sum(1 for m in right if m == 0) / len(right) if right else 0.0
    decisive = len(wrong) + len(right)
    agree = (sum(1 for m in wrong if m == 0) + sum(1 for m in right if m == 1)) / decisive if decisive else 0.0
    return Calibration(
        verified=len(verdicts),
        yes_rate=yes / len(verdicts) if verdicts else 0.0,
        decisive_wrong=len(wrong),
        false_yes_rate=false_yes,
        decisive_right=len(right),
        false_no_rate=false_no,
        decisive_agreement=agree,
        collapsed=guard and len(wrong) >= min_decisive and false_yes > false_yes_limit,
    )
