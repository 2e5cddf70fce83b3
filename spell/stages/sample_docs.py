"""Stage 1, sample docs, as a pure function: questioner prompts for one round (tasks, document subsets,
history examples, MC target letters)."""

from __future__ import annotations

import random

from spell import task_types
from spell.config import SpellConfig
from spell.data.clusters import Corpus
from spell.history import HistoryMemory
from spell.roles import questioner
from spell.roles.questioner import HistoryExample
from spell.sampling import TaskSampler
from spell.stages.common import Row, ids, stage_seed


def sample_prompts(
    corpus: Corpus, sampler: TaskSampler, memory: HistoryMemory, cfg: SpellConfig, run: str, iteration: int, rnd: int
) -> list[Row]:
    """Questioner prompts for one generation round: stratified tasks, document subsets, history."""
    rng = random.Random(stage_seed(cfg.run.seed, iteration, rnd, "sample"))
    order = random.Random(stage_seed(cfg.run.seed, iteration, rnd, "shuffle"))
    rows = []
    for j, (task, cid) in enumerate(sampler.draw(cfg.sampling.questions_per_round, order)):
        docs = corpus.clusters[cid].documents
        mem = memory if cfg.history.enabled else HistoryMemory()
        ctx = mem.context(task, cid, len(docs), cfg.data.docs_per_visit, rng)
        letter = task_types.get(task).draw_target_letter(rng)
        shown = [docs[i] for i in ctx.doc_indices]
        examples = [HistoryExample(e.question, e.answer) for e in ctx.examples]
        rows.append(
            {
                **ids(run, iteration, rnd),
                "prompt_id": f"i{iteration:04d}-r{rnd:02d}-q{j:04d}",
                "task": task,
                "cluster_id": cid,
                "n_docs": len(docs),
                "doc_indices": list(ctx.doc_indices),
                "new_doc_indices": list(ctx.new_doc_indices),
                "history_size": len(examples),
                "history_questions": [e.question for e in examples],
                "history_answers": [e.answer for e in examples],
                "target_letter": letter,
                "context_chars": sum(len(d) for d in shown),
                "prompt": questioner.build_prompt(task, shown, examples, letter),
            }
        )
    return rows


def static_prompts(
    corpus: Corpus, sampler: TaskSampler, cfg: SpellConfig, run: str, iteration: int, rnd: int
) -> list[Row]:
    """run.mode=rlvr: labelled questions stand in for the questioner (the paper's RLVR baseline)."""
    order = random.Random(stage_seed(cfg.run.seed, iteration, rnd, "shuffle"))
    rows = []
    for j, (task, qid) in enumerate(sampler.draw(cfg.sampling.questions_per_round, order)):
        item = corpus.qa[qid]
        rows.append(
            {
                **ids(run, iteration, rnd),
                "prompt_id": f"i{iteration:04d}-r{rnd:02d}-q{j:04d}",
                "task": task,
                "cluster_id": qid,
                "n_docs": len(item.documents),
                "doc_indices": list(range(len(item.documents))),
                "new_doc_indices": [],
                "history_size": 0,
                "history_questions": [],
                "history_answers": [],
                "target_letter": None,
                "context_chars": sum(len(d) for d in item.documents),
                "prompt": item.question,
            }
        )
    return rows
