"""Questioner, responder and verifier: prompts and parsers (spec Part A 'questioner output', 'MC answer letter')."""

import json
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spell.roles import prompts, questioner, responder, verifier
from spell.roles.questioner import HistoryExample
from spell.task_types import multiple_choice
from spell.vocab import QUESTION_STATUSES

TASKS = ("doc_general_qa", "doc_mc", "docmath_qa")
DOCS = ["Doc one says the bridge opened in 1932.", "Doc two: it cost $4 million."]


def fenced(obj, pre="Reasoning first.\n"):
    return f"{pre}```json\n{json.dumps(obj)}\n```"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("with_history", [False, True])
def test_questioner_prompt_json_examples_are_valid_json(task, with_history):
    """Part A 'questioner output': every JSON example in our prompts is valid JSON."""
    history = [HistoryExample("Q?", "A")] if with_history else []
    text = questioner.build_prompt(task, DOCS, history, target_letter="C" if task == "doc_mc" else None)
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 1
    obj = json.loads(blocks[0])
    assert "question" in obj and "answer" in obj
    assert DOCS[0] in text and DOCS[1] in text
    assert ("Previous Examples" in text) == with_history
    if with_history:
        assert "### Example 1:\nQuestion: Q?\nAnswer: A" in text
        # the examples come first, and the escalation text points back at them
        assert text.index("### Example 1") < text.index("previous questions above") and " below" not in text
    if task == "doc_mc":
        assert obj["answer"] == "C" and set(obj["options"]) == {"A", "B", "C", "D"}
        assert "must be option C" in text
    assert "{" + "context}" not in text


def test_mc_target_letter_is_uniform():
    """Part A 'MC answer letter': drawn uniformly from A-D."""
    rng = random.Random(0)
    counts = Counter(multiple_choice.draw_target_letter(rng) for _ in range(4000))
    assert set(counts) == {"A", "B", "C", "D"}
    assert all(900 < c < 1100 for c in counts.values())
    with pytest.raises(ValueError):
        questioner.build_prompt("doc_mc", DOCS)


