"""Stage 7, checkpoint: HF safetensors weights, optimizer, RNG and the resolved config of the run."""

from __future__ import annotations

from typing import Any

from prefect import task

from spell.config import dump_config
from tasks.actor import call, policy
from tasks.context import StageContext
from tasks.grpo_step import apply_step, has_step
from tasks.runner import run_stage


@task(name="checkpoint", task_run_name="checkpoint-i{ctx.iteration}")
def checkpoint(ctx: StageContext) -> dict[str, Any]:
    name = f"iter_{ctx.iteration:04d}"
    target = ctx.checkpoint_root / name

    def compute() -> dict[str, Any]:
        actor = policy(ctx)
        if not has_step(ctx, actor):
            # the actor died after the GRPO step and was rebuilt from the previous checkpoint: saving it
            # as this iteration would lose the step, so the stored batch is applied again first
            apply_step(ctx, actor)
        path = call(
            actor,
            "save",
            str(ctx.checkpoint_root),
            name,
            {"iteration": ctx.iteration, "run": ctx.layout.run, "config": dump_config(ctx.cfg)},
        )
        return {"path": path}

    return run_stage(ctx, "checkpoint", [ctx.file("train_metrics")], [], compute, force=not (target / "model").is_dir())
