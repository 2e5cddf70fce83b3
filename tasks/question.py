"""Stage 2, question: one questioner sample per prompt, parsed into a question with a status."""

from __future__ import annotations

from typing import Any

from prefect import task

from spell.data.clusters import Corpus
from spell.guards import guard_counts
from spell.stages.question import question_rows, static_question_rows
from spell.vocab import QUESTION_GUARDS
from storage.io import read_rows, write_rows
from tasks.actor import call, generate, policy, prompt_chunk
from tasks.context import StageContext
from tasks.runner import run_stage
from tasks.sampling import prefills, sampling


@task(name="question", task_run_name="question-i{ctx.iteration}-r{rnd}", retries=2, retry_delay_seconds=5)
def question(ctx: StageContext, rnd: int, corpus: Corpus | None = None) -> dict[str, Any]:
    src, out = ctx.file("prompts", rnd), ctx.file("questions", rnd)

    def compute() -> dict[str, Any]:
        prompts = read_rows(src)
        if ctx.cfg.run.mode == "rlvr":
            assert corpus is not None
            rows = static_question_rows(prompts, corpus)
            write_rows(out, "questions", rows)
            return {"path": str(out), "rows": len(rows), "status_ok": len(rows)}
        actor = policy(ctx)
        rollouts = generate(
            actor,
            [p["prompt"] for p in prompts],
            sampling(ctx, 1, "question", rnd),
            None,
            prefills(ctx, "questioner", [p["task"] for p in prompts]),
            desc=f"question i{ctx.iteration} r{rnd}",
            role="questioner",
            chunk=prompt_chunk(ctx),
        )
        docs = corpus.clusters if corpus is not None else {}
        rows = question_rows(
            prompts,
            rollouts,
            ctx.cfg,
            lambda texts: call(actor, "count_tokens", texts),
            lambda p: [docs[p["cluster_id"]].documents[i] for i in p["doc_indices"]] if docs else [],
        )
        write_rows(out, "questions", rows)
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        guards = guard_counts(r["reason"] for r in rows if r["status"] == "rejected")
        return {
            "path": str(out),
            "rows": len(rows),
            **{f"status_{k}": v for k, v in statuses.items()},
            **{f"guard_{k}": v for k, v in guards.items() if k in QUESTION_GUARDS},
        }

    return run_stage(ctx, f"question_r{rnd:02d}", [src], [out], compute)
