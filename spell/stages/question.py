"""Stage 2, question, as a pure function: one questioner sample per prompt parsed into a question with a
status, guarded."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from spell.config import SpellConfig
from spell.data.clusters import Corpus
from spell.guards import GuardSwitches, question_guard
from spell.roles import questioner
from spell.stages.common import Row, ids, token_cols


def _token_counts(
    prompt_rows: Sequence[Row], rollouts: Sequence[Row], max_tokens: int, count: Callable[[list[str]], list[int]]
) -> dict[str, int]:
    """Every answer the parse will measure in tokens, counted in one call (one actor round trip per round,
    not one per proposal): a first parse only records what it asks."""
    asked: list[str] = []

    def record(s: str) -> int:
        asked.append(s)
        return 0

    for p, ro in zip(prompt_rows, rollouts, strict=True):
        c = ro["completions"][0]
        if c["finish_reason"] != "prompt_too_long":
            questioner.parse(p["task"], c["text"], record, max_tokens)
    unique = list(dict.fromkeys(asked))
    return dict(zip(unique, count(unique), strict=True)) if unique else {}


def question_rows(
    prompt_rows: Sequence[Row],
    rollouts: Sequence[Row],
    cfg: SpellConfig,
    count_tokens: Callable[[list[str]], list[int]],
    shown_documents: Callable[[Row], list[str]] | None = None,
) -> list[Row]:
    """Parse one questioner sample per prompt into a question with a status (ok/bad_format/invalid/truncated,
    or rejected by a reward-hacking guard, `guards.*`, which reads the documents the prompt showed)."""
    switches = GuardSwitches(cfg.guards.enabled())
    counts = _token_counts(prompt_rows, rollouts, cfg.questioner.max_answer_tokens, count_tokens)
    out = []
    for p, ro in zip(prompt_rows, rollouts, strict=True):
        c = ro["completions"][0]
        if c["finish_reason"] == "prompt_too_long":
            parsed = questioner.ParsedQuestion("invalid", "questioner prompt too long")
        else:
            parsed = questioner.parse(p["task"], c["text"], counts.__getitem__, cfg.questioner.max_answer_tokens)
        if parsed.ok and switches.enabled and parsed.question is not None and parsed.answer is not None:
            docs = shown_documents(p) if shown_documents else []
            history = list(zip(p.get("history_questions") or [], p.get("history_answers") or [], strict=True))
            why = question_guard(p["task"], parsed.question, parsed.answer, parsed.options, docs, switches, history)
            if why:
                parsed = questioner.ParsedQuestion("rejected", why, parsed.question, parsed.answer, parsed.options)
        out.append(
            {
                **ids(p["run"], p["iteration"], p["round"]),
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
                **token_cols(ro["prompt_ids"], c),
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
                **ids(p["run"], p["iteration"], p["round"]),
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
