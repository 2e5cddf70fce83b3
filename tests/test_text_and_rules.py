"""Reasoning stripping, JSON extraction, normalisation and the rule checks (spec Part A 'responder reward')."""

import pytest

from spell.rules import (
    cover_exact_match,
    docmath_match,
    extract_docmath_answer,
    extract_mc_answer,
    extract_qa_answer,
    parse_number,
)
from spell.task_types import extract_answer, rule_score
from spell.text import last_json_object, normalize_answer, strip_reasoning


def test_strip_reasoning():
    assert strip_reasoning("<think>a</think> answer").text == "answer"
    assert strip_reasoning("<think>cut off").truncated
    assert strip_reasoning("prompt-side think</think>final").text == "final"
    assert strip_reasoning("<think>a</think>x<think>again").truncated
    assert strip_reasoning(None).text == ""
    assert strip_reasoning("plain").text == "plain"


def test_last_json_object():
    text = 'draft ```json\n{"a": 1}\n``` final ```json\n{"a": 2}\n```'
    assert last_json_object(text).value == {"a": 2}
    assert last_json_object('{"a": 3}').value == {"a": 3}
    assert "not valid JSON" in last_json_object('```json\n{"a": 1,}\n```').error
    assert "not an object" in last_json_object("```json\n[1, 2]\n```").error
    assert "no ```json block" in last_json_object("nothing here").error
    deep = "```json\n" + "[" * 100000 + "```"
    assert last_json_object(deep).value is None


def test_normalize_answer():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a pear") == "apple pear"
    assert normalize_answer("Théâtre") == "théâtre"
    assert normalize_answer(None) == ""


class TestCoverExactMatch:
    """Part A 'responder reward': CEM strict for general QA."""

    def test_contained(self):
        assert cover_exact_match("It was the Treaty of Paris in 1783.", "treaty of paris") == 1.0

    def test_articles_punctuation_case(self):
        assert cover_exact_match("THE U.S. Navy", "US navy") == 1.0

    def test_strict_is_one_way(self):
        assert cover_exact_match("Paris", "Treaty of Paris") == 0.0

    def test_best_over_golds(self):
        assert cover_exact_match("NYC", ["New York City", "NYC"]) == 1.0

    def test_empty_gold_never_matches(self):
        assert cover_exact_match("anything", ["", "the"]) == 0.0
        assert cover_exact_match("", "x") == 0.0
        assert cover_exact_match(None, "x") == 0.0


class TestDocMath:
    """Part A 'responder reward': 0.15% relative numeric tolerance with the scale-slip and rounding rules."""

    @pytest.mark.parametrize(
        ("pred", "gold"),
        [
            ("100.1", "100"),  # within 0.15%
            ("-5", "-5.0"),
            ("12.5%", "0.125"),  # x100 slip
            ("3.2 million", "3200000"),  # x1e6 slip
            ("$1,234.5", "1234.5"),
            ("0.12345", "0.1235"),  # equal after rounding up to 3 decimals
            ("x = 3/4", "0.75"),
            (2.0, "2"),
            ("-4", "4"),  # the slip rule compares absolute values
        ],
    )
    def test_matches(self, pred, gold):
        assert docmath_match(pred, gold)

    @pytest.mark.parametrize(("pred", "gold"), [("100.2", "100"), ("7", "70"), ("abc", "1"), (None, "1"), ("0", "1")])
    def test_mismatches(self, pred, gold):
        assert not docmath_match(pred, gold)

    def test_parse_number(self):
        assert parse_number("€ 2,000.50 euros") == 2000.5
        assert parse_number("≈ 3.14") == 3.14
        assert parse_number("(1+2)*3") == 9.0
        assert parse_number("9**9**9") is None  # refused, never computed
        assert parse_number("1 2") == 1.0  # not an expression: first number
        assert parse_number("1/0") is None
        assert parse_number("") is None and parse_number(True) is None
        assert parse_number("−7") == -7.0


class TestExtraction:
    def test_qa(self):
        assert extract_qa_answer("Reasoning...\nThe correct answer is (George Washington).") == "George Washington"
        assert extract_qa_answer("<think>the answer is X</think>The answer is Y.") == "Y"
        assert extract_qa_answer("<think>never closed the answer is X") is None
        assert extract_qa_answer("The correct answer is (insert answer here).") is None
        assert extract_qa_answer("no marker at all") is None
        assert extract_qa_answer("so \\boxed{Lyon}") is None  # Part A: general QA never falls back to \\boxed
        assert extract_qa_answer("") is None

    @pytest.mark.parametrize(
        ("text", "answer"),
        [  # the official parse_model_answer (spec Part A, 'Also binding')
            ("Therefore, the answer is 1,234.5.", "1234.5"),  # commas removed
            ("Therefore, the answer is (12.5%).", "12.5"),  # parentheses, percent sign
            ("**The answer is** $3,000 million", "3000"),  # asterisks removed, currency sign
            ("The Answer Is: -3.5", "-3.5"),  # case-insensitive
            ("the answer is 5; on reflection the answer is 7.", "7"),  # the last match
            ("result \\boxed{\\frac{1}{2}} hmm \\boxed{4,200}", "4200"),  # the last boxed content
            ("the answer is 7, shown as \\boxed{x}", "x"),  # a boxed answer is taken and nothing else
            ("the answer is about 5", None),  # no number right after the phrase
            ("the answer is unknown", None),
            ("Therefore, the answer is (insert answer here).", None),
            ("The total is 42.", None),  # no phrase, no box: no answer
        ],
    )
    def test_docmath(self, text, answer):
        assert extract_docmath_answer(text) == answer

    @pytest.mark.parametrize(
        ("text", "letter"),
        [
            ("The correct answer is (B).", "B"),
            ("The answer is C", "C"),
            ("**The correct answer is (D)**", "D"),
            ("\\boxed{A} but the answer is (B)", "A"),
            ("the answer is (b)", None),
            ("The answer is Apple", None),
            ("first the answer is (A), finally the answer is (C)", "C"),
        ],
    )
    def test_mc(self, text, letter):
        assert extract_mc_answer(text) == letter

    def test_dispatch(self):
        assert extract_answer("The answer is (B)", "doc_mc") == "B"
        assert extract_answer("The answer is 5", "docmath_qa") == "5"
        assert extract_answer("The answer is Rome", "doc_general_qa") == "Rome"


def test_rule_score_per_task():
    assert rule_score("doc_general_qa", "It is Rome, Italy", "Rome") == 1.0
    assert rule_score("docmath_qa", "0.5", "50%") == 1.0
    assert rule_score("doc_mc", "B", "B") == 1.0 and rule_score("doc_mc", "A", "B") == 0.0
    assert rule_score("doc_general_qa", None, "Rome") == 0.0
