"""Evaluation prompts: the training responder templates, chat-templated, then middle truncation."""

from __future__ import annotations

from spell.eval.benchmarks import EvalItem
from spell.roles import prompts


def item_prompt(item: EvalItem) -> str:
    """DocMath template for docmath, general QA for Frames and LongBench QA, MC for LongBench-v2."""
    if item.benchmark == "docmath":
        return prompts.RESPONDER_MATH.format(context=item.context, question=item.question)
    if item.choices:
        block = prompts.MC_QUESTION_BLOCK.format(question=item.question, **item.choices)
        return prompts.RESPONDER_MC.format(context=item.context, question=block)
    return prompts.RESPONDER_QA.format(context=item.context, question=item.question)


def middle_truncate(ids: list[int], max_tokens: int) -> list[int]:
    """LongBench's truncation: over `max_tokens`, keep the first and the last max_tokens // 2 tokens."""
    if len(ids) <= max_tokens:
        return list(ids)
    half = max_tokens // 2
    return list(ids[:half]) + list(ids[len(ids) - half :])
