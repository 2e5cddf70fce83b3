"""Every prompt template spell sends to the policy, in one place (paper App. F; spec Part B §2).

Written for spell: the structure follows the paper (role, design principles, reasoning first, then
one fenced json block), and every JSON example below is valid JSON (a test parses each one).
Placeholders use `str.format` names: {context}, {examples}, {question}, {target_letter}, ...
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------------
# Output format blocks (each contains exactly one valid JSON example)

QA_FORMAT = """## Output Format
First reason step by step: name the facts you combine and the document each comes from, and derive the answer.
Then end your reply with exactly one JSON object in a ```json fenced block, and nothing after it:
```json
{"question": "<your question>", "answer": "<the short, exact answer>"}
```"""

MATH_FORMAT = """## Output Format
First reason step by step: list the numbers you use, where each comes from, and every calculation.
Then end your reply with exactly one JSON object in a ```json fenced block, and nothing after it:
```json
{"question": "<your question>", "answer": 12.5}
```
The "answer" is a single non-zero number, with no units, percent signs or currency symbols."""

MC_FORMAT = """## Output Format
First reason step by step: derive the correct option, then explain why each distractor is wrong.
Then end your reply with exactly one JSON object in a ```json fenced block, and nothing after it:
```json
{"question": "<your question>", "options": {"A": "<option A>", "B": "<option B>", "C": "<option C>", "D": "<option D>"}, "answer": "{target_letter}"}
```"""

# ---------------------------------------------------------------------------------------------------
# Design principles per task

QA_PRINCIPLES = """## Design Principles
- Write in English. Do not refer to documents by position ("Article 1", "the second text").
- The question has one unambiguous, factual answer that the documents support.
- Make it multi-hop: the answer must need facts from several of the provided documents, so that no single
  document answers it.
- Start with What, Which, Who, How, Where or When, and link the constraints with connectors.
- The answer is a short phrase (a name, a date, a number, a term): never more than 20 words."""

MATH_PRINCIPLES = """## Design Principles
- The question needs at least two calculation steps, combining numbers from the text and the tables.
- Avoid simple counting, direct look-up of a stated number, heavy outside knowledge and contrived setups.
- Do not restate the key numbers in the question: the solver must find them in the documents.
- State the unit and the scale in the question (e.g. "in millions of dollars", "as a percentage") so that
  a bare number answers it.
- The answer is exactly one number, and it is not zero."""

MC_PRINCIPLES = """## Design Principles
- The question needs at least three reasoning steps and at least three pieces of information from the
  documents, mixing quantitative and qualitative facts.
- Give four options A-D. Exactly one is correct; the three distractors are plausible and each follows a
  different wrong path (at least one reflects a conceptual misunderstanding).
- Do not make the correct option the longest or the most detailed, do not use "all of the above" or
  "none of the above", and do not let wording alone give the answer away.
- The correct answer must be option {target_letter}."""

ESCALATE_GENERAL = """## Escalate Question Difficulty
The previous questions above were already answered. Write ONE new question that is significantly more
difficult and fundamentally different from them, for example by:
- quantitative calculation over facts from several documents;
- comparison or superlatives across entities ("which of ... was the earliest ...");
- conditional or causal chains ("after X happened, what ...");
- synthesis across different types of information."""

ESCALATE_MATH = """## Escalate Question Difficulty
The previous questions above were already answered. Write ONE new question that is significantly more
difficult and fundamentally different from them, for example by:
- period-over-period change (growth rates, differences between years);
- deriving a ratio or metric that the documents do not state;
- aggregation with a filter (a sum or average over items that meet a condition);
- a projection or what-if scenario built on the reported figures."""

# ---------------------------------------------------------------------------------------------------
# Questioner templates

_QUESTIONER_INTRO = {
    "doc_general_qa": "You are an expert in document analysis, building a benchmark of hard reading questions.",
    "doc_mc": "You are an expert in document analysis, building a benchmark of hard multiple-choice questions.",
    "docmath_qa": (
        "You are an expert in document analysis and numeric reasoning, building a benchmark of hard "
        "financial math questions."
    ),
}
_QUESTIONER_JOB = (
    "Read the documents between <text> and </text> and propose ONE challenging question about them, "
    "with its correct answer and a step-by-step derivation that cites the documents."
)
_PRINCIPLES = {"doc_general_qa": QA_PRINCIPLES, "doc_mc": MC_PRINCIPLES, "docmath_qa": MATH_PRINCIPLES}
_FORMATS = {"doc_general_qa": QA_FORMAT, "doc_mc": MC_FORMAT, "docmath_qa": MATH_FORMAT}
_ESCALATE = {"doc_general_qa": ESCALATE_GENERAL, "doc_mc": ESCALATE_GENERAL, "docmath_qa": ESCALATE_MATH}


def questioner_template(task: str, with_history: bool) -> str:
    """The questioner template for a task; placeholders {context}, {examples}, {target_letter}."""
    parts = [_QUESTIONER_INTRO[task], _QUESTIONER_JOB, "<text>\n{context}\n</text>"]
    if with_history:
        parts += ["## Previous Examples\n{examples}", _ESCALATE[task]]
    parts += [_PRINCIPLES[task], _FORMATS[task]]
    # Literal braces of the JSON examples must survive str.format.
    text = "\n\n".join(parts)
    return _escape_json_braces(text)


def _escape_json_braces(text: str) -> str:
    """Double every brace, then restore the named placeholders we fill with str.format."""
    escaped = text.replace("{", "{{").replace("}", "}}")
    for name in ("context", "examples", "target_letter"):
        escaped = escaped.replace("{{" + name + "}}", "{" + name + "}")
    return escaped


HISTORY_EXAMPLE = "### Example {index}:\nQuestion: {question}\nAnswer: {answer}"

# ---------------------------------------------------------------------------------------------------
# Responder templates (shared by training and evaluation)

RESPONDER_QA = """Please read the following text and answer the question below.

<text>
{context}
</text>

Question: {question}

Format your response as follows: "The correct answer is (insert answer here)." """

RESPONDER_MC = """Please read the following text and answer the question below.

<text>
{context}
</text>

{question}

Format your response as follows: "The correct answer is (insert answer here)." """

RESPONDER_MATH = """You are an expert in document analysis and numeric reasoning. Read the following text and \
answer the question below. Think step by step, then give the final answer as a single number.

<text>
{context}
</text>

Question: {question}

End your response with: "Therefore, the answer is (insert answer here)." """

RESPONDER_TEMPLATES = {"doc_general_qa": RESPONDER_QA, "doc_mc": RESPONDER_MC, "docmath_qa": RESPONDER_MATH}

MC_QUESTION_BLOCK = (
    "What is the correct answer to this question: {question}\nChoices:\n(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}"
)

# The grounding check replaces the documents with this literal (spec Part B §1.4).
NO_CONTEXT = "Empty"

# ---------------------------------------------------------------------------------------------------
# Verifier template (spec Part B §2.5)

VERIFIER = """You are checking whether two answers to the same problem are equivalent. Do NOT solve the \
problem yourself: only compare the two answers.

Judge them identical if they have the same value or meaning even when written differently (synonyms, \
abbreviations, word order, formatting, units written out or not). For numbers, a relative difference up \
to 0.15% counts as the same value.

Problem: {problem}

Answer 1: {answer_1}

Answer 2: {answer_2}

Reply in this format:
Explanation: <one or two sentences>
Decision: [[YES]] if the answers are equivalent, [[NO]] if they are not."""

# ---------------------------------------------------------------------------------------------------
# Reply prefills (rollout.prefill, for small demo models): each reply starts with its required format.
# The prefill is part of the prompt (never trained on); parsers read prefill + generated text.

PREFILL_QUESTIONER = '```json\n{"question": "'
# rollout.questioner_opening=question_word (small models): the question itself starts with a question word
QUESTION_OPENINGS = {"doc_general_qa": "What", "doc_mc": "Which", "docmath_qa": "How much"}


def prefill_questioner(task: str, opening: str = "json") -> str:
    return PREFILL_QUESTIONER + (QUESTION_OPENINGS[task] if opening == "question_word" else "")


PREFILL_VERIFIER = "Explanation: compared.\nDecision: [["


def prefill_responder(task: str) -> str:
    return "Therefore, the answer is" if task == "docmath_qa" else "The correct answer is"
