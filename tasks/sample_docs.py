"""Stage 1, sample docs: questioner prompts for one round (tasks, document subsets, history memory).

The history memory and the task sampler's position are rebuilt from the run's stored artifacts with
DuckDB, so a resumed or replayed iteration sees exactly what the original one saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from spell.data.clusters import Corpus
from spell.history import HistoryMemory
from spell.sampling import TaskSampler
from spell.stages.sample_docs import sample_prompts, static_prompts
from storage.io import write_rows
from storage.views import query
from tasks.context import StageContext
from tasks.runner import run_stage


def _history_files(ctx: StageContext, rnd: int) -> dict[str, list[Path]]:
    return ctx.prior_round_files(("prompts", "questions", "rewards"), rnd)


def rebuild_state(ctx: StageContext, rnd: int, corpus: Corpus) -> tuple[HistoryMemory, TaskSampler, int]:
    files = _history_files(ctx, rnd)
    h = ctx.cfg.history
    doc_col = "new_doc_indices" if h.context == "paper" else "doc_indices"
    events = query(
        files,
        f"""
        SELECT q.task, q.cluster_id, coalesce(q.responder_question, q.question) AS question, q.answer,
               p.{doc_col} AS doc_indices, q.iteration, w.group_mean AS mean_reward
        FROM questions q
        JOIN prompts p ON p.prompt_id = q.question_id AND p.iteration = q.iteration
        JOIN rewards w ON w.sample_id = q.question_id AND w.role = 'questioner' AND w.iteration = q.iteration
        WHERE q.status = 'ok' AND w.group_mean IS NOT NULL
        ORDER BY q.iteration, q.round, q.question_id""",
    )
    memory = HistoryMemory.replay(events, size=h.size, admit=h.admit, context=h.context, dedup=h.dedup)
    drawn = {r["task"]: int(r["n"]) for r in query(files, "SELECT task, count(*) AS n FROM prompts GROUP BY task")}
    sampler = TaskSampler(corpus.by_task(), ctx.cfg.data.task_weights, seed=ctx.cfg.run.seed, drawn=drawn)
    return memory, sampler, len(events)


@task(name="sample-docs", task_run_name="sample-docs-i{ctx.iteration}-r{rnd}")
def sample_docs(ctx: StageContext, rnd: int, corpus: Corpus) -> dict[str, Any]:
    out = ctx.file("prompts", rnd)
    prior = _history_files(ctx, rnd)

    def compute() -> dict[str, Any]:
        memory, sampler, n_events = rebuild_state(ctx, rnd, corpus)
        if ctx.cfg.run.mode == "rlvr":
            rows = static_prompts(corpus, sampler, ctx.cfg, ctx.layout.run, ctx.iteration, rnd)
        else:
            rows = sample_prompts(corpus, sampler, memory, ctx.cfg, ctx.layout.run, ctx.iteration, rnd)
        write_rows(out, "prompts", rows)
        return {
            "path": str(out),
            "rows": len(rows),
            "history_entries": len(memory),
            "history_events": n_events,
            "mean_docs_shown": sum(len(r["doc_indices"]) for r in rows) / max(len(rows), 1),
        }

    return run_stage(ctx, f"sample_docs_r{rnd:02d}", [p for ps in prior.values() for p in ps], [out], compute)
