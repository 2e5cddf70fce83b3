"""Stage 5, reward, as pure functions: role rewards per round (paper §3.3) with the verifier collapse guard
(`guards.verifier_collapse`), case types and eligibility."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spell.batch import usable
from spell.calibration import Calibration, decisive_label, verifier_calibration
from spell.config import SpellConfig
from spell.rewards import (
    BAD_FORMAT,
    REJECTED,
    history_admits,
    majority_vote,
    questioner_reward,
    responder_reward,
    verifier_agreement,
    verifier_group_eligible,
    verifier_rewards,
)
from spell.stages.common import Row, ids
from spell.stages.respond import grounded_questions


def _reward_row(
    src: Row, sample_id: str, role: str, group_id: str, cluster_id: str, reward: float | None, **extra: Any
) -> Row:
    """One `rewards` row; columns a role does not use stay None."""
    row: Row = {
        **ids(src["run"], src["iteration"], src["round"]),
        "sample_id": sample_id,
        "role": role,
        "task": src["task"],
        "group_id": group_id,
        "cluster_id": cluster_id,
        "reward": reward,
        "case": None,
        "rule_score": None,
        "majority": None,
        "agreement": None,
        "eligible": None,
        "group_mean": None,
        "admitted": None,
        "label_source": None,
    }
    row.update(extra)
    return row


@dataclass(frozen=True)
class Votes:
    """A round's verifier votes per response, in verdict order, built once from its verdict rows and shared
    by the calibration and the rewards."""

    by_response: dict[str, list[int]]
    verdict_ids: dict[str, list[str]]

    @classmethod
    def of(cls, verdicts: Sequence[Row]) -> Votes:
        votes: dict[str, list[int]] = defaultdict(list)
        verdict_ids: dict[str, list[str]] = defaultdict(list)
        for v in verdicts:
            votes[v["response_id"]].append(int(v["vote"]))
            verdict_ids[v["response_id"]].append(v["verdict_id"])
        return cls(dict(votes), dict(verdict_ids))

    def parsable(self) -> dict[str, bool]:
        """verdict_id -> whether its vote could be read (YES or NO)."""
        return {
            vid: vote in (0, 1)
            for rid, vs in self.by_response.items()
            for vid, vote in zip(self.verdict_ids[rid], vs, strict=True)
        }


def round_calibration(
    responses: Sequence[Row],
    votes: Votes,
    cfg: SpellConfig,
    questions: Sequence[Row] = (),
    earlier: Sequence[Calibration] = (),
) -> Calibration:
    """The round's verifier majorities against the decisive rule checks (the questions give the references a
    general-QA number is checked against), and whether the verifier collapsed over the window's rounds."""
    g = cfg.guards
    reference = {q["question_id"]: q.get("answer") for q in questions}
    samples = [
        (
            r["task"],
            r["prediction"],
            float(r["rule_score"]),
            majority_vote(votes.by_response[r["response_id"]]),
            reference.get(r["question_id"]),
        )
        for r in responses
        if votes.by_response.get(r["response_id"])
    ]
    return verifier_calibration(
        samples,
        g.collapse_false_yes,
        g.collapse_min_decisive,
        g.verifier_collapse,
        earlier[-(g.collapse_window - 1) :] if g.collapse_window > 1 else (),
    )


