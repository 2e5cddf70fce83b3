"""Rule checks: answer extraction from responses and the rule-based responder reward R_rule.

One implementation of each rule, used by training rewards and by evaluation alike (spec Part A,
'responder reward'; Part B §3.1); each task type (spell.task_types) picks its own:

- general QA: cover exact match (CEM, strict): the normalised gold is contained in the normalised prediction;
- DocMath: numeric match with 0.15% relative tolerance, forgiving x100/x1e3/x1e6/x1e9 scale slips;
- multiple choice: the letter A-D equals the reference letter.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Iterable
from decimal import ROUND_UP, Decimal, InvalidOperation

from spell.text import normalize_answer, strip_reasoning

DOCMATH_REL_TOL = 0.0015
DOCMATH_SCALES = (100.0, 1e3, 1e6, 1e9)
PLACEHOLDER = "insert answer here"


# ---------------------------------------------------------------------------------------------------
# Extraction


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`, braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


_ANSWER_IS = re.compile(r"answer\s+is\s*:?", re.IGNORECASE)


def _after_last_answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    return rest.split("\n", 1)[0].strip()


def _clean_span(span: str) -> str:
    s = span.strip().replace("**", "").strip()
    s = s.rstrip(".").strip()
    # "The correct answer is (Paris)." -> "Paris"; quotes likewise.
    while len(s) >= 2 and (s[0], s[-1]) in {("(", ")"), ('"', '"'), ("'", "'"), ("[", "]"), ("`", "`")}:
        s = s[1:-1].strip()
    return s.rstrip(".").strip()


def extract_qa_answer(text: str | None) -> str | None:
    """General-QA prediction: the text after the last 'answer is' up to the line end. Never `\\boxed{}`
    (spec Part A, 'Also binding': general QA has no boxed fallback)."""
    stripped = strip_reasoning(text)
    if stripped.truncated or not stripped.text:
        return None
    span = _after_last_answer_is(stripped.text)
    if span is None:
        return None
    answer = _clean_span(span)
    if not answer or PLACEHOLDER in answer.lower():
        return None
    return answer


_NUMBER = re.compile(r"[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# a number right after "answer is": optional parentheses, leading = ≈ % $ ° or a currency sign, trailing % or °
_DOCMATH_ANSWER = re.compile(
    r"answer\s+is\s*:?\s*\(?[\s=≈%$°€£¥₹]*([-+−]?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s*[%°]?\s*\)?", re.IGNORECASE
)


def extract_docmath_answer(text: str | None) -> str | None:
    """DocMath prediction as the official `parse_model_answer` (spec Part A, 'Also binding'): asterisks
    removed; with a `\\boxed{` anywhere, the last boxed content (commas removed) and nothing else; else the
    last number right after 'answer is' (commas removed); else none."""
    stripped = strip_reasoning(text)
    if stripped.truncated or not stripped.text:
        return None
    body = stripped.text.replace("*", "")
    if "\\boxed{" in body:
        boxed = _last_boxed(body)
        boxed = boxed.replace(",", "").strip() if boxed is not None else None
        return boxed or None
    found = _DOCMATH_ANSWER.findall(body)
    return found[-1].replace(",", "").replace("−", "-") if found else None


_MC_PATTERNS = (
    re.compile(r"\\boxed\{\s*\(?([A-D])\)?\s*\}"),
    re.compile(r"(?i:correct\s+answer\s+is)\s*:?\s*\(([A-D])\)"),
    re.compile(r"(?i:correct\s+answer\s+is)\s*:?\s*([A-D])\b"),
    re.compile(r"(?i:answer\s+is)\s*:?\s*\(([A-D])\)"),
    re.compile(r"(?i:answer\s+is)\s*:?\s*([A-D])\b"),
)


def extract_mc_answer(text: str | None) -> str | None:
    """MC letter: the first pattern that matches wins, its last match is taken; uppercase A-D only."""
    stripped = strip_reasoning(text)
    if stripped.truncated or not stripped.text:
        return None
    body = stripped.text.replace("*", "")
    for pat in _MC_PATTERNS:
        found = pat.findall(body)
        if found:
            return found[-1]
    return None


# ---------------------------------------------------------------------------------------------------
# Numbers

_UNIT_WORDS = re.compile(
    r"\b(?:usd|eur|gbp|rmb|cny|jpy|dollars?|euros?|pounds?|yuan|yen|percent(?:age)?|pct|"
    r"millions?|billions?|thousands?|trillions?|bn|mn|k|m|b|units?|shares?|points?|basis points|bps|"
    r"years?|months?|days?|times|x)\b",
    re.IGNORECASE,
)
_SYMBOLS = re.compile(r"[$€£¥₹%°]")
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


class _NotArithmetic(Exception):
    pass


def _safe_eval(expr: str) -> float | None:
    """Evaluate + - * / ** and parentheses on numbers; None if it fails (1/0, overflow).

    Raises _NotArithmetic when the text is not an arithmetic expression at all.
    """
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _NotArithmetic from None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
                raise ValueError("power too large")
            return float(_OPS[type(node.op)](left, right))
        raise ValueError("not arithmetic")

    try:
        value = ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError, TypeError):
        return None
    return value if math.isfinite(value) else None


def parse_number(value: object) -> float | None:
    """A number from a model answer: '$1,234.5 million' -> 1234.5, 'x = 3/4' -> 0.75, '12%' -> 12."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s or len(s) > 500:
        return None
    for sep in ("=", "≈"):
        if sep in s:
            s = s.rsplit(sep, 1)[1]
    s = s.replace("−", "-").replace("×", "*").replace("÷", "/")
    s = re.sub(r"(?<=\d),(?=\d)", "", s)
    s = _SYMBOLS.sub(" ", s)
    s = _UNIT_WORDS.sub(" ", s)
    s = s.strip().rstrip(".").strip()
    if not s:
        return None
    if re.fullmatch(r"[\d\s.+\-*/()eE]+", s):
        try:
            return _safe_eval(s)
        except _NotArithmetic:
            pass
    m = _NUMBER.search(s)
    if m is None:
        return None
    try:
        v = float(m.group(0).replace("−", "-"))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


