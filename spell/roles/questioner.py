"""Questioner role: build the prompt from a document subset and history, parse the proposed question.

Parsing never raises: every output becomes a `ParsedQuestion` with a status (paper §3.2, spec Part B §2.4):
`ok`, `bad_format` (penalised, -1), `invalid` (skipped without penalty: DocMath answer 0 or not a number,
general-QA answer too long) or `truncated` (reasoning never closed; skipped without penalty).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from spell import task_types
from spell.roles import prompts
from spell.text import count_words, last_json_object, strip_reasoning


@dataclass(frozen=True)
class HistoryExample:
    """A remembered (question, answer) pair shown to the questioner on a later visit."""

    question: str
    answer: str


def build_prompt(
    task: str,
    documents: Sequence[str],
    history: Sequence[HistoryExample] = (),
    target_letter: str | None = None,
) -> str:
    """The questioner's user turn: the shown documents (original order), history examples if any."""
    letters = task_types.get(task).target_letters
    if letters and target_letter not in letters:
        raise ValueError(f"{task} needs a target letter in {letters[0]}-{letters[-1]}, got {target_letter!r}")
    template = prompts.questioner_template(task, with_history=bool(history))
    examples = "\n\n".join(
        prompts.HISTORY_EXAMPLE.format(index=i + 1, question=h.question, answer=h.answer) for i, h in enumerate(history)
    )
    return template.format(context="\n".join(documents), examples=examples, target_letter=target_letter or "")


@dataclass(frozen=True)
class ParsedQuestion:
    """The questioner's proposal, or why there is none (status != 'ok' leaves fields None)."""

    status: str
    reason: str = ""
    question: str | None = None
    answer: str | None = None
    options: dict[str, str] | None = field(default=None)
    shown: str | None = None  # what the responder and verifier see (the task type's rendering), set when ok

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def responder_question(self) -> str | None:
        """What the responder and verifier see: the MC block with choices, or the bare question."""
        return self.shown if self.ok else None


def _bad(reason: str) -> ParsedQuestion:
    return ParsedQuestion("bad_format", reason)


def _question_field(obj: dict) -> str | None:
    value = obj.get("question")
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse(
    task: str,
    text: str | None,
    count_tokens: Callable[[str], int] = count_words,
    max_answer_tokens: int = 40,
) -> ParsedQuestion:
    """Parse a questioner output for `task`. Never raises."""
    try:
        return _parse(task, text, count_tokens, max_answer_tokens)
    except Exception as exc:  # a parser must never take the pipeline down on model output
        return _bad(f"parser error: {type(exc).__name__}")


def _parse(task: str, text: str | None, count_tokens: Callable[[str], int], max_tokens: int) -> ParsedQuestion:
    if not isinstance(text, str) or not text.strip():
        return _bad("empty output")
    stripped = strip_reasoning(text)
    if stripped.truncated:
        return ParsedQuestion("truncated", "reasoning (<think>) never closed")
    block = last_json_object(stripped.text)
    if block.value is None:
        return _bad(block.error or "no JSON object")
    obj = block.value
    question = _question_field(obj)
    if question is None:
        return _bad("missing or empty 'question'")

    try:
        tt = task_types.get(task)
    except ValueError:
        return _bad(f"unknown task {task!r}")
    got = tt.read_answer(obj, count_tokens, max_tokens)
    if got.status != "ok":
        return ParsedQuestion(got.status, got.reason)
    shown = tt.responder_question(question, got.options)
    return ParsedQuestion("ok", question=question, answer=got.answer, options=got.options, shown=shown)
