"""The evaluation scorers against the released SPELL evaluation (issue 28): `eval.scorer=released` (the default)
reproduces the released `long.parse_model_answer` / `docmath.parse_model_answer` / `docmath.get_acc` case for
case; `eval.scorer=spell` keeps the project's reading. Each row's expected value was produced by running the
released functions themselves (Tongyi-Zhiwen/Qwen-Doc at 12489b0, SPELL/verl/verl/utils/reward_score/) on the
input; the `spell` column is spell.rules' answer, kept to show where the two readings part."""

import pytest

from spell.eval.metrics import docmath_match, extract_choice
from spell.eval.released import released_choice, released_docmath_answer, released_docmath_match
from spell.rules import extract_docmath_answer

# (response, released letter, spell letter)
CHOICES = [
    ("The correct answer is (B).", "B", "B"),
    ("The correct answer is B", "B", "B"),
    ("The correct answer is  (B)", None, "B"),
    ("The correct answer is: B", None, "B"),
    ("The correct answer is\nB", None, "B"),
    ("The correct answer is Because the text says so.", "B", None),
    ("the correct answer is (b). Actually the answer is (C)", None, "C"),
    ("<think>The correct answer is (A)</think> The correct answer is (C)", "C", "C"),
    ("<think>the answer is (A)", None, None),
    (
        "\\boxed{B} because " + "x" * 400,
        None,
        "B",
    ),
    ("\\boxed{B} and then more text", "B", "B"),
    ("\\boxed{ B }", None, "B"),
    ("\\boxed{(B)}", None, "B"),
    ("The answer is D.", "D", "D"),
    ("**The correct answer is (A)**", "A", "A"),
    ("The correct answer is (A) or maybe the answer is (B)", "A", "A"),
    ("Answer is C", "C", "C"),
    ("I pick C.", None, None),
    ("", None, None),
    ("The correct answer is A. Dogs bark.", "A", "A"),
    ("The correct answer is Definitely C", "D", None),
    ("answer is E", None, None),
    ("The correct answer is (E). The answer is B", "B", "B"),
]
# (response, released answer string, spell answer string)
DOCMATH_ANSWERS = [
    ("Therefore, the answer is 12.5.", "12.5", "12.5"),
    ("Therefore, the answer is $1,234.5 million.", "$1234.5", "1234.5"),
    ("the answer is (42)", "42", "42"),
    ("The answer is: 7", None, "7"),
    ("\\boxed{1,000} more", "1000", "1000"),
    ("Therefore, the answer is -3%", "-3", "-3"),
    ("the answer is ≈ 12", None, "12"),
    ("the answer is =12", "=12", "12"),
    ("Therefore, the answer is 12,5", "125", "125"),
    ("<think>x</think> the answer is 9", "9", "9"),
    ("the answer is ₹ 5", None, "5"),
    ("the answer is €5", "€5", "5"),
    ("no number here", None, None),
]
# (prediction, gold, released match, spell match)
DOCMATH_MATCHES = [
    ("12 million", "12", True, True),
    ("12 dollars", "12", True, True),
    ("5 million dollars", "5", False, True),
    ("12,5", "12.5", False, False),
    ("12,5", "125", False, True),
    ("yes", "True", True, False),
    ("no", "False", True, False),
    ("True", "True", True, False),
    ("1", "True", True, False),
    ("1000", "1000000", True, True),
    ("-3", "3", True, True),
    ("0.5", "50", True, True),
    ("12.5%", "12.5", True, True),
    ("1,234.5", "1234.5", True, True),
    ("3/4", "0.75", True, True),
    ("2^3", "8", False, False),
    ("approximately 12", "12", True, True),
    ("12 or 13", "13", False, False),
    ("USD 12", "12", True, True),
    ("~12", "12", True, True),
    ("12.0005", "12.0", True, True),
    ("x = 5", "5", True, True),
    ("10^3", "1000", True, True),
    ("1e3", "1000", True, True),
    ("(a)", "1", False, False),
    ("12 crowns", "12", True, True),
    ("$12.50", "12.5", True, True),
    ("12 thousand", "12000", True, True),
    ("0.1", "0.1", True, True),
    ("£5bn", "5", True, True),
    ("5.", "5", True, True),
    ("", "5", False, False),
]


@pytest.mark.parametrize(("text", "released", "spell"), CHOICES)
def test_longbench_v2_letter(text, released, spell):
    assert released_choice(text) == released
    assert extract_choice(text) == spell


@pytest.mark.parametrize(("text", "released", "spell"), DOCMATH_ANSWERS)
def test_docmath_answer_string(text, released, spell):
    assert released_docmath_answer(text) == released
    assert extract_docmath_answer(text) == spell


@pytest.mark.parametrize(("prediction", "gold", "released", "spell"), DOCMATH_MATCHES)
def test_docmath_numeric_match(prediction, gold, released, spell):
    assert released_docmath_match(prediction, gold) is released
    assert docmath_match(prediction, gold) is spell


def test_the_table_holds_cases_where_the_readings_part():
    """Every edge case the issue names is in the table, and the two readings do part on some of each kind."""
    assert sum(r != s for _, r, s in CHOICES) >= 8 and sum(r != s for _, r, s in DOCMATH_ANSWERS) >= 4
    assert sum(r != s for *_, r, s in DOCMATH_MATCHES) >= 6


def test_released_normalizer_never_evaluates_code():
    """Where the released code calls eval() on model text, ours parses literals only."""
    assert released_docmath_match("__import__('os').getpid()", "5") is False
    assert released_docmath_match("2**10**10", "5") is False  # no runaway power


def test_eval_scorer_switch_picks_the_reading():
    from spell.eval.benchmarks import EvalItem
    from spell.eval.runner import rule_score

    mc = EvalItem("1", "longbench-v2", "ctx", "Q?", {"A": "a", "B": "b", "C": "c", "D": "d"}, ("B",))
    assert rule_score(mc, "The correct answer is: B")[1] == 0.0  # released: no colon allowed
    assert rule_score(mc, "The correct answer is: B", "spell")[1] == 1.0
    dm = EvalItem("2", "docmath", "ctx", "How much?", None, ("7",))
    assert rule_score(dm, "The answer is: 7")[1] == 0.0  # released: no colon after "answer is"
    assert rule_score(dm, "The answer is: 7", "spell")[1] == 1.0
    boolean = EvalItem("3", "docmath", "ctx", "Did it grow?", None, ("True",))
    assert rule_score(boolean, "Therefore, the answer is \\boxed{yes}")[1] == 1.0
