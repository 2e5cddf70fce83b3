"""Generations a real model emits on a bad day become statuses, never exceptions (all three roles)."""

import time

import pytest

from spell.roles import questioner, responder, verifier
from spell.vocab import QUESTION_STATUSES, TASKS

FENCE = "```"
MALFORMED = {
    "empty": "",
    "whitespace": " \n\t ",
    "none": None,
    "truncated_think": "<think>I should ask about the bridge length and",
    "truncated_json": FENCE + 'json\n{"question": "How long is the bridge?", "answer": "40',
    "non_utf8_replacement": "\ufffd\ufffd" + FENCE + 'json\n{"question": "\ufffd?", "answer": "\ufffd"}\n' + FENCE,
    "lone_surrogates": "\udcff\udcfe" + FENCE + 'json\n{"question": "Q\udc80?", "answer": "A"}\n' + FENCE,
    "nul_bytes": "\x00" * 50 + "Decision: [[YES]]\x00",
    "enormous": "word " * 400_000,
    "enormous_json": FENCE + 'json\n{"question": "' + "q" * 1_000_000 + '", "answer": "a"}\n' + FENCE,
    "deep_nesting": FENCE + "json\n" + "[" * 200_000 + "\n" + FENCE,
    "deep_nesting_object": FENCE + "json\n" + '{"a":' * 100_000 + "1" + "}" * 100_000 + "\n" + FENCE,
    "fake_think_in_json": FENCE + 'json\n{"question": "What </think> is <think>?", "answer": "</think>"}\n' + FENCE,
    "nested_fences": FENCE + "json\n" + FENCE + 'json\n{"question": "Q?", "answer": "A"}\n' + FENCE + "\n" + FENCE,
    "many_fences": (FENCE + 'json\n{"question": "Q?", "answer": "A"}\n' + FENCE + "\n") * 5000,
    "think_only_close": "</think></think></think>" + FENCE + 'json\n{"question": "Q?"}\n' + FENCE,
    "json_not_object": FENCE + 'json\n["question", "answer"]\n' + FENCE,
    "answer_tags_galore": "the answer is: " * 10000 + "\\boxed{" * 1000,
    "both_decisions": "Decision: [[YES]] Decision: [[NO]] " * 1000,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_questioner_statuses(name):
    text = MALFORMED[name]
    for task in TASKS:
        start = time.process_time()
        p = questioner.parse(task, text)
        assert p.status in QUESTION_STATUSES
        assert time.process_time() - start < 20, f"{name}: parser too slow on {task}"  # guards a quadratic blow-up
        if name in ("empty", "whitespace", "none", "deep_nesting", "deep_nesting_object", "json_not_object"):
            assert p.status == "bad_format", (name, p)
        if name == "truncated_think":
            assert p.status == "truncated"


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_responder_and_verifier_statuses(name):
    text = MALFORMED[name]
    for task in TASKS:
        out = responder.parse(task, text)
        assert out is None or isinstance(out, str)
    assert verifier.parse_vote(text) in (-1, 0, 1)
    if name == "both_decisions":
        assert verifier.parse_vote(text) == 0  # the last "Decision:" counts
