"""Fault injection: the test-only switches, all in this room. Each is an environment variable that a test
sets for a child process (never a config key: a user's run cannot turn one on by accident).

- `SPELL_FAULT_KILL=<stage key>:<before|after>[@<iteration>]`: SIGKILL this process at that point of a
  stage (after = its output is written, its manifest entry is not); the kill/resume tests.
- `SPELL_FAULT_ACTOR_KILL=<stage key>[@<iteration>][,...]`: kill the policy actor at that stage's first
  actor call, once per entry and process, as a lost node or an OOM kill would; the actor-restart tests.
- `SPELL_FAULT_NEGATE_ADVANTAGES=1`: negate every advantage of the training batch; the negative control of
  the learning test (reward must fall).
- `SPELL_FAULT_GARBAGE=<rate>`: the scripted generator replaces that share of every role's completions with
  a model's bad day (empty, replacement characters, fake tags, nested fences, runaway repetition); the soak.
- `SPELL_FAULT_HACK=<name>[,...]`: the scripted generator plants reward hacking: `copy_template` (every
  other proposal copies the template's example answer and a document sentence), `yes_verifier` (every
  verdict is YES); the guard tests.
"""

from __future__ import annotations

import os
import signal
import time
from contextvars import ContextVar
from typing import Any

# "<stage key>@<iteration>" while a stage runs (set by tasks.runner): where SPELL_FAULT_ACTOR_KILL strikes
CURRENT_STAGE: ContextVar[str] = ContextVar("spell_stage", default="")
_ACTOR_KILLS_DONE: set[str] = set()


def maybe_kill_process(key: str, when: str, iteration: int) -> None:
    """SPELL_FAULT_KILL: without @<iteration>, at the first iteration that reaches the point."""
    target = os.environ.get("SPELL_FAULT_KILL")
    if target and target in (f"{key}:{when}", f"{key}:{when}@{iteration}"):
        os.kill(os.getpid(), signal.SIGKILL)


def maybe_kill_actor(handle: Any) -> None:
    """SPELL_FAULT_ACTOR_KILL, before an actor call of the current stage."""
    entries = [e for e in os.environ.get("SPELL_FAULT_ACTOR_KILL", "").split(",") if e]
    here = CURRENT_STAGE.get()
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


def negate_advantages() -> bool:
    return os.environ.get("SPELL_FAULT_NEGATE_ADVANTAGES") == "1"


def garbage_rate() -> float:
    return float(os.environ.get("SPELL_FAULT_GARBAGE", 0))


def planted_hacks() -> frozenset[str]:
    return frozenset(h for h in os.environ.get("SPELL_FAULT_HACK", "").split(",") if h)
