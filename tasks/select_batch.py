"""Stage 6, select-batch: the training batch over all rounds of the iteration, advantages attached."""

from __future__ import annotations

from typing import Any

from prefect import task

from spell import faults
from spell.stages.select_batch import batch_rows, sample_tokens
from storage.io import read_rows, write_rows
from tasks.context import StageContext
from tasks.runner import run_stage


@task(name="select-batch", task_run_name="select-batch-i{ctx.iteration}")
def select_batch(ctx: StageContext, rounds: int) -> dict[str, Any]:
    kinds = ("rewards", "questions", "responder_prompts", "responses", "verdicts")
    srcs = [ctx.file(k, r) for r in range(1, rounds + 1) for k in kinds]
    out = ctx.file("batch")

    def compute() -> dict[str, Any]:
        rewards: list[dict[str, Any]] = []
        tokens: dict[str, tuple[list[int], list[int]]] = {}
        for r in range(1, rounds + 1):
            rewards += read_rows(ctx.file("rewards", r))
            tokens.update(sample_tokens(*(ctx.read(k, r) for k in kinds[1:])))
        rows = batch_rows(rewards, tokens, ctx.cfg, ctx.layout.run, ctx.iteration)
        if faults.negate_advantages():  # the negative control of the learning test
            rows = [{**r, "advantage": -r["advantage"]} for r in rows]
        write_rows(out, "batch", rows)
        by_role: dict[str, int] = {}
        for x in rows:
            by_role[x["role"]] = by_role.get(x["role"], 0) + 1
        return {"path": str(out), "rows": len(rows), **{f"{k}_samples": n for k, n in by_role.items()}}

    return run_stage(ctx, "select_batch", srcs, [out], compute)