def reward_rows(
    questions: Sequence[Row],
    grounding: Sequence[Row],
    responses: Sequence[Row],
    votes: Votes,
    cfg: SpellConfig,
    calibration: Calibration | None = None,
) -> list[Row]:
    """Rewards of every sample of every role in one round, with case types and eligibility.

    Under a verifier collapse (`calibration.collapsed`) the responder reward is the rule check, and a
    verifier group trains only on a decisive rule label, each vote rewarded for matching it.
    """
    grounded = grounded_questions(grounding)
    collapsed = bool(calibration and calibration.collapsed)
    by_question: dict[str, list[float]] = defaultdict(list)
    cluster = {q["question_id"]: q["cluster_id"] for q in questions}
    reference = {q["question_id"]: q.get("answer") for q in questions}
    out: list[Row] = []
    vc = cfg.verifier
    combine = cfg.reward.combine if vc.enabled else "rule"  # verifier off: the rule check alone (ablation)
    source = "rule" if collapsed or combine == "rule" else "verifier"
    if collapsed:
        combine = "rule"
    for r in responses:
        vs = votes.by_response.get(r["response_id"])
        maj = majority_vote(vs) if vs else None
        reward = responder_reward(r["rule_score"], maj, combine)
        by_question[r["question_id"]].append(reward)
        shared = {"rule_score": r["rule_score"], "majority": -1 if maj is None else maj, "label_source": source}
        out.append(
            _reward_row(r, r["response_id"], "responder", r["question_id"], cluster[r["question_id"]], reward, **shared)
        )
        if vs:
            label = maj
            if collapsed:  # the rule, where decisive, labels the votes; otherwise nothing to learn from
                ref = reference[r["question_id"]]
                label = decisive_label(r["task"], r["prediction"], float(r["rule_score"]), ref)
                parsable = [v for v in vs if v in (0, 1)]  # an unparsable vote's -1 must not lift a wrong YES
                eligible = label is not None and 0 < sum(parsable) < len(parsable)
            else:
                eligible = verifier_group_eligible(
                    vs, maj, r["rule_score"], vc.agreement_low, vc.agreement_high, vc.label
                )
            agreement = verifier_agreement(vs, label)
            for vid, rew in zip(votes.verdict_ids[r["response_id"]], verifier_rewards(vs, label), strict=True):
                out.append(
                    _reward_row(
                        r,
                        vid,
                        "verifier",
                        r["response_id"],
                        cluster[r["question_id"]],
                        rew,
                        agreement=agreement,
                        eligible=eligible,
                        **shared,
                    )
                )
    qc = cfg.questioner
    for q in questions:
        g = grounded.get(q["question_id"]) if cfg.grounding.enabled else True
        group = by_question.get(q["question_id"])
        outcome = questioner_reward(
            q["status"],
            g,
            group,
            qc.reward,
            qc.sigma,
            qc.bad_format_reward,
            qc.ungrounded_reward,
            cfg.guards.rejected_reward,
        )
        mean = sum(group) / len(group) if group else None
        admitted = bool(
            mean is not None and q["status"] == "ok" and g is not False and history_admits(mean, cfg.history.admit)
        )
        out.append(
            _reward_row(
                q,
                q["question_id"],
                "questioner",
                q["task"],
                q["cluster_id"],
                outcome.reward,
                case=outcome.case,
                group_mean=mean,
                admitted=admitted,
            )
        )
    if cfg.reward.format_only:
        _format_only(out, responses, votes)
    if cfg.reward.random_reward:
        _coin_rewards(out, cfg.run.seed)
    return out


def coin(seed: int, sample_id: str) -> float:
    """A fair coin fixed by the seed and the sample's id: the same answer gets the same draw on a replay."""
    return float(hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()[0] & 1)


def _coin_rewards(rows: list[Row], seed: int) -> None:
    """The learner control (`reward.random_reward`): responder rewards replaced by seeded fair coins."""
    for row in rows:
        if row["role"] == "responder":
            row["reward"] = coin(seed, row["sample_id"])
            row["label_source"] = "random"


def _format_only(rows: list[Row], responses: Sequence[Row], votes: Votes) -> None:
    """The format-only control (`reward.format_only`): rewards for well-formed outputs, nothing else."""
    answer_ok = {r["response_id"]: r.get("status", "ok") == "ok" and r["prediction"] is not None for r in responses}
    vote_ok = votes.parsable()
    for row in rows:
        if row["role"] == "responder":
            row["reward"] = 1.0 if answer_ok[row["sample_id"]] else 0.0
        elif row["role"] == "verifier":
            row["reward"] = 1.0 if vote_ok[row["sample_id"]] else 0.0
        elif row["reward"] is not None and row["case"] not in (BAD_FORMAT, REJECTED):  # parse penalties stay
            row["reward"] = 1.0
        row["label_source"] = "format"


def usable_group_count(rewards: Sequence[Row], dynamic: bool = True) -> int:
    """Usable responder groups among a round's reward rows (`spell.batch.usable`)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rewards:
        if r["role"] == "responder":
            groups[r["group_id"]].append(float(r["reward"]))
    return sum(1 for vals in groups.values() if usable(vals, dynamic))
