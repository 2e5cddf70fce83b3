"""Multiple choice (`doc_mc`): four options A-D, one correct at a target letter drawn per prompt, scored by
the letter (paper §3.1; spec Part A 'MC answer letter')."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from spell.rules import extract_mc_answer, mc_match
from spell.task_types.base import GuardCheck, GuardInput, ProposedAnswer, TaskType
from spell.text import contains_words, normalize_answer

LETTERS = ("A", "B", "C", "D")

MC_PRINCIPLES = """## Design Principles
- The question needs at least three reasoning steps and at least three pieces of information from the
  documents, mixing quantitative and qualitative facts.
- Give four options A-D. Exactly one is correct; the three distractors are plausible and each follows a
  different wrong path (at least one reflects a conceptual misunderstanding).
- Do not make the correct option the longest or the most detailed, do not use "all of the above" or
  "none of the above", and do not let wording alone give the answer away.
- The correct answer must be option {target_letter}."""

MC_FORMAT = """## Output Format
First reason step by step: derive the correct option, then explain why each distractor is wrong.
Then end your reply with exactly one JSON object in a ```json fenced block, and nothing after it:
```json
{"question": "<your question>", "options": {"A": "<option A>", "B": "<option B>", "C": "<option C>", "D": "<option D>"}, "answer": "{target_letter}"}
```"""

RESPONDER_MC = """Please read the following text and answer the question below.

<text>
{context}
</text>

{question}

Format your response as follows: "The correct answer is (insert answer here)." """

MC_QUESTION_BLOCK = (
    "What is the correct answer to this question: {question}\nChoices:\n(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}"
)

_LETTER = re.compile(r"^\(?([A-D])\)?(?:[.):]|\s|$)")


def parse_mc_letter(answer: object) -> str | None:
    """'B', '(B)', 'B.', 'B) text' -> 'B'; anything else -> None (uppercase A-D only)."""
    if not isinstance(answer, str):
        return None
    m = _LETTER.match(answer.strip())
    return m.group(1) if m else None


def draw_target_letter(rng: random.Random) -> str:
    """The answer letter the prompt asks for, uniform over A-D so answer letters are balanced."""
    return rng.choice(LETTERS)


def mc_options(g: GuardInput) -> str | None:
    if not g.options or g.answer not in g.options or not normalize_answer(g.options[g.answer]):
        return f"options do not contain the answer letter {g.answer!r}"
    texts = [normalize_answer(o) for o in g.options.values()]
    if len(set(texts)) < len(texts):
        return "two options are the same"
    return None


def answer_in_question(g: GuardInput) -> str | None:
    correct = normalize_answer((g.options or {}).get(g.answer, ""))
    hit = len(correct.split()) >= 2 and contains_words(normalize_answer(g.question), correct)
    return "question contains its correct option" if hit else None


class MultipleChoice(TaskType):
    name = "doc_mc"
    questioner_intro = "You are an expert in document analysis, building a benchmark of hard multiple-choice questions."
    principles = MC_PRINCIPLES
    output_format = MC_FORMAT
    responder_template = RESPONDER_MC
    question_opening = "Which"
    answer_is_letter = True
    target_letters = LETTERS

    def draw_target_letter(self, rng: random.Random) -> str:
        return draw_target_letter(rng)

    def read_answer(self, obj: dict[str, Any], count_tokens: Callable[[str], int], max_tokens: int) -> ProposedAnswer:
        options = obj.get("options")
        if not isinstance(options, dict):
            return ProposedAnswer("bad_format", "missing 'options' object with keys A-D")
        clean = {k.strip().upper() if isinstance(k, str) else k: v for k, v in options.items()}
        missing = [k for k in LETTERS if not (isinstance(clean.get(k), str | int | float) and str(clean[k]).strip())]
        if missing:
            return ProposedAnswer("bad_format", f"options lack {', '.join(missing)}")
        letter = parse_mc_letter(obj.get("answer"))
        if letter is None:
            return ProposedAnswer("bad_format", f"answer {str(obj.get('answer'))[:20]!r} is not a letter A-D")
        return ProposedAnswer("ok", answer=letter, options={k: str(clean[k]).strip() for k in LETTERS})

    def responder_question(self, question: str, options: Mapping[str, str] | None) -> str:
        return MC_QUESTION_BLOCK.format(question=question, **(options or {}))

    def extract(self, text: str | None) -> str | None:
        return extract_mc_answer(text)

    def rule_score(self, prediction: str, reference: str) -> float:
        return mc_match(prediction, reference)

    def decisive_label(self, prediction: str, rule: float, reference: str | None = None) -> int | None:
        return int(rule >= 0.5)  # a letter is right or wrong: no paraphrase possible

    def guards(self) -> Mapping[str, GuardCheck]:
        return {"mc_options": mc_options, "answer_in_question": answer_in_question}


TASK_TYPE = MultipleChoice()
