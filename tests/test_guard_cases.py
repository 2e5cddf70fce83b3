"""Guards tested both ways (issue 25 items 4 and 6): each rejects the hack it names and passes the honest
proposal or answer that looks like it; off, as in the paper presets, nothing is rejected."""

import pytest
from test_guards import _question_row

from spell.calibration import decisive_label
from spell.config import load_config
from spell.guards import GuardSwitches, guard_counts, question_guard, response_guard
from spell.stages.question import question_rows

DOCS_25 = ["Revenue was 12.5 million in 2019 and 1.25 in Q2; margin 125 bps.", "Costs rose from 40 to 60."]
NO_TWELVE = ["Costs rose from 40 to 60 in 2019."]
MC_OPTIONS = {"A": "12.5%", "B": "40%", "C": "60%", "D": "1%"}


@pytest.mark.parametrize(
    ("task", "question", "answer", "options", "docs", "expected"),
    [
        # template numbers: an honest 12.5 / 1.25 / 125 that the documents hold, against a copied example
        ("docmath_qa", "How much was revenue, in millions?", "12.5", None, DOCS_25, None),
        ("docmath_qa", "How much was revenue, in millions?", "12.5", None, NO_TWELVE, "template_number"),
        ("docmath_qa", "What was the Q2 ratio?", "1.25", None, DOCS_25, None),
        ("docmath_qa", "How many basis points was the margin?", "125", None, DOCS_25, None),
        ("doc_mc", "Which value was the revenue growth?", "A", MC_OPTIONS, DOCS_25, None),
        ("doc_mc", "<your question>", "A", MC_OPTIONS, DOCS_25, "template_answer"),
        # numbers in the template's prose are no examples: computed 20 and 1 are honest
        ("docmath_qa", "By how much did costs rise?", "20", None, DOCS_25, None),
        ("docmath_qa", "How much did costs rise per 20 units of the rise?", "1", None, DOCS_25, None),
        # a digit inside a token is not the question stating its answer
        ("docmath_qa", "What was revenue in Q2, in millions?", "2", None, DOCS_25, None),
        ("docmath_qa", "What is 2 plus the growth of nothing?", "2", None, DOCS_25, "answer_in_question"),
        # a computed general-QA number (the with-history prompt asks for one), against a made-up name
        ("doc_general_qa", "By how many units did costs rise across both reports?", "20", None, DOCS_25, None),
        ("doc_general_qa", "Which city reported the revenue?", "Paris", None, DOCS_25, "answer_not_in_docs"),
        # an imperative asks; a statement does not
        ("doc_general_qa", "Name the year revenue was 12.5 million.", "2019", None, DOCS_25, None),
        ("doc_general_qa", "The town grew quickly.", "2019", None, DOCS_25, "not_a_question"),
    ],
)
def test_a_guard_rejects_the_hack_and_passes_the_honest_proposal(task, question, answer, options, docs, expected):
    """Issue 25 item 6: each false positive the 20-iteration run met, tested both ways (the item-4 guards off:
    three of these honest proposals are look-ups, which `looked_up_answer` exists to reject)."""
    from spell.vocab import QUESTION_GUARDS

    on = frozenset(QUESTION_GUARDS) - {"repeated_question", "looked_up_answer", "one_char_reference"}
    why = question_guard(task, question, answer, options, docs, GuardSwitches(on))
    assert (why.split(":")[0].removeprefix("guard ") if why else None) == expected, why


HISTORY = [("In which year did the river flood?", "1991"), ("What was the town called?", "Varnholt")]


@pytest.mark.parametrize(
    ("task", "question", "answer", "docs", "expected"),
    [
        # a re-ask of the memory (the "1991" question of iterations 4, 15 and 19), as written and reworded
        ("doc_general_qa", "In which year did the river flood?", "1991", DOCS_25, "repeated_question"),
        ("doc_general_qa", "In which year did the river flood again?", "1991", DOCS_25, "repeated_question"),
        ("doc_general_qa", "In which year did the town's river flood the second time?", "2019", DOCS_25, None),
        ("doc_general_qa", "What was revenue in 2019, in millions?", "12.5", DOCS_25, None),
        # a DocMath number the documents state, asked as a look-up, against a calculation that lands on one
        ("docmath_qa", "How much was revenue in 2019, in millions?", "12.5", DOCS_25, "looked_up_answer"),
        ("docmath_qa", "How much did costs grow?", "20", ["Costs rose from 40 to 60; 20 staff."], None),
        ("docmath_qa", "How much were costs at the end?", "60", NO_TWELVE, "looked_up_answer"),
        ("docmath_qa", "How much were costs and revenue together, in millions?", "72.5", DOCS_25, None),
        # a one-character reference is inside most answers; two characters are an answer
        ("doc_general_qa", "Which quarter had the ratio?", "2", DOCS_25, "one_char_reference"),
        ("doc_general_qa", "Which quarter had the 1.25 ratio?", "Q2", DOCS_25, None),
    ],
)
def test_item_4_guards_reject_the_hack_and_pass_the_honest_proposal(task, question, answer, docs, expected):
    """Issue 25 item 4: holes the 20-iteration run found, each a guard tested both ways."""
    from spell.vocab import QUESTION_GUARDS

    why = question_guard(task, question, answer, None, docs, GuardSwitches(frozenset(QUESTION_GUARDS)), HISTORY)
    assert (why.split(":")[0].removeprefix("guard ") if why else None) == expected, why
    if expected:  # off (the paper presets), the proposal passes
        assert question_guard(task, question, answer, None, docs, GuardSwitches(), HISTORY) is None


