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

from spell import task_types
from spell.roles import prompts
from spell.rules import PLACEHOLDER, parse_number
from spell.task_types.base import GuardInput
from spell.text import contains_words, normalize_answer
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
        # imperatives that ask ("Name the year ...")
        "name",
        "list",
        "identify",
        "state",
        "give",
        "specify",
        "provide",
        "tell",
        "describe",
        "explain",
    ]
)
COPIED_MIN_WORDS = 6  # a question whose first this-many-plus words occur verbatim in the documents is a copy


def _template_examples() -> tuple[frozenset[str], frozenset[float]]:
    """The example values the questioner templates show in their JSON examples: their strings, and their
    numbers (a model that copies them games the format, not the task). The prose's numbers ("20 words")
    are not examples: a computed 20 is an honest answer."""
    texts: set[str] = set()
    numbers: set[float] = set()
    for task in task_types.names():
        for hist in (False, True):
            tpl = prompts.questioner_template(task, hist).replace("{{", "{").replace("}}", "}")
            for block in re.findall(r"```json\n(.*?)\n```", tpl, re.S):
                obj = json.loads(block.replace("{target_letter}", "A"))
                for v in _leaves(obj):
                    # a number is the template_number guard's, which checks the documents first: as normalised
                    # text, 12.5 would also reject 125 and 1.25 and an option "12.5%"
                    if (value := parse_number(v)) is not None:
                        numbers.add(value)
                    else:
                        texts.add(normalize_answer(str(v)))
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


def question_guard(
    task: str,
    question: str,
    answer: str,
    options: dict[str, str] | None,
    documents: Sequence[str],
    switches: GuardSwitches,
    history: Sequence[tuple[str, str]] = (),
) -> str | None:
    """The first guard a parsed proposal trips, as `guard <name>: <why>`, or None when it passes. The
    task-blind guards are here; the others are the task type's own (`TaskType.guards`)."""
    tt = task_types.get(task)
    own = tt.guards()
    g = GuardInput(
        question, answer, options, documents, TEMPLATE_TEXTS, TEMPLATE_NUMBERS, tt.answer_is_letter, tuple(history)
    )
    for name in QUESTION_GUARDS:
        check = own.get(name) or _TASK_BLIND.get(name)
        if check is not None and switches.on(name) and (why := check(g)):
            return f"guard {name}: {why}"
    return None


def _template_answer(g: GuardInput) -> str | None:
    a, q = normalize_answer(g.answer), normalize_answer(g.question)
    if not g.answer_is_letter and a in g.template_texts:
        return f"answer {g.answer[:40]!r} is the prompt template's example"
    if q in g.template_texts:
        return "question is the prompt template's placeholder"
    if g.options and any(normalize_answer(o) in g.template_texts for o in g.options.values()):
        return "an option is the prompt template's placeholder"
    return None


def _not_a_question(g: GuardInput) -> str | None:
    words = normalize_answer(g.question).split()
    if "?" not in g.question and (not words or words[0] not in _QUESTION_WORDS):
        return f"{g.question[:50]!r} is not a question (no '?', no question word)"
    words = normalize_answer(g.question.rstrip("?")).split()
    docs = normalize_answer(" ".join(g.documents))
    # the head as written, and after a leading question word (a sentence copied behind "What ...")
    for head in (words[: COPIED_MIN_WORDS * 2], words[1 : 1 + COPIED_MIN_WORDS * 2]):
        if len(head) >= COPIED_MIN_WORDS and contains_words(docs, " ".join(head)):
            return "question copies a sentence of the documents"
    return None


REPEAT_OVERLAP = 0.8  # word-set overlap (Jaccard) at which a question with the same answer is a re-ask


def _repeated_question(g: GuardInput) -> str | None:
    words = set(normalize_answer(g.question).split())
    answer = normalize_answer(g.answer)
    for question, ref in g.history:
        seen = normalize_answer(question)
        if seen == normalize_answer(g.question) or contains_words(seen, normalize_answer(g.question)):
            return "question re-asks one of the history memory's questions"
        other = set(seen.split())
        overlap = len(words & other) / len(words | other) if words | other else 0.0
        if answer == normalize_answer(ref) and overlap >= REPEAT_OVERLAP:
            return f"question re-asks a history question with the same answer ({overlap:.0%} of the words)"
    return None


_TASK_BLIND = {
    "template_answer": _template_answer,
    "not_a_question": _not_a_question,
    "repeated_question": _repeated_question,
}

_HEDGE = re.compile(r"\s+or\s+|\s*;\s*|\s+/\s+|\s*\|\s*", re.IGNORECASE)
_LIST = re.compile(r"\s*,\s+")  # a comma and a space: "1,000" stays one number
# a number with an optional sign or currency, an optional percent sign and at most one unit word
_NUMBER_ITEM = re.compile(r"^[-+]?[$€£]?\d[\d,.]*%?(?:\s+([a-z]+))?$", re.IGNORECASE)


def multiple_candidates(prediction: str | None) -> str | None:
    """Why an extracted answer names several candidates, or None: 'X or Y' (and ';', ' / ', '|') hedges, three
    or more comma-separated items of at most three words each, and two numbers in the same unit: a substring
    rule (cover-EM) credits any of them."""
    if not prediction:
        return None
    hedged = [p for p in _HEDGE.split(prediction.strip()) if p.strip()]
    if len(hedged) >= 2:
        return f"the answer hedges between {len(hedged)} candidates"
    items = [p.strip() for p in _LIST.split(re.sub(r"\s+and\s+", ", ", prediction.strip())) if p.strip()]
    if len(items) >= 3 and all(len(p.split()) <= 3 for p in items):
        return f"the answer lists {len(items)} candidates"
    if len(items) == 2 and all(numbers := [_NUMBER_ITEM.match(p) for p in items]):
        units = {(m.group(1) or "").lower() for m in numbers if m}  # "2 years and 3 months" is one duration
        if len(units) == 1:
            return "the answer names two numbers"  # "1912 and 1914", "$5 million, $6 million"
    return None


def response_guard(text: str | None, prediction: str | None, switches: GuardSwitches) -> str | None:
    """A responder answer that is the template's placeholder ('(insert answer here)') or that names several
    candidates earns nothing and is not sent to the verifier."""
    if switches.on("placeholder_answer") and isinstance(text, str) and PLACEHOLDER in text.lower():
        return "guard placeholder_answer: the answer is the template's placeholder"
    if switches.on("multiple_candidates") and (why := multiple_candidates(prediction)):
        return f"guard multiple_candidates: {why}"
    return None


def guard_counts(reasons: Iterable[str | None]) -> dict[str, int]:
    """Rejections per guard name (every guard listed, zeros included) from stage `reason` columns."""
    counts = dict.fromkeys(GUARDS, 0)
    for r in reasons:
        if r and r.startswith("guard "):
            name = r[len("guard ") :].split(":", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts
