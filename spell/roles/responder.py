"""Responder role: answer a question over the *whole* cluster (distractors included), or with no
documents for the grounding check (paper §3.3, spec Part B §1.3-1.4)."""

from __future__ import annotations

from collections.abc import Sequence

from spell import task_types
from spell.roles import prompts


def build_prompt(task: str, question: str, documents: Sequence[str] | None) -> str:
    """`question` is what `ParsedQuestion.responder_question()` gives (the task type's rendering:
    the options block for multiple choice).

    `documents=None` builds the grounding prompt, the documents replaced by a literal placeholder.
    """
    template = task_types.get(task).responder_template
    context = prompts.NO_CONTEXT if documents is None else "\n".join(documents)
    return template.format(context=context, question=question)


def parse(task: str, text: str | None) -> str | None:
    """The parsed prediction (answer string, number string or letter), or None when unparsable."""
    try:
        return task_types.extract_answer(text, task)
    except Exception:  # never raise on model output
        return None
