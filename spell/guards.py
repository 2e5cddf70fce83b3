"""Reward-hacking guards: proposals and answers that game a reward without doing the task.

A proposer that games its reward and a judge that collapses are the known failure modes of self-play.
Each guard is a pure check over one sample; a hit rejects the sample with a reason that the stage
tables keep (status `rejected`, reason `guard <name>: ...`), never an exception. Each guard is a switch
in `guards.*`; the paper presets leave them off (the paper's behaviour).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spell.roles import prompts
from spell.rules import PLACEHOLDER, parse_number
from spell.text import normalize_answer
from spell.vocab import GUARDS, QUESTION_GUARDS

_QUESTION_WORDS = frozenset(
    [
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "has",
        "have",
        "had",
        "calculate",
        "compute",
        "find",
        "determine",
        "estimate",
        "according",
        "in",
        "on",
        "by",
        "if",
        "assuming",
        "given",
        "based",
        "among",
        "between",
        "for",
        "to",
    ]
)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
COPIED_MIN_WORDS = 6  # a question whose first this-many-plus words occur verbatim in the documents is a copy


def _template_examples() -> tuple[frozenset[str], frozenset[float]]:
    """The example values the questioner templates show: their JSON examples' strings and every number
    in the template text (a model that copies them games the format, not the task)."""
    texts: set[str] = set()
    numbers: set[float] = set()
    for task in ("doc_general_qa", "doc_mc", "docmath_qa"):
        for hist in (False, True):
            tpl = prompts.questioner_template(task, hist).replace("{{", "{").replace("}}", "}")
            numbers.update(v for m in _NUMBER.findall(tpl) if (v := parse_number(m)) is not None)
            for block in re.findall(r"```json\n(.*?)\n```", tpl, re.S):
                obj = json.loads(block.replace("{target_letter}", "A"))
                texts.update(normalize_answer(str(v)) for v in _leaves(obj))
    texts.discard("a")  # the MC target letter placeholder filled above
    texts.discard("")
    return frozenset(texts), frozenset(numbers)


def _leaves(obj: object) -> Iterable[object]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _leaves(v)
    else:
        yield obj


TEMPLATE_TEXTS, TEMPLATE_NUMBERS = _template_examples()


@dataclass(frozen=True)
class GuardSwitches:
    """Which guards run (from `guards.*`); all off is the paper's behaviour."""

    enabled: frozenset[str] = frozenset()

    def on(self, name: str) -> bool:
        return name in self.enabled


def _contains(haystack: str, needle: str) -> bool:
    """Whole-word containment of normalised text."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def _numbers(text: str) -> list[float]:
    return [v for m in _NUMBER.findall(text) if (v := parse_number(m.replace(",", ""))) is not None]


def _same_number(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def question_guard(
    task: str,
    question: str,
    answer: str,
    options: dict[str, str] | None,
    documents: Sequence[str],
    switches: GuardSwitches,
) -> str | None:
    """The first guard a parsed proposal trips, as `guard <name>: <why>`, or None when it passes."""
    for name in QUESTION_GUARDS:
        if switches.on(name) and (why := _CHECKS[name](task, question, answer, options, documents)):
            return f"guard {name}: {why}"
    return None


def _template_answer(task: str, question: str, answer: str, options, documents) -> str | None:
    a, q = normalize_answer(answer), normalize_answer(question)
    if task != "doc_mc" and a in TEMPLATE_TEXTS:
        return f"answer {answer[:40]!r} is the prompt template's example"
    if q in TEMPLATE_TEXTS:
        return "question is the prompt template's placeholder"
    if options and any(normalize_answer(o) in TEMPLATE_TEXTS for o in options.values()):
        return "an option is the prompt template's placeholder"
    return None


def _not_a_question(task: str, question: str, answer: str, options, documents) -> str | None:
    words = normalize_answer(question).split()
    if "?" not in question and (not words or words[0] not in _QUESTION_WORDS):
        return f"{question[:50]!r} is not a question (no '?', no question word)"
    words = normalize_answer(question.rstrip("?")).split()
    docs = normalize_answer(" ".join(documents))
    # the head as written, and after a leading question word (a sentence copied behind "What ...")
    for head in (words[: COPIED_MIN_WORDS * 2], words[1 : 1 + COPIED_MIN_WORDS * 2]):
        if len(head) >= COPIED_MIN_WORDS and _contains(docs, " ".join(head)):
            return "question copies a sentence of the documents"
    return None


def _answer_not_in_docs(task: str, question: str, answer: str, options, documents) -> str | None:
    if task != "doc_general_qa":
        return None
    if not _contains(normalize_answer(" ".join(documents)), normalize_answer(answer)):
        return f"answer {answer[:40]!r} occurs in none of the shown documents"
    return None


def _template_number(task: str, question: str, answer: str, options, documents) -> str | None:
    if task != "docmath_qa" or (value := parse_number(answer)) is None:
        return None
    if not any(_same_number(value, t) for t in TEMPLATE_NUMBERS):
        return None
    if any(_same_number(value, d) for d in _numbers(" ".join(documents))):
        return None
    return f"answer {answer!r} occurs in the prompt template but in none of the documents"


def _mc_options(task: str, question: str, answer: str, options, documents) -> str | None:
    if task != "doc_mc":
        return None
    if not options or answer not in options or not normalize_answer(options[answer]):
        return f"options do not contain the answer letter {answer!r}"
    texts = [normalize_answer(o) for o in options.values()]
    if len(set(texts)) < len(texts):
        return "two options are the same"
    return None


def _answer_in_question(task: str, question: str, answer: str, options, documents) -> str | None:
    q = normalize_answer(question)
    if task == "doc_mc":
        correct = normalize_answer((options or {}).get(answer, ""))
        return "question contains its correct option" if len(correct.split()) >= 2 and _contains(q, correct) else None
    if task == "docmath_qa":
        value = parse_number(answer)
        hit = value is not None and any(_same_number(value, n) for n in _numbers(question))
        return f"question contains its answer {answer!r}" if hit else None
    return f"question contains its answer {answer[:40]!r}" if _contains(q, normalize_answer(answer)) else None


_CHECKS = {
    "template_answer": _template_answer,
    "not_a_question": _not_a_question,
    "answer_not_in_docs": _answer_not_in_docs,
    "template_number": _template_number,
    "mc_options": _mc_options,
    "answer_in_question": _answer_in_question,
}


def response_guard(text: str | None, switches: GuardSwitches) -> str | None:
    """A responder answer that is the template's placeholder ('(insert answer here)') earns nothing
    and is not sent to the verifier."""
    if switches.on("placeholder_answer") and isinstance(text, str) and PLACEHOLDER in text.lower():
        return "guard placeholder_answer: the answer is the template's placeholder"
    return None


def guard_counts(reasons: Iterable[str | None]) -> dict[str, int]:
    """Rejections per guard name (every guard listed, zeros included) from stage `reason` columns."""
    counts = dict.fromkeys(GUARDS, 0)
    for r in reasons:
        if r and r.startswith("guard "):
            name = r[len("guard ") :].split(":", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts
