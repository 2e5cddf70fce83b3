"""Building one training batch from the scored generation rounds (paper §3.4; spec Part B §1.6).

Responder: drop zero-variance groups (dynamic sampling), keep the first `train_batch_size` groups.
Questioner: the good samples behind the kept groups plus, per task, `negatives_ratio` failed samples
per good one (a task short of negatives is not made up from other tasks). Verifier: eligible groups in
proportion to the responder groups actually kept (`verifier_share` per group), or none when too few
are eligible (spec Part A rows 'questioner negatives', 'verifier samples per step').
`format_floor` (not in the paper, off there) tops a task's questioner rows up with format pairs when it has too
few, so a model that never reaches the frontier still learns the format (see `_floor_pairs`): marked
`source=floor`, their own advantage group, never larger than a frontier row's advantage.
Advantages are attached here, so the learner downstream stays role-blind.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spell.advantages import group_zscore, questioner_advantages
from spell.rewards import BAD_FORMAT, GOOD, NEGATIVE_CASES, REJECTED, ZERO_VARIANCE
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
    source: str = "paper"  # "floor": a questioner.format_floor pair (not in the paper)


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


def _floor_pairs(pool: Sequence[QuestionerSample], n: int, rng: random.Random) -> list[QuestionerSample]:
    """Up to n proposals in pairs for `format_floor`: a parsed, guard-passed, grounded proposal off the frontier
    (zero variance) against one of the lowest reward (bad format or guard-rejected), so the signal is the
    format and nothing else; an ungrounded proposal is neither side. None when a side is missing."""
    pos = [q for q in pool if q.case == ZERO_VARIANCE]
    bad = [q for q in pool if q.case in (BAD_FORMAT, REJECTED) and q.reward is not None]
    if n <= 0 or not pos or not bad:
        return []
    lowest = min(float(q.reward) for q in bad)  # type: ignore[arg-type]
    neg = [q for q in bad if float(q.reward) == lowest]  # type: ignore[arg-type]
    k = min(len(pos), len(neg), (n + 1) // 2)
    return rng.sample(pos, k) + rng.sample(neg, k)


def _floor_advantages(rows: Sequence[QuestionerSample], cap: float | None) -> np.ndarray:
    """The floor's pairs z-scored among themselves, scaled so that none outweighs the task's smallest frontier
    advantage (`cap`) where the task has one."""
    adv = group_zscore([float(q.reward) for q in rows])  # type: ignore[arg-type]
    top = float(np.max(np.abs(adv))) if len(adv) else 0.0
    if cap is not None and top > cap:
        adv = adv * (cap / top)
    return adv


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
        # the floor (not in the paper) never brings negatives back where the batch takes none (negatives_ratio=0)
        for task in TASKS if format_floor and negatives_ratio > 0 else ():
            have = [q for q in chosen if q.task == task]
            taken = {q.sample_id for q in have}
            pool = [q for q in questioners if q.task == task and q.sample_id not in taken]
            floor = _floor_pairs(pool, format_floor - len(have), rng)
            frontier = [abs(float(a)) for q, a in zip(chosen, advs, strict=True) if q.task == task and q.case == GOOD]
            cap = min(frontier) if frontier else None
            batch.rows += [
                BatchRow(q.sample_id, "questioner", q.task, f"floor:{task}", float(q.reward), float(a), "floor")
                for q, a in zip(floor, _floor_advantages(floor, cap), strict=True)
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
