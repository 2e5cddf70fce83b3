"""`spell-replay`: re-run an iteration from a stage into a new branch directory, never touching the original.

    spell replay --run smoke --iter 1 --from reward --set questioner.reward=rzero   # -> iter_0001.replay1/
    prefect deployment run spell-replay/local -p run=smoke -p iteration=1 -p from_stage=reward

The branch has its own MLflow run (tagged with the main run's id, its overrides as params) and its own
flow-run name, `<run>-iter<k>-<branch>`; the DuckDB views show it only in the `*_all` views.
"""

from __future__ import annotations

import shutil
from typing import Any

from prefect import flow

from flows.common import failed, replay_run_name, resolve
from flows.iteration import run_iteration
from spell.config import SpellConfig
from spell.errors import SpellError
from storage.layout import Manifest, RunLayout, StorageError, stage_of

STAGE_ORDER = ("sample_docs", "question", "respond", "verify", "reward", "select_batch", "grpo_step", "checkpoint")


def prepare_replay(cfg: SpellConfig, iteration: int, from_stage: str) -> tuple[str, str | None]:
    """Copy the stages before `from_stage` of iteration `iteration` into a new branch; return (branch, checkpoint)."""
    if from_stage not in STAGE_ORDER:
        raise StorageError(f"--from must be one of {', '.join(STAGE_ORDER)}, got {from_stage!r}")
    layout = RunLayout(cfg.run.runs_dir, cfg.run.name)
    src = layout.iter_dir(iteration)
    if not (src / "manifest.json").is_file():
        have = ", ".join(str(k) for k in layout.iterations()) or "none"
        raise StorageError(f"run {layout.run!r} has no iteration {iteration} under {layout.runs_dir} (it has: {have})")
    branch = layout.next_branch(iteration)
    dst = layout.iter_dir(iteration, branch)
    dst.mkdir(parents=True)
    original, copied = Manifest(src), Manifest(dst)
    keep = STAGE_ORDER[: STAGE_ORDER.index(from_stage)]
    for key, rec in original.data["stages"].items():
        if stage_of(key) in keep:
            for name in rec["outputs"]:
                shutil.copy2(src / name, dst / name)
            copied.data["stages"][key] = {**rec, "copied_from": str(src)}
    copied.data["replay_of"] = {"iteration": iteration, "from": from_stage, "dir": str(src)}
    copied.save()
    prev = layout.checkpoints / f"iter_{iteration - 1:04d}"
    return branch, str(prev) if prev.is_dir() else None


@flow(name="spell-replay", log_prints=True, flow_run_name=replay_run_name)
def spell_replay(
    run: str, iteration: int, from_stage: str = "reward", runs_dir: str = "runs", overrides: list[str] | None = None
) -> Any:
    """Re-run iteration `iteration` of `run` from `from_stage` into `iter_<k>.replay<n>/`, with the run's
    stored config plus `overrides` (e.g. re-score rewards under another config without generating again)."""
    try:
        saved = RunLayout(runs_dir, run).root / "config.yaml"
        if not saved.is_file():
            raise StorageError(f"run {run!r} has no config.yaml under {runs_dir}: nothing to replay")
        cfg = resolve(str(saved), overrides, run, runs_dir)
        branch, ckpt = prepare_replay(cfg, iteration, from_stage)
        return run_iteration(cfg, iteration, branch=branch, initial_checkpoint=ckpt, overrides=overrides)
    except SpellError as exc:
        return failed(exc)