@pytest.mark.parametrize(
    ("prediction", "listed"),
    [
        ("Paris or London", True),
        ("1912; 1914", True),
        ("Paris, London, Berlin", True),
        ("Paris, London and Berlin", True),
        ("Paris, France", False),
        ("1,000,000", False),
        ("the old town of Varnholt", False),
        ("Washington, D.C.", False),
        ("Tom Hanks, the actor who played the lead", False),
        ("1912 and 1914", True),  # two numbers: a substring rule credits either
        ("12, 15", True),
        ("$5 million and $6 million", True),
        ("3.5%, 4%", True),
        ("2 years and 3 months", False),  # one duration: the units differ
        ("Tom and Jerry", False),
        ("1,000 and more", False),
    ],
)
def test_multiple_candidates_guard(prediction, listed):
    text = f"The correct answer is {prediction}."
    why = response_guard(text, prediction, GuardSwitches(frozenset({"multiple_candidates"})))
    assert (why is not None) == listed, why
    assert response_guard(text, prediction, GuardSwitches()) is None


def test_strict_docmath_scores_slips_zero_in_training_and_says_so():
    from spell.stages.respond import response_rows

    ids = {"run": "r", "iteration": 1, "round": 1}
    q = {**ids, "question_id": "q1", "task": "docmath_qa", "answer": "3000000"}
    texts = [
        "Therefore, the answer is 3000.",
        "Therefore, the answer is -3000000.",
        "Therefore, the answer is 3000000.",
    ]
    ro = [{"completions": [{"text": t, "finish_reason": "stop", "token_ids": [1], "prompt_tokens": 3} for t in texts]}]
    official = response_rows([(q, "")], ro)
    assert [r["rule_score"] for r in official] == [1.0, 1.0, 1.0]  # the official rule forgives both slips
    strict = response_rows([(q, "")], ro, GuardSwitches(frozenset({"strict_docmath"})))
    assert [r["rule_score"] for r in strict] == [0.0, 0.0, 1.0]
    assert guard_counts(r["reason"] for r in strict)["strict_docmath"] == 2
    assert [r["status"] for r in strict] == ["ok", "ok", "ok"]  # parsed answers, still judged by the verifier
    assert decisive_label("docmath_qa", "3000", strict[0]["rule_score"], "3000000") == 0


def test_the_question_stage_reads_the_history_its_prompt_showed():
    from spell.data.corpus import load_corpus
    from spell.history import HistoryEntry, HistoryMemory
    from spell.sampling import TaskSampler
    from spell.stages.sample_docs import sample_prompts

    cfg = load_config(None, ["guards.repeated_question=true", "sampling.questions_per_round=1",
                             "data.task_weights={doc_general_qa: 1}"])  # fmt: skip
    corpus = load_corpus("builtin:smoke")
    cid = sorted(c for c, x in corpus.clusters.items() if x.task == "doc_general_qa")[0]
    memory = HistoryMemory()
    memory.add("doc_general_qa", cid, HistoryEntry("In which year did the river flood?", "1991", (0,)))
    sampler = TaskSampler({"doc_general_qa": [cid]}, cfg.data.task_weights, seed=0)
    (prompt,) = sample_prompts(corpus, sampler, memory, cfg, "r", 2, 1)
    assert prompt["history_questions"] == ["In which year did the river flood?"] and prompt["history_answers"] == [
        "1991"
    ]
    p, ro = _question_row('```json\n{"question": "In which year did the river flood?", "answer": "1991"}\n```')
    (row,) = question_rows([{**prompt, **{k: p[k] for k in ("doc_indices",)}}], [ro], cfg, lambda t: [1] * len(t))
    assert row["status"] == "rejected" and row["reason"].startswith("guard repeated_question")
