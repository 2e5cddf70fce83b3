"""Text helpers shared by every role: reasoning stripping, fenced-JSON extraction, answer normalisation.

All functions are total: they never raise on model output, whatever it contains.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class Stripped:
    """Model output with its reasoning removed. `truncated` means a `<think>` was never closed."""

    text: str
    truncated: bool


def strip_reasoning(text: str | None) -> Stripped:
    """Keep what follows the last `</think>`; an unclosed `<think>` means the output was cut off.

    Qwen3-style templates put `<think>` in the prompt, so a lone `</think>` still ends the reasoning.
    """
    if not isinstance(text, str):
        return Stripped("", False)
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        after = text[close + len(THINK_CLOSE) :]
        # A `<think>` opened after the last close was never finished.
        if THINK_OPEN in after:
            return Stripped("", True)
        return Stripped(after.strip(), False)
    if THINK_OPEN in text:
        return Stripped("", True)
    return Stripped(text.strip(), False)


_FENCE = re.compile(r"```[ \t]*json[ \t]*\r?\n?(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class JsonBlock:
    """The last fenced json object in a text, or why there is none."""

    value: dict | None
    error: str | None


def last_json_object(text: str) -> JsonBlock:
    """Parse the last ```json fenced block as an object; without fences, try the whole text.

    Only the *last* block counts: the questioner is told to end with exactly one block, and earlier
    blocks are usually drafts inside the reasoning.
    """
    blocks = _FENCE.findall(text)
    if blocks:
        candidate, source = blocks[-1], "the last ```json block"
    else:
        stripped = text.strip()
        if not (stripped.startswith("{") and stripped.endswith("}")):
            return JsonBlock(None, "no ```json block found")
        candidate, source = stripped, "the output"
    try:
        value = json.loads(candidate)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
        return JsonBlock(None, f"{source} is not valid JSON: {msg}")
    if not isinstance(value, dict):
        return JsonBlock(None, f"{source} is JSON but not an object ({type(value).__name__})")
    return JsonBlock(value, None)


_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str | None) -> str:
    """SQuAD/LongBench normalisation: lowercase, drop ASCII punctuation, drop a/an/the, collapse spaces."""
    if not isinstance(text, str):
        return ""
    s = text.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def count_words(text: str) -> int:
    """Fallback token count (whitespace words) where no tokenizer is at hand."""
    return len(text.split())


def contains_words(haystack: str, needle: str) -> bool:
    """Whole-word containment of normalised text (both sides already `normalize_answer`ed)."""
    return bool(needle) and f" {needle} " in f" {haystack} "
