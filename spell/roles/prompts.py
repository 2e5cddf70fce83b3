"""Every prompt template spell sends to the policy, in one place (paper App. F; spec Part B §2).

Written for spell: the structure follows the paper (role, design principles, reasoning first, then
one fenced json block), and every JSON example below is valid JSON (a test parses each one).
Placeholders use `str.format` names: {context}, {examples}, {question}, {target_letter}, ...
"""

from __future__ import annotations

from spell import task_types

# ---------------------------------------------------------------------------------------------------
# Questioner template (its task pieces come from the task type, spell.task_types)

_QUESTIONER_JOB = (
    "Read the documents between <text> and </text> and propose ONE challenging question about them, "
    "with its correct answer and a step-by-step derivation that cites the documents."
)


def questioner_template(task: str, with_history: bool) -> str:
    """The questioner template for a task; placeholders {context}, {examples}, {target_letter}."""
    tt = task_types.get(task)
    parts = [tt.questioner_intro, _QUESTIONER_JOB, "<text>\n{context}\n</text>"]
    if with_history:
        parts += ["## Previous Examples\n{examples}", tt.escalate]
    parts += [tt.principles, tt.output_format]
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
# Responder (each task type holds its template)

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


def prefill_questioner(task: str, opening: str = "json") -> str:
    """rollout.questioner_opening=question_word (small models): the question itself starts with the task
    type's question word."""
    return PREFILL_QUESTIONER + (task_types.get(task).question_opening if opening == "question_word" else "")


PREFILL_VERIFIER = "Explanation: compared.\nDecision: [["


def prefill_responder(task: str) -> str:
    return task_types.get(task).answer_prefix
