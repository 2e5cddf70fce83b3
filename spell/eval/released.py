"""The released SPELL evaluation's scorers, reproduced case for case (`eval.scorer=released`, the default), so
`spell eval` numbers compare with the paper's tables. Written from the behaviour of the released
`SPELL/verl/verl/utils/reward_score/long.py` and `docmath.py` at commit 12489b0 (spec Part B §6.4), not
copied; where the released code calls `eval()` on model text, a parser of the same literals stands in.

What the released reading decides, and `eval.scorer=spell` (spell.rules) decides the other way:
- LongBench-v2: the patterns match case-insensitively with no word boundary ("The correct answer is Because
  ..." reads B; a lowercase letter in the first matching pattern reads nothing); exactly one space before the
  letter (no colon, no line break, no extra spaces); with no `</think>`, `\\boxed{` or "answer is", only the
  last 300 characters are read.
- DocMath: scale and currency words are cut out as substrings (two spaces left behind break the number); a
  decimal comma makes a tuple, never a number; yes/no and true/false are booleans (matching a boolean gold).
"""

from __future__ import annotations

import ast
import math
import operator
import re

_LETTERS = ("A", "B", "C", "D")
_CHOICE_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\\boxed\{([A-D])\}",
        r"correct answer is \(([A-D])\)",
        r"correct answer is ([A-D])",
        r"answer is \(([A-D])\)",
        r"answer is ([A-D])",
    )
)
_NOT_A_NUMBER = 999999999  # the released normaliser's stand-in for "could not read a number"


def _final_part(text: str, markers: tuple[str, ...]) -> str:
    """The part of a response the released scorers read: after the last `</think>`; 'Empty' when a `<think>`
    never closed; the last 300 characters when none of `markers` occurs."""
    if "<think>" in text:
        return text.split("</think>")[-1].strip() if "</think>" in text else "Empty"
    if "</think>" in text or any(m in text for m in markers):
        return text.split("</think>")[-1].strip()
    return text[-300:]


def released_choice(text: str | None) -> str | None:
    """LongBench-v2's letter as the released `long.extract_solution` + `parse_model_answer` read it."""
    if not isinstance(text, str):
        return None
    part = _final_part(text, ("answer is",)) or text
    body = part.replace("*", "").strip()
    for pattern in _CHOICE_PATTERNS:
        found = pattern.findall(body)
        if found:
            return found[-1] if found[-1] in _LETTERS else None  # the first matching pattern decides
    return None


_DOCMATH_ANSWER = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"the answer is \((=?≈?`?%?\$?°?£?€?¥?-?[0-9.,]+)\)",
        r"the answer is (=?≈?`?%?\$?°?£?€?¥?-?[0-9.,]+)",
        r"answer is \((=?≈?`?%?\$?°?£?€?¥?-?[0-9.,]+)\)",
        r"answer is (=?≈?`?%?\$?°?£?€?¥?-?[0-9.,]+)",
    )
)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    depth = 0
    for j in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if text[j] == "}" and depth == 0:
            return text[start + len("\\boxed{") : j]
    return None


def released_docmath_answer(text: str | None) -> str | None:
    """DocMath's answer string as the released `docmath.extract_solution` + `parse_model_answer` read it."""
    if not isinstance(text, str):
        return None
    part = _final_part(text, ("\\boxed{", "answer is")) or text
    body = part.replace("*", "")
    if "\\boxed{" in body:
        boxed = _last_boxed(body)
        return boxed.replace(",", "").rstrip(".") if boxed is not None else None
    for pattern in _DOCMATH_ANSWER:
        found = pattern.findall(body)
        if found:
            return found[-1].replace(",", "").rstrip(".")
    return None


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitXor: operator.xor,
}


