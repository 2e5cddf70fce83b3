"""Stage 3, respond, as pure functions: the grounding check (no documents), then G answers over the
whole cluster, parsed and rule-scored."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from spell import task_types
from spell.data.clusters import Corpus
from spell.guards import GuardSwitches, response_guard
from spell.roles import responder
from spell.stages.common import Row, generated_cols, ids


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
                    **ids(q["run"], q["iteration"], q["round"]),
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
    switches = switches or GuardSwitches()
    strict = switches.on("strict_docmath")
    for (q, _), ro in zip(requests, rollouts, strict=True):
        for j, c in enumerate(ro["completions"]):
            pred = responder.parse(q["task"], c["text"])
            why = response_guard(c["text"], pred, switches)
            pred = None if why else pred
            status = "rejected" if why else ("ok" if pred is not None else "unparsed")
            rule = task_types.rule_score(q["task"], pred, q["answer"], strict=strict)
            if strict and rule < task_types.rule_score(q["task"], pred, q["answer"]):
                why = f"guard strict_docmath: {pred} matches {q['answer']} only up to a scale or sign slip"
            out.append(
                {
                    **ids(q["run"], q["iteration"], q["round"]),
                    "response_id": f"{q['question_id']}-a{j}",
                    "question_id": q["question_id"],
                    "task": q["task"],
                    "sample": j,
                    "text": c["text"],
                    "prediction": pred,
                    "rule_score": rule,
                    "status": status,
                    "reason": why or "",
                    **generated_cols(c),  # its prompt ids are its question's, in responder_prompt_rows
                }
            )
    return out


def responder_prompt_rows(requests: Sequence[tuple[Row, str]], rollouts: Sequence[Row]) -> list[Row]:
    """One row per answered question: the responder prompt's token ids, shared by its G answers (stored once
    here; a response row joins it through question_id)."""
    return [
        {
            **ids(q["run"], q["iteration"], q["round"]),
            "question_id": q["question_id"],
            "task": q["task"],
            "prompt_ids": ro["prompt_ids"],
            "prompt_tokens": ro["completions"][0]["prompt_tokens"] if ro["completions"] else len(ro["prompt_ids"]),
        }
        for (q, _), ro in zip(requests, rollouts, strict=True)
    ]
