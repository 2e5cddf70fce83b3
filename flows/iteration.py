"""`spell-iteration`: one self-play iteration of a named run, each stage a Prefect task.

    prefect deployment run spell-iteration/local -p run=demo          # after `spell deploy`
    spell run --config configs/cpu-smoke.yaml --iterations 1          # the same flow, in-process

Dynamic sampling repeats sample-docs -> question -> respond -> verify-vote -> reward in rounds until
`sampling.train_batch_size` usable responder groups exist (at most `sampling.max_rounds`); then the
batch is selected, one GRPO step is taken and a checkpoint is written. Every stage writes Parquet under
`runs/<run>/iter_<k>/` and is skipped on re-run when its inputs and config are unchanged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.common import failed, iteration_run_name, resolve, train_run_name, unwrap
from spell.config import SpellConfig, dump_config
from spell.data.clusters import Corpus
from spell.data.corpus import corpus_from_qa, drop_long_documents, load_corpus, require_usable
from spell.errors import SpellError
from storage.io import read_rows, to_table, write_rows, write_text
from storage.layout import Manifest, RunLayout
from storage.summary import iteration_metrics
from tasks.artifacts import publish_summary
from tasks.checkpoint import checkpoint
from tasks.context import StageContext
from tasks.grpo_step import grpo_step
from tasks.question import question
from tasks.respond import respond
from tasks.reward import reward
from tasks.sample_docs import sample_docs
from tasks.select_batch import select_batch
from tasks.verify import verify


def _logger() -> Any:
    try:
        return get_run_logger()
    except Exception:  # outside a flow run
        return logging.getLogger("spell")


def run_iteration(
    cfg: SpellConfig,
    iteration: int | None = None,
    branch: str = "",
    initial_checkpoint: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """The body of `spell-iteration`, callable from any flow (or from tests through a flow)."""
    log = _logger()
    layout = RunLayout(cfg.run.runs_dir, cfg.run.name)
    layout.check_writable()
    layout.check_free_space(cfg.run.min_free_disk_gb)
    k = iteration or layout.next_iteration()
    prev = layout.checkpoints / f"iter_{k - 1:04d}"
    ctx = StageContext(cfg, layout, k, branch, initial_checkpoint or (str(prev) if prev.is_dir() else None))
    ctx.iter_dir.mkdir(parents=True, exist_ok=True)
    logged_before = Manifest(ctx.iter_dir).complete  # a re-run of a complete iteration logs nothing twice
    if not branch:
        write_text(layout.root / "config.yaml", dump_config(cfg))
    write_text(ctx.iter_dir / "config.yaml", dump_config(cfg))
    corpus = load_checked_corpus(ctx)
    start = time.perf_counter()
    busy_before = _busy(ctx)
    timings: dict[str, float] = {}
    usable, rounds = 0, 0
    for rnd in range(1, cfg.sampling.max_rounds + 1):
        rounds = rnd
        for name, fn, args in (
            ("sample_docs", sample_docs, (ctx, rnd, corpus)),
            ("question", question, (ctx, rnd, corpus)),
            ("respond", respond, (ctx, rnd, corpus)),
            ("verify", verify, (ctx, rnd)),
            ("reward", reward, (ctx, rnd)),
        ):
            out = unwrap(fn(*args))
            timings[name] = timings.get(name, 0.0) + (0.0 if out.get("skipped") else out.get("seconds", 0.0))
            if name == "reward":
                usable += int(out["usable_groups"])
        log.info(
            "iteration %d round %d: %d usable responder groups so far (target %d)",
            k,
            rnd,
            usable,
            cfg.sampling.train_batch_size,
        )
        if usable >= cfg.sampling.train_batch_size:
            break
    note = ""
    if usable == 0:
        note = (
            f"iteration {k}: no responder group with reward variance after {rounds} round(s) "
            f"(sampling.max_rounds={cfg.sampling.max_rounds}): every question was too easy, too hard, ungrounded or "
            "unparsable (or its prompt too long), so only other roles' qualifying samples, if any, are trained; the "
            "round artifacts stay for inspection"
        )
        log.warning(note)
    elif usable < cfg.sampling.train_batch_size:
        log.warning(
            "iteration %d: only %d of %d groups after %d rounds; training on what there is",
            k,
            usable,
            cfg.sampling.train_batch_size,
            rounds,
        )
    for name, fn, args in (
        ("select_batch", select_batch, (ctx, rounds)),
        ("grpo_step", grpo_step, (ctx,)),
        ("checkpoint", checkpoint, (ctx,)),
    ):
        out = unwrap(fn(*args))
        timings[name] = 0.0 if out.get("skipped") else out.get("seconds", 0.0)
    info = _policy_info(ctx)
    manifest = Manifest(ctx.iter_dir)
    manifest.data.update(
        policy=info,
        complete=True,
        rounds=rounds,
        usable_groups=usable,
        trained=usable > 0,
        note=note,
        wall_seconds=round(time.perf_counter() - start, 3),
    )
    manifest.save()
    metrics = iteration_metrics(ctx.iter_dir)
    metrics.update({f"seconds/{n}": v for n, v in timings.items()})
    metrics["iteration/rounds"] = rounds
    wall = time.perf_counter() - start
    busy = sum(info["busy_seconds"].values()) - sum(busy_before.values())
    metrics.update(
        {
            "seconds/wall": wall,
            "seconds/generate_and_train": busy,
            "overhead/share": max(0.0, 1.0 - busy / wall) if wall > 0 else 0.0,
        }
    )
    if cfg.tracking.mlflow and not logged_before:
        from storage.tracking import Tracker

        tracker = Tracker(layout, cfg.tracking.mlflow_uri, branch=branch, iteration=k, overrides=overrides)
        tracker.log_config(cfg.model_dump(mode="json"))
        tracker.log_iteration(k, metrics, {f"checkpoint.iter_{k:04d}": str(ctx.checkpoint_root / f"iter_{k:04d}")})
        tracker.finish()
    publish_summary(ctx, metrics, note)
    return {
        "run": layout.run,
        "iteration": k,
        "branch": branch,
        "dir": str(ctx.iter_dir),
        "rounds": rounds,
        "usable_groups": usable,
        "note": note,
        "metrics": metrics,
        "timings": timings,
    }


def _busy(ctx: StageContext) -> dict[str, float]:
    """Seconds the policy actor spent generating and training so far (for the overhead share)."""
    return dict(_policy_info(ctx)["busy_seconds"])


def _policy_info(ctx: StageContext) -> dict[str, Any]:
    """The actor's counters, and when and where it was built (two flow runs served by one warm actor share it)."""
    from tasks.actor import call, policy

    info = call(policy(ctx), "info")
    return {k: info[k] for k in ("pid", "started_at", "busy_seconds", "learner_steps", "trained_iteration")}