_LOOSE_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")


def numbers_in(text: str) -> list[float]:
    """Every number written in a text ('1,200' is one number)."""
    return [v for m in _LOOSE_NUMBER.findall(text) if (v := parse_number(m.replace(",", ""))) is not None]


def same_number(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _round_up_3(x: float) -> Decimal | None:
    try:
        return Decimal(repr(abs(x))).quantize(Decimal("0.001"), rounding=ROUND_UP)
    except InvalidOperation:
        return None


def _docmath_close(p: float, g: float, forgive: bool) -> bool:
    if abs(p - g) <= DOCMATH_REL_TOL * abs(g):
        return True
    rp, rg = _round_up_3(p), _round_up_3(g)  # of the absolute values
    if rp is not None and rp == rg and (forgive or (p < 0) == (g < 0)):
        return True
    small, large = sorted((abs(p), abs(g)))
    if not forgive or small == 0:
        return False
    return any(abs(small * f - large) <= DOCMATH_REL_TOL * large for f in DOCMATH_SCALES)


def docmath_match(prediction: object, gold: object) -> bool:
    """Numeric match (spec Part B §3.1): relative tolerance 0.15%, or equal after rounding up to
    3 decimals, or equal up to a x100/x1e3/x1e6/x1e9 slip (percent and unit slips are forgiven)."""
    p, g = parse_number(prediction), parse_number(gold)
    return p is not None and g is not None and _docmath_close(p, g, forgive=True)


def docmath_strict_match(prediction: object, gold: object) -> bool:
    """The numeric match without slips: 0.15% relative tolerance or equal after rounding up to 3 decimals,
    signs kept and no x100/x1e3/x1e6/x1e9 factor (`guards.strict_docmath`)."""
    p, g = parse_number(prediction), parse_number(gold)
    return p is not None and g is not None and _docmath_close(p, g, forgive=False)


# ---------------------------------------------------------------------------------------------------
# Rule scores


def cover_exact_match(prediction: str | None, golds: str | Iterable[str]) -> float:
    """CEM (strict): 1.0 if some normalised gold is a substring of the normalised prediction.

    An empty normalised gold never matches: '' is a substring of everything.
    """
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    gold_list = [golds] if isinstance(golds, str) else list(golds)
    for gold in gold_list:
        g = normalize_answer(gold)
        if g and g in pred:
            return 1.0
    return 0.0


def mc_match(prediction: str | None, gold: str | None) -> float:
    return 1.0 if prediction is not None and gold is not None and prediction.strip() == gold.strip() else 0.0
