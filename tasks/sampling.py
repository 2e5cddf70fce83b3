"""Per-role generation choices of a stage: sampling parameters with the stage's seed, reply prefills."""

from __future__ import annotations

from typing import Any

from spell.roles import prompts as P
from spell.stages.common import stage_seed
from tasks.context import StageContext


def sampling(ctx: StageContext, n: int, stage: str, rnd: int) -> dict[str, Any]:
    """Sampling parameters of a generation stage; the seed is derived from (run seed, iteration, round, stage)."""
    r = ctx.cfg.rollout
    role = {"question": "questioner", "grounding": "grounding", "respond": "responder", "verify": "verifier"}[stage]
    params = {
        "n": n,
        "temperature": r.temperature,
        "top_p": r.top_p,
        "top_k": r.top_k,
        "max_new_tokens": r.role_max_new_tokens.get(role, r.max_new_tokens),
        "seed": stage_seed(ctx.cfg.run.seed, ctx.iteration, rnd, stage),
    }
    if role == "questioner" and r.prefills(role):
        # the prefilled reply is the json block itself: it ends at its closing fence (kept, for the parser);
        # what a small model writes after it is noise that would make a later, broken block the last one
        params.update(stop=["```"], include_stop=True)
    return params


def prefills(ctx: StageContext, role: str, tasks: list[str]) -> list[str] | None:
    """Reply prefills per prompt when `rollout.prefill` covers `role` (small demo models), else None."""
    if not ctx.cfg.rollout.prefills(role):
        return None
    if role == "questioner":
        return [P.prefill_questioner(t, ctx.cfg.rollout.questioner_opening) for t in tasks]
    if role == "verifier":
        return [P.PREFILL_VERIFIER] * len(tasks)
    return [P.prefill_responder(t) for t in tasks]
