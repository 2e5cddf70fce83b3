"""Responder role: answer a question over the *whole* cluster (distractors included), or with no
documents for the grounding check (paper §3.3, spec Part B §1.3-1.4)."""

from __future__ import annotations

from collections.abc import Sequence

from spell.roles import prompts
from spell.rules import extract_answer


def build_prompt(task: str, question: str, documents: Sequence[str] | None) -> str:
    """`question` is what `ParsedQuestion.responder_question()` gives (the MC block for doc_mc).

    `documents=None` builds the grounding prompt, the documents replaced by a literal placeholder.
    """
    template = prompts.RESPONDER_TEMPLATES[task]
    context = prompts.NO_CONTEXT if documents is None else "\n".join(documents)
    return template.format(context=context, question=question)


def parse(task: str, text: str | None) -> str | None:
    """The parsed prediction (answer string, number string or letter), or None when unparsable."""
    try:
        return extract_answer(text, task)
    except Exception:  # never raise on model output
        return None
