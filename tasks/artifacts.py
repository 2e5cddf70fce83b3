"""What a stage shows in the Prefect UI: its log lines, its summary as a markdown artifact, the iteration's
headline numbers; outside a Prefect run all of it is a no-op or the `spell` logger."""

from __future__ import annotations

import logging
import re
from typing import Any

from tasks.context import StageContext

log = logging.getLogger("spell")


def stage_logger() -> Any:
    """The flow-run logger inside a Prefect run (its lines show in the UI), the `spell` logger elsewhere."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:
        return log


def in_prefect_run() -> bool:
    try:
        from prefect.context import FlowRunContext, TaskRunContext

        return TaskRunContext.get() is not None or FlowRunContext.get() is not None
    except Exception:
        return False


def skipped_state(summary: dict[str, Any]) -> Any:
    if not in_prefect_run():
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


def publish_stage(ctx: StageContext, key: str, summary: dict[str, Any]) -> None:
    """The stage's manifest summary as a markdown artifact (rows, statuses, accuracies, path, seconds)."""
    if not in_prefect_run():
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
    if not in_prefect_run():
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
