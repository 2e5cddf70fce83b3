"""General QA (`doc_general_qa`): a short factual answer over several documents, scored by cover exact match
(paper §3.1; spec Part A 'responder reward', 'Also binding': no boxed fallback)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from spell.rules import cover_exact_match, extract_qa_answer, numbers_in, parse_number, same_number
from spell.task_types.base import GuardCheck, GuardInput, ProposedAnswer, TaskType
from spell.text import contains_words, normalize_answer

QA_PRINCIPLES = """## Design Principles
- Write in English. Do not refer to documents by position ("Article 1", "the second text").
- The question has one unambiguous, factual answer that the documents support.
- Make it multi-hop: the answer must need facts from several of the provided documents, so that no single
  document answers it.
- Start with What, Which, Who, How, Where or When, and link the constraints with connectors.
- The answer is a short phrase (a name, a date, a number, a term): never more than 20 words."""

QA_FORMAT = """## Output Format
First reason step by step: name the facts you combine and the document each comes from, and derive the answer.
Then end your reply with exactly one JSON object in a ```json fenced block, and nothing after it:
```json
{"question": "<your question>", "answer": "<the short, exact answer>"}
```"""

RESPONDER_QA = """Please read the following text and answer the question below.

<text>
{context}
</text>

Question: {question}

Format your response as follows: "The correct answer is (insert answer here)." """


def _text_field(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*)?\.?\d+\s*%?")


def answer_not_in_docs(g: GuardInput) -> str | None:
    docs = " ".join(g.documents)
    if _PLAIN_NUMBER.fullmatch(g.answer.strip()) and numbers_in(docs):
        return None  # a number computed from the documents' numbers (the with-history prompt asks for it)
    if not contains_words(normalize_answer(docs), normalize_answer(g.answer)):
        return f"answer {g.answer[:40]!r} occurs in none of the shown documents"
    return None


def answer_in_question(g: GuardInput) -> str | None:
    hit = contains_words(normalize_answer(g.question), normalize_answer(g.answer))
    return f"question contains its answer {g.answer[:40]!r}" if hit else None


def one_char_reference(g: GuardInput) -> str | None:
    if len(normalize_answer(g.answer)) <= 1:
        return f"reference {g.answer!r} has one character: cover exact match finds it inside most answers"
    return None


class GeneralQA(TaskType):
    name = "doc_general_qa"
    questioner_intro = "You are an expert in document analysis, building a benchmark of hard reading questions."
    principles = QA_PRINCIPLES
    output_format = QA_FORMAT
    responder_template = RESPONDER_QA
    question_opening = "What"

    def read_answer(self, obj: dict[str, Any], count_tokens: Callable[[str], int], max_tokens: int) -> ProposedAnswer:
        answer = _text_field(obj, "answer")
        if answer is None:
            return ProposedAnswer("bad_format", "missing or empty 'answer'")
        n = count_tokens(answer)
        if n > max_tokens:
            return ProposedAnswer("invalid", f"answer has {n} tokens (> {max_tokens})")
        return ProposedAnswer("ok", answer=answer)

    def extract(self, text: str | None) -> str | None:
        return extract_qa_answer(text)

    def rule_score(self, prediction: str, reference: str) -> float:
        return cover_exact_match(prediction, reference)

    def decisive_label(self, prediction: str, rule: float, reference: str | None = None) -> int | None:
        """A hit is right; a miss is decisive only where both are plain numbers (a year, a count) that differ:
        no paraphrase turns 1991 into 1992, while 'the capital' may well be Paris."""
        if rule >= 0.5:
            return 1
        if (
            reference is not None
            and _PLAIN_NUMBER.fullmatch(prediction.strip())
            and _PLAIN_NUMBER.fullmatch(reference.strip())
        ):
            p, r = parse_number(prediction), parse_number(reference)
            return 0 if p is not None and r is not None and not same_number(p, r) else None
        return None

    def guards(self) -> Mapping[str, GuardCheck]:
        return {
            "answer_not_in_docs": answer_not_in_docs,
            "answer_in_question": answer_in_question,
            "one_char_reference": one_char_reference,
        }


TASK_TYPE = GeneralQA()
