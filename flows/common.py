"""What every flow shares: resolving the config from flow parameters, flow-run names, one-line failures."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from spell.config import SpellConfig, load_config
from spell.errors import SpellError


def resolve(
    config: str | None,
    overrides: list[str] | None = None,
    run: str | None = None,
    runs_dir: str | None = None,
    deployment_overrides: list[str] | None = None,
) -> SpellConfig:
    """The config of a flow run: the YAML file, then the deployment's overrides, then the runs dir, then the
    user's overrides (so `-p overrides=[...]` adds to a deployment's settings, never drops them), then the
    run name. Every value goes through validation, so a bad run name is a one-line ConfigError."""
    ov = [*(deployment_overrides or [])]
    if runs_dir:
        ov.append(f"run.runs_dir={runs_dir}")
    ov += list(overrides or [])
    if run:
        ov.append(f"run.name={run}")
    return load_config(config, ov)


def failed(exc: SpellError) -> Any:
    """A user error ends the flow run as Failed with its one-line message (no traceback in the logs); calling
    the flow in-process raises the error itself, for the CLI to print."""
    from prefect import get_run_logger
    from prefect.states import Failed

    line = "spell: " + re.sub(r"\s*\n\s*", "; ", str(exc).strip())
    with contextlib.suppress(Exception):  # outside a run there is no run logger
        get_run_logger().error(line)  # before Prefect's own report of the failed state
    return Failed(message=line, data=exc)


def unwrap(out: Any) -> Any:
    """A task that returned a State (e.g. Skipped) gives its data."""
    from prefect.states import State

    return out.result() if isinstance(out, State) else out


def _parameters() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters or {})


def iteration_run_name() -> str:
    """`<run>-iter<k>`: the iteration this flow run computes (the next one when not given)."""
    p = _parameters()
    run = str(p.get("run") or "demo")
    try:
        from storage.layout import RunLayout

        cfg = resolve(p.get("config"), p.get("overrides"), run, p.get("runs_dir"), p.get("deployment_overrides"))
        k = int(p.get("iteration") or 0) or RunLayout(cfg.run.runs_dir, cfg.run.name).next_iteration()
        return f"{run}-iter{k}"
    except Exception:  # a bad config fails in the flow body, with its message; the name stays readable
        return f"{run}-iter"


def train_run_name() -> str:
    return f"{_parameters().get('run') or 'demo'}-train"


def replay_run_name() -> str:
    """`<run>-iter<k>-<branch>`, the branch the replay is about to create."""
    p = _parameters()
    run, k = str(p.get("run")), int(p.get("iteration") or 0)
    try:
        from storage.layout import RunLayout

        return f"{run}-iter{k}-{RunLayout(p.get('runs_dir') or 'runs', run).next_branch(k)}"
    except Exception:
        return f"{run}-iter{k}-replay"


def eval_run_name() -> str:
    p = _parameters()
    from pathlib import Path

    model = Path(str(p.get("model") or "model"))
    return str(p.get("name") or f"eval-{model.parent.name if model.name == 'model' else model.name}")
