"""The history memory two ways, for the pipeline and resume tests: rebuilt from the artifacts by the
sample-docs stage (DuckDB), and replayed as a live process would have kept it, round by round, in Python."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from spell.config import load_config
from spell.data.corpus import load_corpus
from spell.history import HistoryEntry, HistoryMemory
from storage.layout import RunLayout


def rebuilt_memory(config: str, runs: Path, run: str, iteration: int) -> list[dict]:
    """What the sample-docs stage of `iteration` (round 1) rebuilds from the stored artifacts."""
    from tasks.context import StageContext
    from tasks.sample_docs import rebuild_state

    cfg = load_config(config, [f"run.runs_dir={runs}", f"run.name={run}"])
    ctx = StageContext(cfg, RunLayout(runs, run), iteration)
    memory, _sampler, _events = rebuild_state(ctx, 1, load_corpus(cfg.data.corpus, seed=cfg.run.seed))
    return memory.to_rows()


def live_memory(config: str, runs: Path, run: str, before: int) -> list[dict]:
    """The memory a long-lived process would hold before iteration `before`: every round's questions admitted
    in order, right after its rewards, with the paper's rule; no DuckDB."""
    h = load_config(config).history
    mem = HistoryMemory(size=h.size, admit=h.admit, context=h.context, dedup=h.dedup)
    layout = RunLayout(runs, run)
    for k in range(1, before):
        d = layout.iter_dir(k)
        for f in sorted(d.glob("questions_r*.parquet")):
            rnd = f.stem.split("_r")[1]
            prompts = {p["prompt_id"]: p for p in pq.read_table(d / f"prompts_r{rnd}.parquet").to_pylist()}
            means = {
                w["sample_id"]: w["group_mean"]
                for w in pq.read_table(d / f"rewards_r{rnd}.parquet").to_pylist()
                if w["role"] == "questioner"
            }
            for q in pq.read_table(f).to_pylist():
                mean = means.get(q["question_id"])
                if q["status"] != "ok" or mean is None:
                    continue
                p = prompts[q["question_id"]]
                docs = p["new_doc_indices"] if h.context == "paper" else p["doc_indices"]
                entry = HistoryEntry(q["responder_question"] or q["question"], q["answer"], tuple(docs), k)
                mem.admit(q["task"], q["cluster_id"], entry, float(mean))
    return mem.to_rows()
