"""What each pipeline stage computes, as pure functions over plain rows (no Prefect, no storage, no Ray).

Prefect tasks in `tasks/` read a stage's inputs from Parquet, ask the policy for completions, call one
of these functions and write its rows. Keeping the algorithm here lets anyone replay a stage from
stored rows in a notebook, and lets the tests check every stage without an orchestrator.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from spell.batch import QuestionerSample, ResponderGroup, VerifierGroup, select_training_batch
from spell.config import SpellConfig
from spell.corpus import Corpus
from spell.history import HistoryMemory
from spell.rewards import (
    history_admits,
    majority_vote,
    questioner_reward,
    responder_reward,
    verifier_agreement,
    verifier_group_eligible,
    verifier_rewards,
)
from spell.roles import questioner, responder, verifier
from spell.roles.questioner import HistoryExample
from spell.rules import rule_score
from spell.sampling import TaskSampler

Row = dict[str, Any]


def stage_seed(seed: int, iteration: int, rnd: int, stage: str) -> int:
    """A seed per (run seed, iteration, round, stage): re-running a stage reproduces its rows."""
    digest = hashlib.sha256(f"{seed}:{iteration}:{rnd}:{stage}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _ids(run: str, iteration: int, rnd: int) -> Row:
    return {"run": run, "iteration": iteration, "round": rnd}


# ---------------------------------------------------------------------------------------------------
# sample docs


def sample_prompts(
    corpus: Corpus, sampler: TaskSampler, memory: HistoryMemory, cfg: SpellConfig, run: str, iteration: int, rnd: int
) -> list[Row]:
    """Questioner prompts for one generation round: stratified tasks, document subsets, history."""
    rng = random.Random(stage_seed(cfg.run.seed, iteration, rnd, "sample"))
    order = random.Random(stage_seed(cfg.run.seed, iteration, rnd, "shuffle"))
    rows = []
    for j, (task, cid) in enumerate(sampler.draw(cfg.sampling.questions_per_round, order)):
        docs = corpus.clusters[cid].documents
        mem = memory if cfg.history.enabled else HistoryMemory()
        ctx = mem.context(task, cid, len(docs), cfg.data.docs_per_visit, rng)
        letter = questioner.draw_target_letter(rng) if task == "doc_mc" else None
        shown = [docs[i] for i in ctx.doc_indices]
        examples = [HistoryExample(e.question, e.answer) for e in ctx.examples]
        rows.append(
            {
                **_ids(run, iteration, rnd),
                "prompt_id": f"i{iteration:04d}-r{rnd:02d}-q{j:04d}",
                "task": task,
                "cluster_id": cid,
                "n_docs": len(docs),
                "doc_indices": list(ctx.doc_indices),
                "new_doc_indices": list(ctx.new_doc_indices),
                "history_size": len(examples),
                "target_letter": letter,
                "context_chars": sum(len(d) for d in shown),
                "prompt": questioner.build_prompt(task, shown, examples, letter),
            }
        )
    return rows


def static_prompts(
    corpus: Corpus, sampler: TaskSampler, cfg: SpellConfig, run: str, iteration: int, rnd: int
) -> list[Row]:
    """run.mode=rlvr: labelled questions stand in for the questioner (the paper's RLVR baseline)."""
    order = random.Random(stage_seed(cfg.run.seed, iteration, rnd, "shuffle"))
    rows = []
    for j, (task, qid) in enumerate(sampler.draw(cfg.sampling.questions_per_round, order)):
        item = corpus.qa[qid]
        rows.append(
            {
                **_ids(run, iteration, rnd),
                "prompt_id": f"i{iteration:04d}-r{rnd:02d}-q{j:04d}",
                "task": task,
                "cluster_id": qid,
                "n_docs": len(item.documents),
                "doc_indices": list(range(len(item.documents))),
                "new_doc_indices": [],
                "history_size": 0,
                "target_letter": None,
                "context_chars": sum(len(d) for d in item.documents),
                "prompt": item.question,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------
# question


def _token_cols(prompt_ids: list[int], c: Row) -> Row:
    return {
        "prompt_ids": prompt_ids,
        "response_ids": c["token_ids"],
        "finish_reason": c["finish_reason"],
        "prompt_tokens": c["prompt_tokens"],
        "response_tokens": len(c["token_ids"]),
    }


def question_rows(
    prompt_rows: Sequence[Row], rollouts: Sequence[Row], cfg: SpellConfig, count_tokens: Callable[[str], int]
) -> list[Row]:
    """Parse one questioner sample per prompt into a question with a status (ok/bad_format/invalid/truncated)."""
    out = []
    for p, ro in zip(prompt_rows, rollouts, strict=True):
        c = ro["completions"][0]
        if c["finish_reason"] == "prompt_too_long":
            parsed = questioner.ParsedQuestion("invalid", "questioner prompt too long")
        else:
            parsed = questioner.parse(p["task"], c["text"], count_tokens, cfg.questioner.max_answer_tokens)
        out.append(
            {
                **_ids(p["run"], p["iteration"], p["round"]),
                "question_id": p["prompt_id"],
                "task": p["task"],
                "cluster_id": p["cluster_id"],
                "text": c["text"],
                "status": parsed.status,
                "reason": parsed.reason,
                "question": parsed.question,
                "answer": parsed.answer,
                "options": json.dumps(parsed.options) if parsed.options else None,
                "responder_question": parsed.responder_question(),
                **_token_cols(ro["prompt_ids"], c),
            }
        )
    return out


def static_question_rows(prompt_rows: Sequence[Row], corpus: Corpus) -> list[Row]:
    """run.mode=rlvr: the labelled question and its first gold answer, no generation."""
    out = []
    for p in prompt_rows:
        item = corpus.qa[p["cluster_id"]]
        out.append(
            {
                **_ids(p["run"], p["iteration"], p["round"]),
                "question_id": p["prompt_id"],
                "task": p["task"],
                "cluster_id": p["cluster_id"],
                "text": "",
                "status": "ok",
                "reason": "labelled",
                "question": item.question,
                "answer": item.golds[0],
                "options": None,
                "responder_question": item.question,
                "prompt_ids": [],
                "response_ids": [],
                "finish_reason": "static",
                "prompt_tokens": 0,
                "response_tokens": 0,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------
# respond (grounding check, then G answers over the whole cluster)


def grounding_requests(questions: Sequence[Row]) -> list[tuple[Row, str]]:
    return [
        (q, responder.build_prompt(q["task"], q["responder_question"], None)) for q in questions if q["status"] == "ok"
    ]


def grounding_rows(requests: Sequence[tuple[Row, str]], rollouts: Sequence[Row]) -> list[Row]:
    out = []
    for (q, _), ro in zip(requests, rollouts, strict=True):
        for j, c in enumerate(ro["completions"]):
            pred = responder.parse(q["task"], c["text"])
            out.append(
                {
                    **_ids(q["run"], q["iteration"], q["round"]),
                    "question_id": q["question_id"],
                    "task": q["task"],
                    "sample": j,
                    "text": c["text"],
                    "prediction": pred,
                    "rule_score": rule_score(q["task"], pred, q["answer"]),
                    "finish_reason": c["finish_reason"],
                }
            )
    return out


def grounded_questions(grounding: Sequence[Row]) -> dict[str, bool]:
    """A question is ungrounded when every no-context answer is right by the rule check (Part A)."""
    scores: dict[str, list[float]] = defaultdict(list)
    for g in grounding:
        scores[g["question_id"]].append(g["rule_score"])
    return {qid: not all(s >= 0.5 for s in ss) for qid, ss in scores.items()}


def responder_requests(
    questions: Sequence[Row], grounded: dict[str, bool], corpus: Corpus, grounding_on: bool
) -> list[tuple[Row, str]]:
    reqs = []
    for q in questions:
        if q["status"] != "ok" or (grounding_on and not grounded.get(q["question_id"], False)):
            continue
        docs = corpus.clusters[q["cluster_id"]].documents
        reqs.append((q, responder.build_prompt(q["task"], q["responder_question"], list(docs))))
    return reqs


def response_rows(requests: Sequence[tuple[Row, str]], rollouts: Sequence[Row]) -> list[Row]:
    out = []
    for (q, _), ro in zip(requests, rollouts, strict=True):
        for j, c in enumerate(ro["completions"]):
            pred = responder.parse(q["task"], c["text"])
            out.append(
                {
                    **_ids(q["run"], q["iteration"], q["round"]),
                    "response_id": f"{q['question_id']}-a{j}",
                    "question_id": q["question_id"],
                    "task": q["task"],
                    "sample": j,
                    "text": c["text"],
                    "prediction": pred,
                    "rule_score": rule_score(q["task"], pred, q["answer"]),
                    **_token_cols(ro["prompt_ids"], c),
                }
            )
    return out


# ---------------------------------------------------------------------------------------------------
# verify


def verifier_requests(responses: Sequence[Row], questions: Sequence[Row]) -> list[tuple[Row, str]]:
    """One verifier prompt per parsed response: question, parsed prediction, parsed reference."""
    by_id = {q["question_id"]: q for q in questions}
    reqs = []
    for r in responses:
        q = by_id[r["question_id"]]
        if r["prediction"] is None:
            continue  # unparsable answers are not verified; the rule check alone scores them
        reqs.append((r, verifier.build_prompt(q["responder_question"], r["prediction"], q["answer"])))
    return reqs


def verdict_rows(requests: Sequence[tuple[Row, str]], rollouts: Sequence[Row]) -> list[Row]:
    out = []
    for (r, _), ro in zip(requests, rollouts, strict=True):
        votes = [verifier.parse_vote(c["text"]) for c in ro["completions"]]
        maj = majority_vote(votes)
        for k, (c, v) in enumerate(zip(ro["completions"], votes, strict=True)):
            out.append(
                {
                    **_ids(r["run"], r["iteration"], r["round"]),
                    "verdict_id": f"{r['response_id']}-v{k}",
                    "response_id": r["response_id"],
                    "question_id": r["question_id"],
                    "task": r["task"],
                    "sample": k,
                    "text": c["text"],
                    "vote": v,
                    "majority": -1 if maj is None else maj,
                    **_token_cols(ro["prompt_ids"], c),
                }
            )
    return out


# ---------------------------------------------------------------------------------------------------
# reward


def _reward_row(
    src: Row, sample_id: str, role: str, group_id: str, cluster_id: str, reward: float | None, **extra: Any
) -> Row:
    """One `rewards` row; columns a role does not use stay None."""
    row: Row = {
        **_ids(src["run"], src["iteration"], src["round"]),
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
    }
    row.update(extra)
    return row


def reward_rows(
    questions: Sequence[Row],
    grounding: Sequence[Row],
    responses: Sequence[Row],
    verdicts: Sequence[Row],
    cfg: SpellConfig,
) -> list[Row]:
    """Rewards of every sample of every role in one round, with case types and eligibility."""
    grounded = grounded_questions(grounding)
    votes: dict[str, list[int]] = defaultdict(list)
    verdict_ids: dict[str, list[str]] = defaultdict(list)
    for v in verdicts:
        votes[v["response_id"]].append(int(v["vote"]))
        verdict_ids[v["response_id"]].append(v["verdict_id"])
    by_question: dict[str, list[float]] = defaultdict(list)
    cluster = {q["question_id"]: q["cluster_id"] for q in questions}
    out: list[Row] = []
    vc = cfg.verifier
    combine = cfg.reward.combine if vc.enabled else "rule"  # verifier off: the rule check alone (ablation)
    for r in responses:
        vs = votes.get(r["response_id"])
        maj = majority_vote(vs) if vs else None
        reward = responder_reward(r["rule_score"], maj, combine)
        by_question[r["question_id"]].append(reward)
        shared = {"rule_score": r["rule_score"], "majority": -1 if maj is None else maj}
        out.append(
            _reward_row(r, r["response_id"], "responder", r["question_id"], cluster[r["question_id"]], reward, **shared)
        )
        if vs:
            eligible = verifier_group_eligible(vs, maj, r["rule_score"], vc.agreement_low, vc.agreement_high, vc.label)
            agreement = verifier_agreement(vs, maj)
            for vid, rew in zip(verdict_ids[r["response_id"]], verifier_rewards(vs, maj), strict=True):
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
            q["status"], g, group, qc.reward, qc.sigma, qc.bad_format_reward, qc.ungrounded_reward
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
    return out


def usable_group_count(rewards: Sequence[Row], dynamic: bool = True) -> int:
    groups: dict[str, set[float]] = defaultdict(set)
    for r in rewards:
        if r["role"] == "responder":
            groups[r["group_id"]].add(float(r["reward"]))
    return sum(1 for vals in groups.values() if not dynamic or len(vals) > 1)


# ---------------------------------------------------------------------------------------------------
# batch selection


def batch_rows(
    rewards: Sequence[Row], tokens: dict[str, tuple[list[int], list[int]]], cfg: SpellConfig, run: str, iteration: int
) -> list[Row]:
    """The training batch over all rounds of an iteration, advantages attached (paper §3.4)."""
    qs, groups, vgroups = [], [], []
    resp: dict[str, list[Row]] = defaultdict(list)
    ver: dict[str, list[Row]] = defaultdict(list)
    for r in rewards:
        if r["role"] == "questioner":
            qs.append(QuestionerSample(r["sample_id"], r["task"], r["case"], r["reward"]))
        elif r["role"] == "responder":
            resp[r["group_id"]].append(r)
        else:
            ver[r["group_id"]].append(r)
    for gid, rows in resp.items():
        rows = sorted(rows, key=lambda x: x["sample_id"])
        groups.append(
            ResponderGroup(
                gid, rows[0]["task"], tuple(x["sample_id"] for x in rows), tuple(float(x["reward"]) for x in rows)
            )
        )
    for gid, rows in ver.items():
        rows = sorted(rows, key=lambda x: x["sample_id"])
        vgroups.append(
            VerifierGroup(
                gid,
                rows[0]["task"],
                tuple(x["sample_id"] for x in rows),
                tuple(float(x["reward"]) for x in rows),
                bool(rows[0]["eligible"]),
            )
        )
    groups.sort(key=lambda g: g.question_id)  # collection order: ids sort by iteration, round, prompt
    batch = select_training_batch(
        qs,
        groups,
        vgroups,
        train_batch_size=cfg.sampling.train_batch_size,
        negatives_ratio=cfg.questioner.negatives_ratio,
        verifier_share=cfg.verifier_share,
        questioner_normalize=cfg.questioner.normalize,
        rng=random.Random(stage_seed(cfg.run.seed, iteration, 0, "batch")),
        dynamic=cfg.sampling.dynamic,
        train_questioner=cfg.questioner.update,
        train_verifier=cfg.verifier.enabled and cfg.verifier.update,
    )
    out = []
    for b in batch.rows:
        prompt_ids, response_ids = tokens[b.sample_id]
        out.append(
            {
                "run": run,
                "iteration": iteration,
                "sample_id": b.sample_id,
                "role": b.role,
                "task": b.task,
                "group_id": b.group_id,
                "reward": b.reward,
                "advantage": b.advantage,
                "prompt_ids": prompt_ids,
                "response_ids": response_ids,
            }
        )
    return out
