"""The words every layer shares: task-type, role, guard, stage and status names, in one place.

Any module may import this one; it imports nothing of spell. A name used to switch behaviour is spelled
here (or, for a task type's own behaviour, in its module under `spell/task_types/`), never retyped.
"""

from __future__ import annotations

from typing import Literal

# SPELL's built-in task types (paper §3.1, App. E.1), in the order the batch and the samplers visit them.
# A new task type is a module under spell/task_types/ (it is found there) plus a weight in data.task_weights.
GENERAL_QA = "doc_general_qa"
MULTIPLE_CHOICE = "doc_mc"
DOCMATH = "docmath_qa"
TASKS: tuple[str, ...] = (GENERAL_QA, MULTIPLE_CHOICE, DOCMATH)

# Roles of the one policy (paper §3); grounding is the responder without documents (spec Part B §1.4).
RoleName = Literal["questioner", "grounding", "responder", "verifier"]

# Reward-hacking guards (spell.guards), in the order a proposal is checked; each is a `guards.*` switch.
QUESTION_GUARDS: tuple[str, ...] = (
    "template_answer",
    "not_a_question",
    "answer_not_in_docs",
    "template_number",
    "mc_options",
    "answer_in_question",
    "repeated_question",
    "looked_up_answer",
    "one_char_reference",
)
# the answer guards; strict_docmath is a training-time rule switch, counted as these are
RESPONSE_GUARDS: tuple[str, ...] = ("placeholder_answer", "multiple_candidates", "strict_docmath")
GUARDS: tuple[str, ...] = QUESTION_GUARDS + RESPONSE_GUARDS

# A questioner proposal's status (paper §3.2): rejected is a guard's verdict.
QUESTION_STATUSES: tuple[str, ...] = ("ok", "bad_format", "invalid", "truncated", "rejected")

# Stage files: one per round (dynamic sampling repeats these), one per iteration; in pipeline order.
ROUND_STAGES: tuple[str, ...] = (
    "prompts",
    "questions",
    "grounding",
    "responder_prompts",
    "responses",
    "verdicts",
    "rewards",
    "calibration",
)
ITERATION_STAGES: tuple[str, ...] = ("batch", "train_metrics", "rejects")
