"""Per-iteration learning signals that a reward curve alone hides, from the DuckDB views of one run.

A rising reward can be a questioner copying a prompt example or a verifier that says YES to everything;
these columns separate those from learning: how many proposals are valid at all, how many sit at the
responder's frontier, how often the responder is right by the rule check (no judge involved), and how
often the verifier's majority agrees with a decisive rule check (`spell.calibration`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

COLUMNS = (
    "iteration",
    "questions",
    "valid_share",
    "good_share",
    "answers",
    "rule_accuracy",
    "reward_accuracy",
    "decisive",
    "verifier_agreement",
    "verifier_yes_rate",
    "verifier_false_yes_rate",
    "collapsed_rounds",
    "guard_rejects",
)

# one round's calibration rows pooled over rounds, each rate weighted by the answers it is a share of
CALIBRATION_AGGREGATES = """
    sum(yes_rate * verified) / nullif(sum(verified), 0) AS yes_rate,
    sum(false_yes_rate * decisive_wrong) / nullif(sum(decisive_wrong), 0) AS false_yes_rate,
    sum(false_no_rate * decisive_right) / nullif(sum(decisive_right), 0) AS false_no_rate,
    sum(decisive_agreement * (decisive_wrong + decisive_right))
        / nullif(sum(decisive_wrong + decisive_right), 0) AS decisive_agreement,
    sum(decisive_wrong + decisive_right) AS decisive,
    sum(CASE WHEN collapsed THEN 1 ELSE 0 END) AS collapsed_rounds"""

LEARNING_SQL = f"""
WITH q AS (
    SELECT iteration, count(*) AS questions,
           -- valid: parsed, guard-passed and grounded (a skipped proposal never reached the responder)
           avg(CASE WHEN "case" IN ('good', 'zero_variance') THEN 1.0 ELSE 0.0 END) AS valid_share,
           avg(CASE WHEN "case" = 'good' THEN 1.0 ELSE 0.0 END) AS good_share,
           sum(CASE WHEN "case" = 'rejected' THEN 1 ELSE 0 END) AS guard_rejects
    FROM rewards WHERE branch = '' AND role = 'questioner' GROUP BY iteration),
r AS (
    SELECT iteration, count(*) AS answers, avg(rule_score) AS rule_accuracy, avg(reward) AS reward_accuracy
    FROM rewards WHERE branch = '' AND role = 'responder' GROUP BY iteration),
c AS (SELECT iteration, {CALIBRATION_AGGREGATES} FROM calibration WHERE branch = '' GROUP BY iteration)
SELECT q.iteration, questions, valid_share, good_share, coalesce(answers, 0), rule_accuracy, reward_accuracy,
       coalesce(decisive, 0), decisive_agreement, yes_rate, false_yes_rate, coalesce(collapsed_rounds, 0),
       guard_rejects
FROM q LEFT JOIN r USING (iteration) LEFT JOIN c USING (iteration)
ORDER BY q.iteration
"""


def learning_rows(con: Any) -> list[dict[str, Any]]:
    """One dict per iteration with `COLUMNS`; None where an iteration had nothing to measure."""
    return [dict(zip(COLUMNS, row, strict=True)) for row in con.execute(LEARNING_SQL).fetchall()]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys on xs (0 when xs do not vary)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def trend(
    xs: Sequence[float], ys: Sequence[float], reps: int = 2000, seed: int = 0
) -> tuple[float, float, float] | None:
    """Change over the run (slope x span of iterations) with a 95% pairs-bootstrap CI over iterations.

    Resampling whole iterations keeps the iteration-to-iteration noise in the interval: a trend whose CI
    excludes 0 rose (or fell) beyond what the spread between iterations explains. None with < 3 points.
    """
    pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if len(pts) < 3:
        return None
    span = max(x for x, _ in pts) - min(x for x, _ in pts)
    rng = random.Random(seed)
    est = slope([x for x, _ in pts], [y for _, y in pts]) * span
    boots = []
    for _ in range(reps):
        s = [rng.choice(pts) for _ in pts]
        boots.append(slope([x for x, _ in s], [y for _, y in s]) * span)
    boots.sort()
    return est, boots[int(0.025 * reps)], boots[int(0.975 * reps) - 1]


def paired_ci(diffs: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap CI of the mean of paired differences (the same questions before and after)."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]
