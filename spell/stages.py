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

from spell import task_types
from spell.config import SpellConfig
from spell.data.clusters import Corpus
from spell.guards import GuardSwitches, question_guard, response_guard
from spell.history import HistoryMemory
from spell.rewards import majority_vote
from spell.roles import questioner, responder, verifier
from spell.roles.questioner import HistoryExample
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
        letter = task_types.get(task).draw_target_letter(rng)
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
    prompt_rows: Sequence[Row],
    rollouts: Sequence[Row],
    cfg: SpellConfig,
    count_tokens: Callable[[str], int],
    shown_documents: Callable[[Row], list[str]] | None = None,
) -> list[Row]:
    """Parse one questioner sample per prompt into a question with a status (ok/bad_format/invalid/truncated,
    or rejected by a reward-hacking guard, `guards.*`, which reads the documents the prompt showed)."""
    switches = GuardSwitches(cfg.guards.enabled())
    out = []
    for p, ro in zip(prompt_rows, rollouts, strict=True):
        c = ro["completions"][0]
        if c["finish_reason"] == "prompt_too_long":
            parsed = questioner.ParsedQuestion("invalid", "questioner prompt too long")
        else:
            parsed = questioner.parse(p["task"], c["text"], count_tokens, cfg.questioner.max_answer_tokens)
        if parsed.ok and switches.enabled and parsed.question is not None and parsed.answer is not None:
            docs = shown_documents(p) if shown_documents else []
            why = question_guard(p["task"], parsed.question, parsed.answer, parsed.options, docs, switches)
            if why:
                parsed = questioner.ParsedQuestion("rejected", why, parsed.question, parsed.answer, parsed.options)
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
                    "rule_score": task_types.rule_score(q["task"], pred, q["answer"]),
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


def response_rows(
    requests: Sequence[tuple[Row, str]], rollouts: Sequence[Row], switches: GuardSwitches | None = None
) -> list[Row]:
    """G answers per question, parsed and rule-scored; a guarded answer is `rejected` (no prediction)."""
    out = []
    for (q, _), ro in zip(requests, rollouts, strict=True):
        for j, c in enumerate(ro["completions"]):
            why = response_guard(c["text"], switches or GuardSwitches())
            pred = None if why else responder.parse(q["task"], c["text"])
            status = "rejected" if why else ("ok" if pred is not None else "unparsed")
            out.append(
                {
                    **_ids(q["run"], q["iteration"], q["round"]),
                    "response_id": f"{q['question_id']}-a{j}",
                    "question_id": q["question_id"],
                    "task": q["task"],
                    "sample": j,
                    "text": c["text"],
                    "prediction": pred,
                    "rule_score": task_types.rule_score(q["task"], pred, q["answer"]),
                    "status": status,
                    "reason": why or "",
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