def _literal(node: ast.AST) -> object:
    """What Python's eval gives for the literals and arithmetic a normalised answer can hold; raises otherwise."""
    if isinstance(node, ast.Expression):
        return _literal(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | complex | str | bool):
        return node.value
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _literal(node.operand)
        return -v if isinstance(node.op, ast.USub) else +v  # type: ignore[operator]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):  # type: ignore[arg-type]
            raise ValueError("power too large")
        return _BINARY[type(node.op)](left, right)
    if (  # math.pow(10, n), which the normaliser writes for 10^n
        isinstance(node, ast.Call)
        and ast.unparse(node.func) == "math.pow"
        and len(node.args) == 2
        and not node.keywords
    ):
        return math.pow(*(float(_literal(a)) for a in node.args))  # type: ignore[arg-type]
    raise ValueError("not a literal")


def _read(text: str) -> object:
    try:
        return _literal(ast.parse(text.strip(), mode="eval"))
    except Exception:
        return _NOT_A_NUMBER


_NUM = r"[-+]?(?:[\d,]*\.*\d+)"


def released_normalize(value: str | None) -> object:
    """The released `docmath.normalize`: a number, a bool, a list (a tuple read from '12,5'), a string
    (an option), or 999999999 when nothing can be read."""
    if value is None:
        return None
    s = str(value).strip().rstrip(".")
    for word in ("£", "€", "¥", "million", "billion", "thousand", "US", "USD", "RMB"):
        s = s.replace(word, "")
    for sep in ("=", "≈"):
        if sep in s:
            s = s.split(sep)[-1].strip()
    for sign in ("`", "%", "$", "°"):
        s = s.replace(sign, "")
    if s in ("true", "yes", "false", "no"):
        s = "True" if s in ("true", "yes") else "False"
    if "True" in s or "False" in s:
        s = "True" if "True" in s else "False"
    if "approximately" in s:
        s = s.replace("approximately", "").strip()
    if " or " in s:
        s = s.split(" or ")[0]
    for pattern in (rf"({_NUM}) [^0-9 ]+$", rf"[^0-9 ]+ ({_NUM})$", rf"({_NUM})[^\d]{{1,2}}$"):
        if m := re.match(pattern, s):
            s = m.group(1)
    if re.match(r"[^-+\d]{1,2}(?:[\d,]*\.*\d+)$", s):
        s = re.search(r"[^-+\d]{1,2}((?:[\d,]*\.*\d+))$", s).group(1)  # type: ignore[union-attr]
    if "10^" in s:
        s = re.sub(r"10\^(-?\d+)", r"math.pow(10, \1)", s)
    s = s.replace(" x ", "*").replace(" × ", "*")
    if re.match(r"^[-+]?(\d{1,3}(,\d{3})*|(\d+))(\.\d+)?$", s):
        s = s.replace(",", "")
    if any(f"({c})" in s for c in "abcd"):
        s = '"' + re.search(r"\([a-d]\)", s).group(0) + '"'  # type: ignore[union-attr]
    read = _read(s or str(_NOT_A_NUMBER))
    if isinstance(read, complex):
        return read.real
    if isinstance(read, list) and read and isinstance(read[0], complex):
        return [x.real for x in read]  # type: ignore[union-attr]
    return read


def _within(pred: float, gold: float) -> bool:
    eps = abs(gold) * 0.0015
    return gold - eps <= pred <= gold + eps


def _ceil3(x: float) -> float:
    return math.ceil(x * 1000) / 1000


def _numbers_match(p: object, gold: float) -> bool:
    if isinstance(p, list | str | dict):
        return False
    if not isinstance(p, int | float):  # a bool is an int, as in the released code
        return False
    try:
        large, small = max(abs(gold), abs(p)), min(abs(gold), abs(p))
        if any(small <= 2 * large / s and _within(small * s, large) for s in (100, 1000, 1000000, 1000000000)):
            return True
        return _ceil3(large) == _ceil3(small) or _within(p, gold)
    except OverflowError:
        return False


def released_docmath_match(prediction: str | None, gold: str | None) -> bool:
    """The released `docmath.get_acc`: both sides normalised; a boolean gold needs an equal boolean, a numeric
    one the released numeric match (scale slips, rounding up to 3 decimals, 0.15% relative)."""
    p, g = released_normalize(prediction), released_normalize(gold)
    if p is None or g is None or not isinstance(g, int | float) or isinstance(p, dict):
        return False
    if isinstance(g, bool):
        return p == g
    return _numbers_match(p, float(g))