class TestQuestionerParser:
    def test_ok_general_with_reasoning_before(self):
        p = questioner.parse("doc_general_qa", "<think>hmm</think>" + fenced({"question": "Who?", "answer": "Ann"}))
        assert p.ok and p.question == "Who?" and p.answer == "Ann"

    def test_unclosed_think_is_truncated(self):
        assert questioner.parse("doc_general_qa", "<think>long reasoning that never ends").status == "truncated"

    def test_no_json(self):
        p = questioner.parse("doc_general_qa", "I cannot do this.")
        assert p.status == "bad_format" and "no ```json" in p.reason

    def test_invalid_json(self):
        assert questioner.parse("doc_general_qa", '```json\n{"question": "x", \n```').status == "bad_format"

    def test_trailing_comma_is_bad_format(self):
        """Our templates are valid JSON, so a trailing comma is the model's format error (spec B §9.12)."""
        p = questioner.parse("doc_general_qa", '```json\n{"question": "Q?", "answer": "A",}\n```')
        assert p.status == "bad_format" and "not valid JSON" in p.reason

    @pytest.mark.parametrize("obj", [{"answer": "A"}, {"question": "Q?"}, {"question": "", "answer": "A"}])
    def test_missing_keys(self, obj):
        assert questioner.parse("doc_general_qa", fenced(obj)).status == "bad_format"

    def test_mc_ok(self):
        obj = {"question": "Which?", "options": {"A": "1", "B": "2", "C": "3", "D": "4"}, "answer": "(C)"}
        p = questioner.parse("doc_mc", fenced(obj))
        assert p.ok and p.answer == "C"
        block = p.responder_question()
        assert block.startswith("What is the correct answer to this question: Which?") and "(D) 4" in block

    def test_mc_without_all_options(self):
        obj = {"question": "Which?", "options": {"A": "1", "B": "2", "C": "3"}, "answer": "A"}
        p = questioner.parse("doc_mc", fenced(obj))
        assert p.status == "bad_format" and "D" in p.reason

    @pytest.mark.parametrize("ans", ["E", "the second one", 2, "", None, "b"])
    def test_mc_answer_not_a_letter(self, ans):
        obj = {"question": "Which?", "options": {"A": "1", "B": "2", "C": "3", "D": "4"}, "answer": ans}
        assert questioner.parse("doc_mc", fenced(obj)).status == "bad_format"

    @pytest.mark.parametrize("ans", [0, "0", "0.0", "$0"])
    def test_docmath_zero_is_invalid(self, ans):
        assert questioner.parse("docmath_qa", fenced({"question": "How much?", "answer": ans})).status == "invalid"

    def test_docmath_ok_and_non_number(self):
        assert questioner.parse("docmath_qa", fenced({"question": "Q", "answer": 12.5})).answer == "12.5"
        assert questioner.parse("docmath_qa", fenced({"question": "Q", "answer": "$1,200"})).answer == "$1,200"
        assert questioner.parse("docmath_qa", fenced({"question": "Q", "answer": "many"})).status == "invalid"
        assert questioner.parse("docmath_qa", fenced({"question": "Q", "answer": [1]})).status == "bad_format"

    def test_overlong_general_answer_is_invalid(self):
        p = questioner.parse("doc_general_qa", fenced({"question": "Q?", "answer": "word " * 41}))
        assert p.status == "invalid" and "41 tokens" in p.reason
        short = questioner.parse(
            "doc_general_qa",
            fenced({"question": "Q?", "answer": "word " * 5}),
            count_tokens=lambda s: 100,
            max_answer_tokens=40,
        )
        assert short.status == "invalid"

    def test_unicode(self):
        p = questioner.parse(
            "doc_general_qa", fenced({"question": "Qui a écrit « Candide » ?", "answer": "Voltaire 🖋"})
        )
        assert p.ok and p.answer == "Voltaire 🖋"

    @pytest.mark.parametrize("text", ["", None, "   ", "\x00\xff"])
    def test_empty(self, text):
        assert questioner.parse("doc_general_qa", text).status == "bad_format"

    def test_fake_tags_inside_json(self):
        text = '<think>x</think>```json\n{"question": "What </think>?", "answer": "A"}\n```'
        assert questioner.parse("doc_general_qa", text).status in {"ok", "bad_format"}

    @settings(max_examples=300, deadline=None)
    @given(st.text(), st.sampled_from(TASKS))
    def test_never_raises(self, text, task):
        p = questioner.parse(task, text)
        assert p.status in QUESTION_STATUSES


def test_responder_prompts():
    for task in TASKS:
        full = responder.build_prompt(task, "Q?", DOCS)
        blind = responder.build_prompt(task, "Q?", None)
        assert DOCS[0] in full and DOCS[1] in full
        assert DOCS[0] not in blind and f"<text>\n{prompts.NO_CONTEXT}\n</text>" in blind
        assert "insert answer here" in full
    mc = responder.build_prompt("doc_mc", "What is the correct answer to this question: X", DOCS)
    assert "Question: What is" not in mc


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from(TASKS))
def test_responder_parse_never_raises(text, task):
    out = responder.parse(task, text)
    assert out is None or isinstance(out, str)


def test_verifier_prompt_and_votes():
    p = verifier.build_prompt("Q?", "Paris", "paris, France")
    assert "Problem: Q?" in p and "Answer 1: Paris" in p and "Answer 2: paris, France" in p
    assert "[[YES]]" in p and "[[NO]]" in p
    assert verifier.parse_vote("Explanation: same.\nDecision: [[YES]]") == 1
    assert verifier.parse_vote("Explanation: no, they differ.\nDecision: [[NO]]") == 0
    assert verifier.parse_vote("Explanation: no doubt.\nDecision: YES") == 1
    assert verifier.parse_vote("[[YES]] or [[NO]]") == -1
    assert verifier.parse_vote("<think>unfinished") == -1
    assert verifier.parse_vote("") == -1 and verifier.parse_vote(None) == -1
    assert verifier.parse_vote("I know nothing") == -1


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_vote_parse_never_raises(text):
    assert verifier.parse_vote(text) in (-1, 0, 1)
