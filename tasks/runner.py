"""Running one stage: skip it when the manifest says it ran on the same inputs and config, otherwise compute
it (rebuilding a dead policy actor and retrying), record it in the manifest and publish its summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spell import faults
from storage.layout import Manifest
from tasks.actor import HANDLES, actor_died
from tasks.artifacts import publish_stage, skipped_state, stage_logger
from tasks.context import StageContext


def run_stage(
    ctx: StageContext,
    key: str,
    inputs: list[Path],
    outputs: list[Path],
    compute: Callable[[], dict[str, Any]],
    force: bool = False,
) -> Any:
    """Run `compute` unless the manifest says this stage already ran on the same inputs and config.

    A policy actor that dies mid-stage (node lost, OOM-killed) is rebuilt from the latest checkpoint by
    `policy()` and the stage is computed again, up to `engine.actor_restarts` times. Inside a Prefect run
    the stage's summary becomes a markdown artifact, and a skipped stage ends in a state named Skipped.
    """
    manifest = Manifest(ctx.iter_dir)
    if not force and manifest.is_done(key, ctx.config_hash, inputs):
        summary = {**manifest.stage(key).get("summary", {}), "skipped": True}
        publish_stage(ctx, key, summary)
        return skipped_state(summary)
    start = time.perf_counter()
    token = faults.CURRENT_STAGE.set(f"{key}@{ctx.iteration}")
    restarts = 0
    try:
        faults.maybe_kill_process(key, "before", ctx.iteration)
        while True:
            try:
                summary = compute()
                break
            except Exception as exc:
                if not actor_died(exc) or restarts >= ctx.cfg.engine.actor_restarts:
                    raise
                restarts += 1
                HANDLES.pop(ctx.actor_name, None)
                stage_logger().warning(
                    "stage %s: policy actor died (%s); rebuilding it from the latest checkpoint, retry %d of %d",
                    key, type(exc).__name__, restarts, ctx.cfg.engine.actor_restarts,
                )  # fmt: skip
        faults.maybe_kill_process(key, "after", ctx.iteration)
    finally:
        faults.CURRENT_STAGE.reset(token)
    seconds = time.perf_counter() - start
    summary = {**summary, "seconds": round(seconds, 3)}
    if restarts:
        summary["actor_restarts"] = restarts
    manifest = Manifest(ctx.iter_dir)  # re-read: nothing else writes it, but stay correct if it did
    manifest.record(key, ctx.config_hash, inputs, outputs, summary=summary)
    summary = {**summary, "skipped": False}
    publish_stage(ctx, key, summary)
    return summary
