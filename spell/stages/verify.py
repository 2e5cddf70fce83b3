"""Stage 4, verify-vote, as pure functions: one verifier prompt per parsed response, n votes and their
strict majority."""

from __future__ import annotations

from collections.abc import Sequence

from spell.rewards import majority_vote
from spell.roles import verifier
from spell.stages.common import Row, ids, token_cols


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
                    **ids(r["run"], r["iteration"], r["round"]),
                    "verdict_id": f"{r['response_id']}-v{k}",
                    "response_id": r["response_id"],
                    "question_id": r["question_id"],
                    "task": r["task"],
                    "sample": k,
                    "text": c["text"],
                    "vote": v,
                    "majority": -1 if maj is None else maj,
                    **token_cols(ro["prompt_ids"], c),
                }
            )
    return out
