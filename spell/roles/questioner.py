"""Questioner role: build the prompt from a document subset and history, parse the proposed question.

Parsing never raises: every output becomes a `ParsedQuestion` with a status (paper §3.2, spec Part B §2.4):
`ok`, `bad_format` (penalised, -1), `invalid` (skipped without penalty: DocMath answer 0 or not a number,
general-QA answer too long) or `truncated` (reasoning never closed; skipped without penalty).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from spell.roles import prompts
from spell.rules import parse_number
from spell.text import count_words, last_json_object, strip_reasoning

LETTERS = ("A", "B", "C", "D")
STATUSES = ("ok", "bad_format", "invalid", "truncated", "rejected")  # rejected: a guard (spell.guards)


@dataclass(frozen=True)
class HistoryExample:
    """A remembered (question, answer) pair shown to the questioner on a later visit."""

    question: str
    answer: str


def draw_target_letter(rng: random.Random) -> str:
    """The MC answer letter the prompt asks for, uniform over A-D so answer letters are balanced."""
    return rng.choice(LETTERS)


def build_prompt(
    task: str,
    documents: Sequence[str],
    history: Sequence[HistoryExample] = (),
    target_letter: str | None = None,
) -> str:
    """The questioner's user turn: the shown documents (original order), history examples if any."""
    if task == "doc_mc" and target_letter not in LETTERS:
        raise ValueError(f"doc_mc needs a target letter in A-D, got {target_letter!r}")
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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def responder_question(self) -> str | None:
        """What the responder and verifier see: the MC block with choices, or the bare question."""
        if not self.ok or self.question is None:
            return None
        if self.options is not None:
            return prompts.MC_QUESTION_BLOCK.format(question=self.question, **self.options)
        return self.question


def _bad(reason: str) -> ParsedQuestion:
    return ParsedQuestion("bad_format", reason)


def _text_field(obj: dict, key: str, allow_number: bool = False) -> str | None:
    value = obj.get(key)
    if allow_number and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


_LETTER = re.compile(r"^\(?([A-D])\)?(?:[.):]|\s|$)")


def parse_mc_letter(answer: object) -> str | None:
    """'B', '(B)', 'B.', 'B) text' -> 'B'; anything else -> None (uppercase A-D only)."""
    if not isinstance(answer, str):
        return None
    m = _LETTER.match(answer.strip())
    return m.group(1) if m else None


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
    question = _text_field(obj, "question")
    if question is None:
        return _bad("missing or empty 'question'")

    if task == "docmath_qa":
        raw = obj.get("answer")
        if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int | float):
            return _bad("missing 'answer' (a number or a string)")
        value = parse_number(raw)
        if value is None:
            return ParsedQuestion("invalid", f"answer {str(raw)[:40]!r} is not a number")
        if value == 0:
            return ParsedQuestion("invalid", "answer is zero")
        answer = str(raw).strip() if isinstance(raw, str) else _format_number(value)
        return ParsedQuestion("ok", question=question, answer=answer)

    if task == "doc_mc":
        options = obj.get("options")
        if not isinstance(options, dict):
            return _bad("missing 'options' object with keys A-D")
        clean = {k.strip().upper() if isinstance(k, str) else k: v for k, v in options.items()}
        missing = [k for k in LETTERS if not (isinstance(clean.get(k), str | int | float) and str(clean[k]).strip())]
        if missing:
            return _bad(f"options lack {', '.join(missing)}")
        letter = parse_mc_letter(obj.get("answer"))
        if letter is None:
            return _bad(f"answer {str(obj.get('answer'))[:20]!r} is not a letter A-D")
        return ParsedQuestion(
            "ok", question=question, answer=letter, options={k: str(clean[k]).strip() for k in LETTERS}
        )

    if task == "doc_general_qa":
        answer = _text_field(obj, "answer", allow_number=True)
        if answer is None:
            return _bad("missing or empty 'answer'")
        n = count_tokens(answer)
        if n > max_tokens:
            return ParsedQuestion("invalid", f"answer has {n} tokens (> {max_tokens})")
        return ParsedQuestion("ok", question=question, answer=answer)

    return _bad(f"unknown task {task!r}")


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)
