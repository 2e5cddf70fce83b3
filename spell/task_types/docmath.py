"""DocMath (`docmath_qa`): a non-zero number computed from text and tables, scored by numeric match with
0.15% relative tolerance (paper §3.1; spec Part B §3.1)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from spell.rules import (
    docmath_match,
    docmath_strict_match,
    extract_docmath_answer,
    numbers_in,
    parse_number,
    same_number,
)
from spell.task_types.base import GuardCheck, GuardInput, ProposedAnswer, TaskType

MATH_PRINCIPLES = """## Design Principles
- The question needs at least two calculation steps, combining numbers from the text and the tables.
- Avoid simple counting, direct look-up of a stated number, heavy outside knowledge and contrived setups.
- Do not restate the key numbers in the question: the solver must find them in the documents.
- State the unit and the scale in the question (e.g. "in millions of dollars", "as a percentage") so that
  a bare number answers it.
- The answer is exactly one number, and it is not zero."""

MATH_FORMAT = """## Output Format
First reason step by step: list the numbers you use, where each comes from, and every calculation.
Then end your reply with exactly one JSON object in a ```json fenced block, and nothing after it:
```json
{"question": "<your question>", "answer": 12.5}
```
The "answer" is a single non-zero number, with no units, percent signs or currency symbols."""

ESCALATE_MATH = """## Escalate Question Difficulty
The previous questions above were already answered. Write ONE new question that is significantly more
difficult and fundamentally different from them, for example by:
- period-over-period change (growth rates, differences between years);
- deriving a ratio or metric that the documents do not state;
- aggregation with a filter (a sum or average over items that meet a condition);
- a projection or what-if scenario built on the reported figures."""

RESPONDER_MATH = """You are an expert in document analysis and numeric reasoning. Read the following text and \
answer the question below. Think step by step, then give the final answer as a single number.

<text>
{context}
</text>

Question: {question}

End your response with: "Therefore, the answer is (insert answer here)." """


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def template_number(g: GuardInput) -> str | None:
    if (value := parse_number(g.answer)) is None:
        return None
    if not any(same_number(value, t) for t in g.template_numbers):
        return None
    if any(same_number(value, d) for d in numbers_in(" ".join(g.documents))):
        return None
    return f"answer {g.answer!r} occurs in the prompt template but in none of the documents"


_TOKEN_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?\d[\d,]*(?:\.\d+)?(?![A-Za-z_\d])")


def answer_in_question(g: GuardInput) -> str | None:
    value = parse_number(g.answer)
    # numbers that stand as tokens: the 2 of "Q2" or "FY2019" is not a number the question states
    stated = [v for m in _TOKEN_NUMBER.findall(g.question) if (v := parse_number(m.replace(",", ""))) is not None]
    hit = value is not None and any(same_number(value, n) for n in stated)
    return f"question contains its answer {g.answer!r}" if hit else None


# words that ask for a calculation: a computed answer may equal a stated number (a growth of 50 beside a 50)
_CALCULATION = re.compile(
    r"\b(?:chang\w*|differ\w*|grow\w*|growth|increas\w*|decreas\w*|declin\w*|ris\w*|fell|fall\w*|drop\w*|"
    r"total\w*|sum|combined|together|average\w*|mean|ratio|percent\w*|proportion|share|rate|per|margin|"
    r"more|less|fewer|higher|lower|exceed\w*|remain\w*|left|net|after|if|would|times|multipl\w*|divid\w*)\b",
    re.IGNORECASE,
)


def looked_up_answer(g: GuardInput) -> str | None:
    value = parse_number(g.answer)
    if value is None or _CALCULATION.search(g.question):
        return None
    if not any(same_number(value, d) for d in numbers_in(" ".join(g.documents))):
        return None
    return f"answer {g.answer!r} is a number the documents state and the question asks no calculation: a look-up"


class DocMath(TaskType):
    name = "docmath_qa"
    questioner_intro = (
        "You are an expert in document analysis and numeric reasoning, building a benchmark of hard "
        "financial math questions."
    )
    principles = MATH_PRINCIPLES
    output_format = MATH_FORMAT
    escalate = ESCALATE_MATH
    responder_template = RESPONDER_MATH
    answer_prefix = "Therefore, the answer is"
    question_opening = "How much"

    def read_answer(self, obj: dict[str, Any], count_tokens: Callable[[str], int], max_tokens: int) -> ProposedAnswer:
        raw = obj.get("answer")
        if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int | float):
            return ProposedAnswer("bad_format", "missing 'answer' (a number or a string)")
        value = parse_number(raw)
        if value is None:
            return ProposedAnswer("invalid", f"answer {str(raw)[:40]!r} is not a number")
        if value == 0:
            return ProposedAnswer("invalid", "answer is zero")
        return ProposedAnswer("ok", answer=str(raw).strip() if isinstance(raw, str) else _format_number(value))

    def extract(self, text: str | None) -> str | None:
        return extract_docmath_answer(text)

    def rule_score(self, prediction: str, reference: str) -> float:
        return 1.0 if docmath_match(prediction, reference) else 0.0

    def strict_rule_score(self, prediction: str, reference: str) -> float:
        return 1.0 if docmath_strict_match(prediction, reference) else 0.0

    def decisive_label(self, prediction: str, rule: float, reference: str | None = None) -> int | None:
        return int(rule >= 0.5)  # a number is right or wrong: no paraphrase possible

    def guards(self) -> Mapping[str, GuardCheck]:
        return {
            "template_number": template_number,
            "answer_in_question": answer_in_question,
            "looked_up_answer": looked_up_answer,
        }


TASK_TYPE = DocMath()
