"""Role-specific rewards (paper §3.3, Eq. 4-7; spec Part A rows 'majority vote' to 'verifier reward').

Pure functions over plain numbers; every default comes from `spell.config`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Questioner case types (spec Part B §3.3): what happened to a questioner sample.
GOOD, BAD_FORMAT, UNGROUNDED, ZERO_VARIANCE, SKIPPED = "good", "bad_format", "ungrounded", "zero_variance", "skipped"
REJECTED = "rejected"  # a reward-hacking guard rejected the proposal (spell.guards; not in the paper)
NEGATIVE_CASES = (BAD_FORMAT, UNGROUNDED, ZERO_VARIANCE, REJECTED)


def majority_vote(votes: Sequence[int]) -> int | None:
    """Strict majority over all votes (paper Eq. 4): 1 if YES > n/2, 0 if NO > n/2, else None.

    Unparsable votes (-1) count towards n, so too many of them leave no verdict.
    """
    n = len(votes)
    if n == 0:
        return None
    yes = sum(1 for v in votes if v == 1)
    no = sum(1 for v in votes if v == 0)
    if 2 * yes > n:
        return 1
    if 2 * no > n:
        return 0
    return None


def responder_reward(rule: float, verdict: int | None, combine: str = "max") -> float:
    """r_res (paper Eq. 6): max(rule check, verifier majority); without a verdict (a tie, too many unreadable
    votes, an unparsed answer) the rule alone decides under 'max', and it counts 0 under 'verifier'
    (Eq. 4: not more than G/2 YES)."""
    if combine == "rule":
        return float(rule)
    if combine == "verifier":
        return 0.0 if verdict is None else float(verdict)
    if combine == "max":
        return float(rule) if verdict is None else float(max(rule, verdict))
    raise ValueError(f"unknown reward.combine {combine!r}")


def accuracy_to_reward(mean: float, kind: str = "gaussian", sigma: float = 1.0 / 6.0) -> float:
    """Map a responder group's mean accuracy in (0, 1) to the questioner reward (paper Eq. 7, Table 3)."""
    if kind == "gaussian":
        return math.exp(-((mean - 0.5) ** 2) / (2.0 * sigma**2))
    if kind == "rzero":
        return 1.0 - 2.0 * abs(mean - 0.5)
    if kind == "reverse":
        return 1.0 - mean
    raise ValueError(f"unknown questioner.reward {kind!r}")


@dataclass(frozen=True)
class QuestionerOutcome:
    """The questioner's reward and case type; reward is None for skipped samples (never trained on)."""

    case: str
    reward: float | None


def questioner_reward(
    status: str,
    grounded: bool | None,
    responder_rewards: Sequence[float] | None,
    kind: str = "gaussian",
    sigma: float = 1.0 / 6.0,
    bad_format_reward: float = -1.0,
    ungrounded_reward: float = -0.5,
    rejected_reward: float = -1.0,
) -> QuestionerOutcome:
    """-1 unparsable; -0.5 ungrounded; 0 when all G answers agree (all right or all wrong); else the
    accuracy mapping (paper Eq. 7). `invalid`/`truncated` outputs and questions whose responder prompt
    was too long are skipped: no reward, no training. A proposal a guard `rejected` gets `rejected_reward`."""
    if status == "bad_format":
        return QuestionerOutcome(BAD_FORMAT, bad_format_reward)
    if status == REJECTED:
        return QuestionerOutcome(REJECTED, rejected_reward)
    if status != "ok":
        return QuestionerOutcome(SKIPPED, None)
    if grounded is False:
        return QuestionerOutcome(UNGROUNDED, ungrounded_reward)
    if not responder_rewards:
        return QuestionerOutcome(SKIPPED, None)
    mean = sum(responder_rewards) / len(responder_rewards)
    if mean <= 0.0 or mean >= 1.0:
        return QuestionerOutcome(ZERO_VARIANCE, 0.0)
    return QuestionerOutcome(GOOD, accuracy_to_reward(mean, kind, sigma))


def verifier_rewards(votes: Sequence[int], majority: int | None) -> list[float]:
    """Per judgment (paper Eq. 5): -1 unparsable, 1 if it equals the majority, 0 otherwise."""
    return [-1.0 if v not in (0, 1) else (1.0 if majority is not None and v == majority else 0.0) for v in votes]


def verifier_agreement(votes: Sequence[int], majority: int | None) -> float:
    """Fraction of the *valid* votes that agree with the majority (0 when there is no majority)."""
    valid = [v for v in votes if v in (0, 1)]
    if majority is None or not valid:
        return 0.0
    return sum(1 for v in valid if v == majority) / len(valid)


def verifier_group_eligible(
    votes: Sequence[int],
    majority: int | None,
    rule: float,
    low: float = 0.51,
    high: float = 0.99,
    label: str = "maj_cons",
) -> bool:
    """A verifier group trains only if low <= agreement <= high (no ties, not unanimous) and, under
    'maj_cons', its majority equals the rule check (spec Part B §3.4)."""
    if majority is None:
        return False
    agreement = verifier_agreement(votes, majority)
    if not (low <= agreement <= high):
        return False
    return label == "maj" or int(majority) == int(rule >= 0.5)


def history_admits(mean_reward: float, rule: str = "paper") -> bool:
    """Whether a solved question enters its cluster's memory (paper Alg. 1 line 20; spec Part B §9.1)."""
    if rule == "paper":
        return 0.0 < mean_reward < 1.0
    if rule == "any_correct":
        return 0.01 <= mean_reward <= 1.0
    raise ValueError(f"unknown history.admit {rule!r}")