def load_checked_corpus(ctx: StageContext) -> Corpus:
    """The iteration's corpus: bad rows and over-long documents skipped and written to `rejects.parquet`;
    a corpus with too little left stops the run here, before any generation."""
    cfg = ctx.cfg
    if cfg.run.mode == "rlvr":
        return corpus_from_qa(cfg.data.qa_file)
    corpus = load_corpus(cfg.data.corpus, seed=cfg.run.seed, cache_dir=Path(cfg.run.runs_dir) / ".corpus")
    from tasks.actor import call, policy

    corpus = drop_long_documents(
        corpus, cfg.responder.max_prompt_tokens, lambda texts: call(policy(ctx), "count_tokens", texts)
    )
    rejects = [
        {"run": ctx.layout.run, "iteration": ctx.iteration, "source": corpus.source, **r} for r in corpus.rejects
    ]
    path = ctx.file("rejects")
    if not path.is_file() or read_rows(path) != to_table("rejects", rejects).to_pylist():  # unchanged: kept as is
        write_rows(path, "rejects", rejects)
    require_usable(corpus, cfg.data.task_weights, cfg.data.max_reject_share)
    return corpus


@flow(name="spell-iteration", log_prints=True, flow_run_name=iteration_run_name)
def spell_iteration(
    run: str = "demo",
    config: str = "configs/cpu-smoke.yaml",
    iteration: int = 0,
    overrides: list[str] | None = None,
    runs_dir: str | None = None,
    deployment_overrides: list[str] | None = None,
) -> Any:
    """One self-play iteration of `run` (iteration 0 = the next one). `overrides` add to the deployment's
    `deployment_overrides` and `runs_dir`; a user error fails the run with its one-line message."""
    try:
        return run_iteration(resolve(config, overrides, run, runs_dir, deployment_overrides), iteration or None)
    except SpellError as exc:
        return failed(exc)


@flow(name="spell-train", log_prints=True, flow_run_name=train_run_name)
def spell_train(
    run: str = "demo",
    config: str = "configs/cpu-smoke.yaml",
    iterations: int = 1,
    overrides: list[str] | None = None,
    runs_dir: str | None = None,
    deployment_overrides: list[str] | None = None,
) -> Any:
    """`iterations` more iterations of `run`, each a `spell-iteration` subflow; resumes where it stopped."""
    try:
        cfg = resolve(config, overrides, run, runs_dir, deployment_overrides)
        start = RunLayout(cfg.run.runs_dir, cfg.run.name).next_iteration()
    except SpellError as exc:
        return failed(exc)
    kw = {"config": config, "overrides": overrides, "runs_dir": runs_dir, "deployment_overrides": deployment_overrides}
    return [spell_iteration(run=cfg.run.name, iteration=k, **kw) for k in range(start, start + iterations)]


__all__ = ["run_iteration", "spell_iteration", "spell_train"]
