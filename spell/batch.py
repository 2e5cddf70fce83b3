"""Building one training batch from the scored generation rounds (paper §3.4; spec Part B §1.6).

Responder: drop zero-variance groups (dynamic sampling), keep the first `train_batch_size` groups.
Questioner: the good samples behind the kept groups plus, per task, `negatives_ratio` failed samples
per good one (a task short of negatives is not made up from other tasks). Verifier: eligible groups in
proportion to the responder groups actually kept (`verifier_share` per group), or none when too few
are eligible (spec Part A rows 'questioner negatives', 'verifier samples per step').
`format_floor` (not in the paper, off there) tops a task's questioner rows up with proposals of mixed reward
when it has too few, so a model that never reaches the frontier still learns the format (see `_mixed_rewards`).
Advantages are attached here, so the learner downstream stays role-blind.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spell.advantages import group_zscore, questioner_advantages
from spell.rewards import GOOD, NEGATIVE_CASES
from spell.vocab import TASKS


@dataclass(frozen=True)
class QuestionerSample:
    sample_id: str
    task: str
    case: str
    reward: float | None


@dataclass(frozen=True)
class ResponderGroup:
    """The G answers to one question; `question_id` is the questioner sample that asked it."""

    question_id: str
    task: str
    sample_ids: tuple[str, ...]
    rewards: tuple[float, ...]

    @property
    def zero_variance(self) -> bool:
        return not usable(self.rewards)


@dataclass(frozen=True)
class VerifierGroup:
    """The votes on one responder answer, their rewards, and whether the group may be trained on."""

    response_id: str
    task: str
    sample_ids: tuple[str, ...]
    rewards: tuple[float, ...]
    eligible: bool


@dataclass(frozen=True)
class BatchRow:
    sample_id: str
    role: str
    task: str
    group_id: str
    reward: float
    advantage: float


@dataclass
class TrainingBatch:
    rows: list[BatchRow] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def by_role(self, role: str) -> list[BatchRow]:
        return [r for r in self.rows if r.role == role]


def usable(rewards: Sequence[float], dynamic: bool = True) -> bool:
    """The one "usable group" rule: a responder group trains only when its rewards differ (dynamic sampling,
    paper §3.4: a zero-variance group has zero advantage); without dynamic sampling every group does. The
    rounds stop once `sampling.train_batch_size` groups are usable (flows.iteration counts the reward stage's
    `usable_groups`)."""
    return not dynamic or len(set(rewards)) > 1


def usable_groups(groups: Sequence[ResponderGroup], dynamic: bool = True) -> list[ResponderGroup]:
    return [g for g in groups if usable(g.rewards, dynamic)]


def verifier_groups_for(responder_groups: int, share: float) -> int:
    """Verifier groups in a step: e.g. 128 groups x 8 answers x 0.125 / 8 votes = 16 (share 0.125 per group)."""
    return int(responder_groups * share + 1e-9)


def _mixed_rewards(
    have: Sequence[QuestionerSample], pool: Sequence[QuestionerSample], n: int, rng: random.Random
) -> list[QuestionerSample]:
    """Up to n proposals from `pool`, taken round-robin over its reward levels (best first), so a valid
    proposal (0) stands beside a broken one (-1) and the task's z-score has a sign; none when the task's
    rows would all share one reward (a zero advantage teaches nothing)."""
    if n <= 0 or len({q.reward for q in have} | {q.reward for q in pool}) < 2:
        return []
    levels: dict[float, list[QuestionerSample]] = {}
    for q in pool:
        levels.setdefault(float(q.reward or 0.0), []).append(q)
    queues = [rng.sample(v, len(v)) for _, v in sorted(levels.items(), reverse=True)]
    out: list[QuestionerSample] = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop())
    return out


def select_training_batch(
    questioners: Sequence[QuestionerSample],
    responder_groups: Sequence[ResponderGroup],
    verifier_groups: Sequence[VerifierGroup],
    *,
    train_batch_size: int,
    negatives_ratio: float = 1.0,
    verifier_share: float = 0.125,
    questioner_normalize: str = "task",
    rng: random.Random,
    dynamic: bool = True,
    train_questioner: bool = True,
    train_verifier: bool = True,
    format_floor: int = 0,
) -> TrainingBatch:
    batch = TrainingBatch()

    kept = usable_groups(responder_groups, dynamic)[:train_batch_size]
    for g in kept:
        adv = group_zscore(g.rewards)
        batch.rows += [
            BatchRow(sid, "responder", g.task, g.question_id, float(r), float(a))
            for sid, r, a in zip(g.sample_ids, g.rewards, adv, strict=True)
        ]

    if train_questioner:
        kept_ids = {g.question_id for g in kept}
        chosen = [q for q in questioners if q.case == GOOD and q.sample_id in kept_ids]
        for task in TASKS:
            good_t = sum(1 for q in chosen if q.task == task)
            pool = [q for q in questioners if q.task == task and q.case in NEGATIVE_CASES and q.reward is not None]
            chosen += rng.sample(pool, min(round(negatives_ratio * good_t), len(pool)))
        for task in TASKS if format_floor else ():
            have = [q for q in chosen if q.task == task]
            taken = {q.sample_id for q in have}
            pool = [
                q
                for q in questioners
                if q.task == task and q.case in NEGATIVE_CASES and q.reward is not None and q.sample_id not in taken
            ]
            chosen += _mixed_rewards(have, pool, format_floor - len(have), rng)
        rewards = np.array([q.reward for q in chosen], dtype=np.float64)
        advs = questioner_advantages(rewards, [q.task for q in chosen], questioner_normalize)
        batch.rows += [
            BatchRow(
                q.sample_id,
                "questioner",
                q.task,
                q.task if questioner_normalize == "task" else "batch",
                float(r),
                float(a),
            )
            for q, r, a in zip(chosen, rewards, advs, strict=True)
        ]

    n_verifier = verifier_groups_for(len(kept), verifier_share)
    if train_verifier and n_verifier > 0:
        eligible = [v for v in verifier_groups if v.eligible]
        if len(eligible) >= n_verifier:
            for v in rng.sample(eligible, n_verifier):
                adv = group_zscore(v.rewards)
                batch.rows += [
                    BatchRow(sid, "verifier", v.task, v.response_id, float(r), float(a))
                    for sid, r, a in zip(v.sample_ids, v.rewards, adv, strict=True)
                ]

    for role in ("questioner", "responder", "verifier"):
        batch.counts[role] = sum(1 for r in batch.rows if r.role == role)
    batch.counts["responder_groups"] = len(kept)
    return batch
