"""Evaluation prompts: the training responder templates, chat-templated, then middle truncation."""

from __future__ import annotations

from spell import task_types
from spell.eval.benchmarks import EvalItem
from spell.vocab import DOCMATH, GENERAL_QA, MULTIPLE_CHOICE


def item_prompt(item: EvalItem) -> str:
    """DocMath template for docmath, general QA for Frames and LongBench QA, MC for LongBench-v2."""
    task = DOCMATH if item.benchmark == "docmath" else MULTIPLE_CHOICE if item.choices else GENERAL_QA
    tt = task_types.get(task)
    return tt.responder_template.format(
        context=item.context, question=tt.responder_question(item.question, item.choices)
    )


def middle_truncate(ids: list[int], max_tokens: int) -> list[int]:
    """LongBench's truncation: over `max_tokens`, keep the first and the last max_tokens // 2 tokens."""
    if len(ids) <= max_tokens:
        return list(ids)
    half = max_tokens // 2
    return list(ids[:half]) + list(ids[len(ids) - half :])
