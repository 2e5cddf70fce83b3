"""Stage 3, respond: the grounding check (no documents), then G answers over the whole cluster."""

from __future__ import annotations

from typing import Any

from prefect import task

from spell.data.clusters import Corpus
from spell.guards import GuardSwitches, guard_counts
from spell.stages.respond import (
    grounded_questions,
    grounding_requests,
    grounding_rows,
    responder_prompt_rows,
    responder_requests,
    response_rows,
)
from spell.vocab import RESPONSE_GUARDS
from storage.io import read_rows, write_rows
from tasks.actor import generate, policy, prompt_chunk
from tasks.context import StageContext
from tasks.runner import run_stage
from tasks.sampling import prefills, sampling


@task(name="respond", task_run_name="respond-i{ctx.iteration}-r{rnd}", retries=2, retry_delay_seconds=5)
def respond(ctx: StageContext, rnd: int, corpus: Corpus) -> dict[str, Any]:
    src = ctx.file("questions", rnd)
    out_g, out_p, out_r = ctx.file("grounding", rnd), ctx.file("responder_prompts", rnd), ctx.file("responses", rnd)
    cfg = ctx.cfg

    def compute() -> dict[str, Any]:
        questions = read_rows(src)
        actor = policy(ctx)
        grounding: list[dict[str, Any]] = []
        if cfg.grounding.enabled:
            reqs = grounding_requests(questions)
            if reqs:
                ro = generate(
                    actor,
                    [p for _, p in reqs],
                    sampling(ctx, cfg.grounding.samples, "grounding", rnd),
                    None,
                    prefills(ctx, "grounding", [q["task"] for q, _ in reqs]),
                    desc=f"grounding i{ctx.iteration} r{rnd}",
                    role="grounding",
                    chunk=prompt_chunk(ctx),
                )
                grounding = grounding_rows(reqs, ro)
        grounded = grounded_questions(grounding)
        reqs = responder_requests(questions, grounded, corpus, cfg.grounding.enabled)
        rows: list[dict[str, Any]] = []
        prompt_rows: list[dict[str, Any]] = []
        too_long = 0
        if reqs:
            ro = generate(
                actor,
                [p for _, p in reqs],
                sampling(ctx, cfg.responder.group_size, "respond", rnd),
                cfg.responder.max_prompt_tokens,
                prefills(ctx, "responder", [q["task"] for q, _ in reqs]),
                desc=f"respond i{ctx.iteration} r{rnd}",
                role="responder",
                chunk=prompt_chunk(ctx),
            )
            too_long = sum(1 for x in ro if x["completions"][0]["finish_reason"] == "prompt_too_long")
            kept = [
                (q, x)
                for q, x in zip(reqs, ro, strict=True)
                if x["completions"][0]["finish_reason"] != "prompt_too_long"
            ]
            rows = response_rows([q for q, _ in kept], [x for _, x in kept], GuardSwitches(cfg.guards.enabled()))
            prompt_rows = responder_prompt_rows([q for q, _ in kept], [x for _, x in kept])
        write_rows(out_g, "grounding", grounding)
        write_rows(out_p, "responder_prompts", prompt_rows)
        write_rows(out_r, "responses", rows)
        return {
            "path": str(out_r),
            "grounding_checked": len(grounded),
            "ungrounded": sum(1 for v in grounded.values() if not v),
            "questions_answered": len(rows) // max(cfg.responder.group_size, 1),
            "prompt_too_long": too_long,
            "rows": len(rows),
            "rule_accuracy": sum(r["rule_score"] for r in rows) / max(len(rows), 1),
            **{f"guard_{k}": v for k, v in guard_counts(r["reason"] for r in rows).items() if k in RESPONSE_GUARDS},
        }

    return run_stage(ctx, f"respond_r{rnd:02d}", [src], [out_g, out_p, out_r], compute)
