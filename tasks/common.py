"""What every stage task shares: the iteration context, manifest-based skipping, the policy actor."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spell.config import SpellConfig, dump_config
from storage.io import read_rows
from storage.layout import Manifest, RunLayout

log = logging.getLogger("spell")
_STAGE: ContextVar[str] = ContextVar("spell_stage", default="")


@dataclass
class StageContext:
    """One iteration of one run (or of a replay branch of it)."""

    cfg: SpellConfig
    layout: RunLayout
    iteration: int
    branch: str = ""
    initial_checkpoint: str | None = None
    _hash: str = field(default="", repr=False)

    @property
    def iter_dir(self) -> Path:
        return self.layout.iter_dir(self.iteration, self.branch)

    @property
    def config_hash(self) -> str:
        if not self._hash:
            self._hash = hashlib.sha256(dump_config(self.cfg).encode()).hexdigest()[:16]
        return self._hash

    def file(self, kind: str, rnd: int | None = None) -> Path:
        return self.layout.stage_file(self.iteration, kind, rnd, self.branch)

    @property
    def checkpoint_root(self) -> Path:
        return self.iter_dir / "checkpoints" if self.branch else self.layout.checkpoints

    @property
    def actor_name(self) -> str:
        """Unique per run directory (two runs may share a name under different runs dirs) and branch."""
        where = hashlib.sha256(str(self.layout.root).encode()).hexdigest()[:8]
        return f"spell-{self.layout.run}-{where}" + (f"-{self.branch}" if self.branch else "")

    def read(self, kind: str, rnd: int | None = None) -> list[dict[str, Any]]:
        p = self.file(kind, rnd)
        return read_rows(p) if p.is_file() else []


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
        _publish(ctx, key, summary)
        return _skipped(summary)
    start = time.perf_counter()
    token = _STAGE.set(f"{key}@{ctx.iteration}")
    restarts = 0
    try:
        _maybe_fault(key, "before", ctx.iteration)
        while True:
            try:
                summary = compute()
                break
            except Exception as exc:
                if not _actor_died(exc) or restarts >= ctx.cfg.engine.actor_restarts:
                    raise
                restarts += 1
                _HANDLES.pop(ctx.actor_name, None)
                stage_logger().warning(
                    "stage %s: policy actor died (%s); rebuilding it from the latest checkpoint, retry %d of %d",
                    key, type(exc).__name__, restarts, ctx.cfg.engine.actor_restarts,
                )  # fmt: skip
        _maybe_fault(key, "after", ctx.iteration)
    finally:
        _STAGE.reset(token)
    seconds = time.perf_counter() - start
    summary = {**summary, "seconds": round(seconds, 3)}
    if restarts:
        summary["actor_restarts"] = restarts
    manifest = Manifest(ctx.iter_dir)  # re-read: nothing else writes it, but stay correct if it did
    manifest.record(key, ctx.config_hash, inputs, outputs, summary=summary)
    summary = {**summary, "skipped": False}
    _publish(ctx, key, summary)
    return summary


def stage_logger() -> Any:
    """The flow-run logger inside a Prefect run (its lines show in the UI), the `spell` logger elsewhere."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:
        return log


def _in_prefect_run() -> bool:
    try:
        from prefect.context import FlowRunContext, TaskRunContext

        return TaskRunContext.get() is not None or FlowRunContext.get() is not None
    except Exception:
        return False


def _skipped(summary: dict[str, Any]) -> Any:
    if not _in_prefect_run():
        return summary
    from prefect.states import Completed

    return Completed(name="Skipped", message="skipped: already in the manifest", data=summary)


def artifact_key(ctx: StageContext, what: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    raw = f"{ctx.layout.run}-iter{ctx.iteration}{'-' + ctx.branch if ctx.branch else ''}-{what}"
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:200]


def _table(rows: list[tuple[str, Any]]) -> str:
    def cell(v: Any) -> str:
        v = f"{v:.4g}" if isinstance(v, float) else str(v)
        return v.replace("|", "\\|").replace("\n", " ")

    return "| | |\n|---|---|\n" + "\n".join(f"| {cell(k)} | {cell(v)} |" for k, v in rows)


def _publish(ctx: StageContext, key: str, summary: dict[str, Any]) -> None:
    """The stage's manifest summary as a markdown artifact (rows, statuses, accuracies, path, seconds)."""
    if not _in_prefect_run():
        return
    from prefect.artifacts import create_markdown_artifact

    state = "skipped: already in the manifest" if summary.get("skipped") else "computed"
    rows = [("stage", key), ("iteration", ctx.iteration), ("state", state)]
    rows += [(k, v) for k, v in summary.items() if k != "skipped"]
    try:
        create_markdown_artifact(
            key=artifact_key(ctx, key.replace("_", "-")), markdown=_table(rows), description=f"{key}: {state}"
        )
    except Exception as exc:  # the UI's view is never worth a failed stage
        log.debug("artifact for %s not published: %s", key, exc)


