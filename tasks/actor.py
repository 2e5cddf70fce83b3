"""Reaching the run's policy actor: its handle (rebuilt from the newest checkpoint when it died), calls by
method name, and generation in chunks with progress. The actor's methods are `spell.engine.policy.Policy`'s."""

from __future__ import annotations

import sys
from typing import Any

from spell import faults
from tasks.artifacts import in_prefect_run, stage_logger
from tasks.context import StageContext

# A non-detached Ray actor dies with its last handle, named or not: this process keeps one handle per
# actor so the policy (and its trained weights) lives from one stage to the next.
HANDLES: dict[str, Any] = {}


def policy(ctx: StageContext) -> Any:
    """The run's named policy actor, created from the newest checkpoint when missing."""
    import ray

    from spell.engine.policy import PolicySpec
    from spell.engine.ray_policy import connect, policy_actor, warm

    connect(ctx.cfg.engine.ray_address)
    handle = HANDLES.get(ctx.actor_name)
    if handle is not None:
        try:
            ray.get(handle.info.remote(), timeout=60)
            return handle
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            HANDLES.pop(ctx.actor_name, None)  # died: rebuilt below from the latest checkpoint
    handle = policy_actor(
        ctx.actor_name,
        PolicySpec.from_config(ctx.cfg),
        checkpoint_root=str(ctx.checkpoint_root),
        initial_checkpoint=ctx.initial_checkpoint,
        detached=warm() and ctx.cfg.engine.warm_policy_seconds > 0,
        idle_timeout=ctx.cfg.engine.warm_policy_seconds if warm() else 0.0,
    )
    HANDLES[ctx.actor_name] = handle
    return handle


def actor_died(exc: BaseException) -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return isinstance(exc, ray.exceptions.RayActorError)


def call(handle: Any, method: str, *args: Any) -> Any:
    import ray

    faults.maybe_kill_actor(handle)
    return ray.get(getattr(handle, method).remote(*args))


def prompt_chunk(ctx: StageContext) -> int:
    """Prompts per actor call: 16 on transformers (progress between calls); every prompt in one call on
    vLLM, whose continuous batching would otherwise wait for each chunk's slowest sample."""
    return 1 << 30 if ctx.cfg.engine.backend == "vllm" else 16


def generate(
    handle: Any,
    prompts: list[Any],
    params: dict[str, Any],
    max_prompt_tokens: int | None = None,
    prefills: list[str] | None = None,
    desc: str = "generate",
    chunk: int = 16,
    role: str | None = None,
) -> list[dict[str, Any]]:
    """The actor's `rollout` in chunks of prompts, with progress (a bar on a terminal, log lines elsewhere);
    chunk j samples with seed + j."""
    from spell.progress import Progress

    out: list[dict[str, Any]] = []
    emit = stage_logger().info if in_prefect_run() else None
    with Progress(len(prompts), desc, unit="prompt", emit=emit) as bar:
        for j, i in enumerate(range(0, len(prompts), chunk)):
            part = {**params, "seed": None if params.get("seed") is None else params["seed"] + j}
            pf = prefills[i : i + chunk] if prefills else None
            out += call(handle, "rollout", prompts[i : i + chunk], part, max_prompt_tokens, pf, role)
            bar.update(len(prompts[i : i + chunk]))
    return out
