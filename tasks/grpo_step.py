"""Stage 6, GRPO step: one unified policy update on the batch, inside the Ray policy actor."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from prefect import task

from storage.io import read_rows, write_rows
from storage.schemas import SCHEMAS
from tasks.actor import call, policy
from tasks.context import StageContext
from tasks.runner import run_stage

METRIC_KEYS = tuple(f.name for f in SCHEMAS["train_metrics"] if f.type == pa.float64())


def apply_step(ctx: StageContext, actor: Any) -> dict[str, Any]:
    """The iteration's update from its stored batch; deterministic, so re-applying it on a rebuilt actor
    reproduces the same weights."""
    seqs = [
        {"prompt_ids": b["prompt_ids"], "response_ids": b["response_ids"], "advantage": b["advantage"]}
        for b in read_rows(ctx.file("batch"))
    ]
    m = call(actor, "train_step", seqs, ctx.iteration)
    steps = call(actor, "info")["learner_steps"]
    return {
        "run": ctx.layout.run,
        "iteration": ctx.iteration,
        **{k: float(m.get(k, 0.0)) for k in METRIC_KEYS},
        "learner_steps": steps,
    }


def has_step(ctx: StageContext, actor: Any) -> bool:
    return call(actor, "info")["trained_iteration"] >= ctx.iteration


@task(name="grpo-step", task_run_name="grpo-step-i{ctx.iteration}")
def grpo_step(ctx: StageContext) -> dict[str, Any]:
    src, out = ctx.file("batch"), ctx.file("train_metrics")
    # The manifest alone cannot tell whether *this* actor already took the step: a fresh actor built
    # from the previous checkpoint after a kill has not, so the step is re-applied (deterministically).
    applied = has_step(ctx, policy(ctx))

    def compute() -> dict[str, Any]:
        row = apply_step(ctx, policy(ctx))  # policy() inside: a retry after an actor death gets the rebuilt one
        write_rows(out, "train_metrics", [row])
        return {"path": str(out), **{k: row[k] for k in ("loss", "grad_norm", "tokens", "skipped")}}

    return run_stage(ctx, "grpo_step", [src], [out], compute, force=not applied)