def publish_summary(ctx: StageContext, metrics: dict[str, float], note: str = "") -> None:
    """The iteration's headline numbers as one artifact: rewards, accuracies, loss, timings, where the data is."""
    if not _in_prefect_run():
        return
    from prefect.artifacts import create_markdown_artifact

    wanted = ("reward/", "responder/", "questioner/parse_rate", "train/loss", "train/grad_norm", "train/tokens",
              "seconds/wall", "overhead/share", "iteration/rounds")  # fmt: skip
    rows = [("run", ctx.layout.run), ("iteration", ctx.iteration), ("artifacts", str(ctx.iter_dir))]
    rows += [(k, v) for k, v in sorted(metrics.items()) if k.startswith(wanted) and not k.endswith("/n")]
    if note:
        rows.append(("note", note))
    try:
        create_markdown_artifact(
            key=artifact_key(ctx, "summary"), markdown=_table(rows), description=f"iteration {ctx.iteration}"
        )
    except Exception as exc:
        log.debug("iteration summary artifact not published: %s", exc)


def _actor_died(exc: BaseException) -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return isinstance(exc, ray.exceptions.RayActorError)


def _maybe_fault(key: str, when: str, iteration: int) -> None:
    """Fault injection for the kill/resume tests: SPELL_FAULT_KILL=<stage key>:<before|after>[@<iteration>]
    sends this process SIGKILL at that point (after = the stage's output is written, its manifest entry
    is not); without @<iteration> at the first iteration that reaches it."""
    target = os.environ.get("SPELL_FAULT_KILL")
    if target and target in (f"{key}:{when}", f"{key}:{when}@{iteration}"):
        os.kill(os.getpid(), signal.SIGKILL)


_ACTOR_KILLS_DONE: set[str] = set()


def _maybe_kill_actor(handle: Any) -> None:
    """Fault injection: SPELL_FAULT_ACTOR_KILL=<stage key>[@<iteration>][,...] kills the policy actor at that
    stage's first actor call (once per entry and process), as a lost node or an OOM kill would."""
    entries = [e for e in os.environ.get("SPELL_FAULT_ACTOR_KILL", "").split(",") if e]
    here = _STAGE.get()  # "<key>@<iteration>"
    if not here or not entries:
        return
    hit = next((e for e in entries if e in (here, here.split("@")[0]) and e not in _ACTOR_KILLS_DONE), None)
    if hit:
        import ray

        _ACTOR_KILLS_DONE.add(hit)
        ray.kill(handle, no_restart=True)
        # ray.kill only asks: wait until the actor is gone, so the call that follows fails here and the death
        # is counted by this stage (a call that slipped through would leave it to the next stage's health check)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                ray.get(handle.info.remote(), timeout=10)
            except ray.exceptions.RayActorError:
                return
            except ray.exceptions.GetTimeoutError:
                continue
            time.sleep(0.05)


# A non-detached Ray actor dies with its last handle, named or not: this process keeps one handle per
# actor so the policy (and its trained weights) lives from one stage to the next.
_HANDLES: dict[str, Any] = {}


def policy(ctx: StageContext) -> Any:
    """The run's named policy actor, created from the newest checkpoint when missing."""
    import ray

    from spell.engine.policy import PolicySpec
    from spell.engine.ray_policy import connect, policy_actor, warm

    connect(ctx.cfg.engine.ray_address)
    handle = _HANDLES.get(ctx.actor_name)
    if handle is not None:
        try:
            ray.get(handle.info.remote(), timeout=60)
            return handle
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            _HANDLES.pop(ctx.actor_name, None)  # died: rebuilt below from the latest checkpoint
    handle = policy_actor(
        ctx.actor_name,
        PolicySpec.from_config(ctx.cfg),
        checkpoint_root=str(ctx.checkpoint_root),
        initial_checkpoint=ctx.initial_checkpoint,
        detached=warm() and ctx.cfg.engine.warm_policy_seconds > 0,
        idle_timeout=ctx.cfg.engine.warm_policy_seconds if warm() else 0.0,
    )
    _HANDLES[ctx.actor_name] = handle
    return handle


def prompt_chunk(ctx: StageContext) -> int:
    """Prompts per actor call: 16 on transformers (progress between calls); every prompt in one call on
    vLLM, whose continuous batching would otherwise wait for each chunk's slowest sample."""
    return 1 << 30 if ctx.cfg.engine.backend == "vllm" else 16


def rollout(
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
    emit = stage_logger().info if _in_prefect_run() else None
    with Progress(len(prompts), desc, unit="prompt", emit=emit) as bar:
        for j, i in enumerate(range(0, len(prompts), chunk)):
            part = {**params, "seed": None if params.get("seed") is None else params["seed"] + j}
            pf = prefills[i : i + chunk] if prefills else None
            out += call(handle, "rollout", prompts[i : i + chunk], part, max_prompt_tokens, pf, role)
            bar.update(len(prompts[i : i + chunk]))
    return out


def call(handle: Any, method: str, *args: Any) -> Any:
    import ray

    _maybe_kill_actor(handle)
    return ray.get(getattr(handle, method).remote(*args))


def sampling(ctx: StageContext, n: int, stage: str, rnd: int) -> dict[str, Any]:
    """Sampling parameters of a generation stage; the seed is derived from (run seed, iteration, round, stage)."""
    from spell.stages import stage_seed

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
    from spell.roles import prompts as P

    if role == "questioner":
        return [P.prefill_questioner(t, ctx.cfg.rollout.questioner_opening) for t in tasks]
    if role == "verifier":
        return [P.PREFILL_VERIFIER] * len(tasks)
    return [P.prefill_responder(t) for t in tasks]
