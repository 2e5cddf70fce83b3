"""What every task type provides, and the prompt text some of them share.

A task type is one module in this folder holding everything that differs between SPELL's tasks (paper
§3.1, App. F): the questioner's prompt pieces, how its proposal's answer is read, the responder's
template, how an answer is extracted and rule-checked, whether the rule check is decisive for the
verifier's calibration, and the reward-hacking guards that only make sense for it. The stages, roles and
rewards ask the registry (`spell.task_types.get`) and never switch on a task's name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The escalation paragraph of the with-history questioner prompt (paper App. F), shared by the reading tasks.
ESCALATE_READING = """## Escalate Question Difficulty
The previous questions above were already answered. Write ONE new question that is significantly more
difficult and fundamentally different from them, for example by:
- quantitative calculation over facts from several documents;
- comparison or superlatives across entities ("which of ... was the earliest ...");
- conditional or causal chains ("after X happened, what ...");
- synthesis across different types of information."""

# The answer line every responder template asks for (its placeholder is the placeholder_answer guard's target).
ANSWER_LINE = '"The correct answer is (insert answer here)."'


@dataclass(frozen=True)
class ProposedAnswer:
    """What a task type reads from the questioner's JSON object beside the question: the reference answer
    (and options), or why there is none (`bad_format` is penalised, `invalid` skipped; paper §3.2)."""

    status: str
    reason: str = ""
    answer: str | None = None
    options: dict[str, str] | None = None


@dataclass(frozen=True)
class GuardInput:
    """One parsed proposal as the guards see it, with the examples the questioner templates show."""

    question: str
    answer: str
    options: Mapping[str, str] | None
    documents: Sequence[str]
    template_texts: frozenset[str]
    template_numbers: frozenset[float]
    answer_is_letter: bool = False  # the task's answer is a letter (multiple choice)
    history: Sequence[tuple[str, str]] = ()  # the (question, answer) pairs of the history memory it was shown


GuardCheck = Callable[[GuardInput], "str | None"]


class TaskType:
    """One SPELL task type. A module defines a subclass and one instance named `TASK_TYPE`; the registry
    finds it. Class attributes are the prompt pieces; methods are the task's parse, rule and guards."""

    name: str = ""
    # questioner prompt pieces (paper App. F): intro line, design principles, output format, escalation
    questioner_intro: str = ""
    principles: str = ""
    output_format: str = ""
    escalate: str = ESCALATE_READING
    # the responder's template ({context}, {question}) and the start of its reply (rollout.prefill)
    responder_template: str = ""
    answer_prefix: str = "The correct answer is"
    # rollout.questioner_opening=question_word: the question itself starts with this word (small models)
    question_opening: str = "What"
    # the letters a proposal's answer is drawn from per prompt (multiple choice: balanced answer letters)
    target_letters: tuple[str, ...] = ()
    # the reference answer is a letter, not text (the template_answer guard then checks only the rest)
    answer_is_letter: bool = False

    def draw_target_letter(self, rng: random.Random) -> str | None:
        """The answer letter this prompt asks for, or None (the rng is then not touched)."""
        return None

    def read_answer(self, obj: dict[str, Any], count_tokens: Callable[[str], int], max_tokens: int) -> ProposedAnswer:
        """The reference answer (and options) from the questioner's JSON object."""
        raise NotImplementedError

    def responder_question(self, question: str, options: Mapping[str, str] | None) -> str:
        """What the responder and verifier see of a proposal."""
        return question

    def extract(self, text: str | None) -> str | None:
        """The parsed prediction of a response, or None when it cannot be parsed."""
        raise NotImplementedError

    def rule_score(self, prediction: str, reference: str) -> float:
        """R_rule (0.0 or 1.0) of a parsed prediction against the parsed reference (spec Part A)."""
        raise NotImplementedError

    def strict_rule_score(self, prediction: str, reference: str) -> float:
        """The rule without the slips the official one forgives (`guards.strict_docmath`); by default the same."""
        return self.rule_score(prediction, reference)

    def decisive_label(self, prediction: str, rule: float, reference: str | None = None) -> int | None:
        """1 or 0 where the rule check settles the answer without a judge, else None. By default a rule hit is
        right and a miss may be a paraphrase (not decisive)."""
        return 1 if rule >= 0.5 else None

    def guards(self) -> Mapping[str, GuardCheck]:
        """Question guards that only this task type runs, by guard name (spell.vocab.QUESTION_GUARDS)."""
        return {}
