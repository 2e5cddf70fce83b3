"""Verifier role: judge whether a parsed prediction matches the parsed reference (paper §3.3, Eq. 4-5).

The verifier sees the question, the responder's *parsed* answer and the *parsed* reference, never the
documents; each judgment ends in [[YES]] or [[NO]].
"""

from __future__ import annotations

import re

from spell.roles import prompts
from spell.text import strip_reasoning

YES, NO, INVALID = 1, 0, -1


def build_prompt(question: str, prediction: str, reference: str) -> str:
    return prompts.VERIFIER.format(problem=question, answer_1=prediction, answer_2=reference)


def _read_decision(body: str) -> int:
    has_yes, has_no = "[[YES]]" in body, "[[NO]]" in body
    if has_yes != has_no:
        return YES if has_yes else NO
    if has_yes and has_no:
        return INVALID
    bare_yes = re.search(r"\bYES\b", body, re.IGNORECASE) is not None
    bare_no = re.search(r"\bNO\b", body, re.IGNORECASE) is not None
    if bare_yes != bare_no:
        return YES if bare_yes else NO
    return INVALID


def parse_vote(text: str | None) -> int:
    """1 for YES, 0 for NO, -1 when the judgment cannot be read (or its reasoning was cut off).

    The text after the last 'Decision:' is read first; bracketed decisions win over bare words; a text
    that says both (or neither) is invalid.
    """
    try:
        stripped = strip_reasoning(text)
        if stripped.truncated or not stripped.text:
            return INVALID
        body = stripped.text
        marker = body.lower().rfind("decision:")
        if marker >= 0:
            vote = _read_decision(body[marker + len("decision:") :])
            if vote != INVALID:
                return vote
        return _read_decision(body)
    except Exception:
        return INVALID
