"""Reward-hacking guards and the verifier collapse guard (spell.guards, spell.calibration): each planted hack
is rejected with a recorded reason, honest samples pass, and every switch off is the paper's behaviour."""

import pytest

from spell.calibration import Calibration, decisive_label, verifier_calibration
from spell.config import ConfigError, load_config
from spell.guards import GuardSwitches, guard_counts, question_guard, response_guard
from spell.stages.question import question_rows
from spell.stages.respond import response_rows
from spell.stages.reward import Votes, reward_rows
from spell.vocab import GUARDS

DOCS = [
    "Aleppo is a city in northern Syria. Its citadel was built in 1230.",
    "Revenue grew from 1,200 to 1,500 million dollars in 2019.",
]
ALL = GuardSwitches(frozenset(GUARDS))


def _guard(task, question, answer, options=None, docs=DOCS, switches=ALL):
    return question_guard(task, question, answer, options, docs, switches)


@pytest.mark.parametrize(
    ("task", "question", "answer", "options", "guard"),
    [
        ("docmath_qa", "How much did revenue grow in percent?", "12.5", None, "template_number"),  # copied example
        ("doc_general_qa", "Which city has a citadel?", "<the short, exact answer>", None, "template_answer"),
        ("doc_general_qa", "Aleppo is a city in northern Syria.", "Aleppo", None, "not_a_question"),
        ("doc_general_qa", "Aleppo is a city in northern Syria?", "Syria", None, "not_a_question"),
        ("doc_general_qa", "What Aleppo is a city in northern Syria?", "Syria", None, "not_a_question"),
        (
            "doc_general_qa",
            "Which country is the city with the 1230 citadel in?",
            "Lebanon",
            None,
            "answer_not_in_docs",
        ),
        ("doc_mc", "Which city?", "B", {"A": "Aleppo", "B": "Aleppo", "C": "Homs", "D": "Hama"}, "mc_options"),
        ("doc_mc", "Which city?", "B", {"A": "Aleppo", "B": "", "C": "Homs", "D": "Hama"}, "mc_options"),
        ("doc_general_qa", "Is Aleppo in northern Syria or in Lebanon?", "northern Syria", None, "answer_in_question"),
        ("docmath_qa", "What is 1,500 minus 1,200, i.e. 300?", "300", None, "answer_in_question"),
        (
            "doc_mc",
            "Which city, built around the citadel of Aleppo, is meant?",
            "A",
            {"A": "citadel of Aleppo", "B": "Homs", "C": "Hama", "D": "Idlib"},
            "answer_in_question",
        ),
    ],
)
def test_each_planted_hack_is_rejected_by_its_guard(task, question, answer, options, guard):
    why = _guard(task, question, answer, options)
    assert why is not None and why.startswith(f"guard {guard}:"), why
    assert _guard(task, question, answer, options, switches=GuardSwitches()) is None  # off: the paper's parser


def test_template_number_only_when_no_document_has_it():
    q = "What is the revenue growth in millions of dollars?"  # 12.5: the MATH_FORMAT JSON example's answer
    assert _guard("docmath_qa", q, "12.5", switches=GuardSwitches(frozenset({"template_number"}))) is not None
    docs = [*DOCS, "Costs were 12.5 million dollars."]
    assert _guard("docmath_qa", q, "12.5", docs=docs, switches=GuardSwitches(frozenset({"template_number"}))) is None


@pytest.mark.parametrize(
    ("task", "question", "answer", "options"),
    [
        ("doc_general_qa", "In which country is the city whose citadel was built in 1230?", "Syria", None),
        ("docmath_qa", "By what percentage did revenue grow from the first to the second figure?", "25", None),
        ("doc_mc", "Where is the citadel?", "C", {"A": "Homs", "B": "Hama", "C": "Aleppo", "D": "Idlib"}),
    ],
)
def test_honest_proposals_pass_every_guard(task, question, answer, options):
    assert _guard(task, question, answer, options) is None


def test_placeholder_answer_is_recorded_not_verified():
    assert response_guard("The correct answer is (insert answer here).", None, ALL) is not None
    assert response_guard("The correct answer is Syria.", "Syria", ALL) is None
    assert response_guard("The correct answer is (insert answer here).", None, GuardSwitches()) is None
    q = {"run": "r", "iteration": 1, "round": 1, "question_id": "q1", "task": "doc_mc", "answer": "A"}
    ro = {"prompt_ids": [1], "completions": [
        {"text": t, "token_ids": [2], "finish_reason": "stop", "prompt_tokens": 1}
        for t in ("The correct answer is (insert answer here).", "The correct answer is (A).")
    ]}  # fmt: skip
    rows = response_rows([(q, "")], [ro], ALL)
    assert [(r["status"], r["prediction"], r["rule_score"]) for r in rows] == [
        ("rejected", None, 0.0),
        ("ok", "A", 1.0),
    ]
    assert guard_counts(r["reason"] for r in rows)["placeholder_answer"] == 1


def _question_row(text: str, task: str = "docmath_qa") -> tuple[dict, dict]:
    p = {
        "run": "r",
        "iteration": 1,
        "round": 1,
        "prompt_id": "q1",
        "task": task,
        "cluster_id": "c",
        "doc_indices": [0, 1],
    }
    ro = {
        "prompt_ids": [1],
        "completions": [{"text": text, "token_ids": [2], "finish_reason": "stop", "prompt_tokens": 1}],
    }
    return p, ro


def test_question_rows_record_a_rejection_and_the_reward_penalises_it():
    cfg = load_config(None, ["guards.template_number=true", "guards.rejected_reward=-0.75"])
    p, ro = _question_row('```json\n{"question": "How much did revenue grow in percent?", "answer": 12.5}\n```')
    (row,) = question_rows([p], [ro], cfg, lambda ss: [len(s.split()) for s in ss], lambda _: DOCS)
    assert row["status"] == "rejected" and row["reason"].startswith("guard template_number:")
    assert row["responder_question"] is None  # never reaches the responder
    (reward,) = [r for r in reward_rows([row], [], [], Votes.of([]), cfg) if r["role"] == "questioner"]
    assert (reward["case"], reward["reward"]) == ("rejected", -0.75)
    off = question_rows([p], [ro], load_config(None, []), lambda ss: [len(s.split()) for s in ss], lambda _: DOCS)
    assert off[0]["status"] == "ok" and off[0]["answer"] == "12.5"  # the paper's behaviour


def test_decisive_labels():
    assert decisive_label("doc_mc", "B", 0.0) == 0 and decisive_label("docmath_qa", "3", 1.0) == 1
    assert decisive_label("doc_general_qa", "Paris", 1.0) == 1
    assert decisive_label("doc_general_qa", "the capital", 0.0) is None  # may be a paraphrase
    assert decisive_label("doc_mc", None, 0.0) is None


def test_all_yes_verifier_collapses_a_calibrated_one_does_not():
    wrong = [("doc_mc", "B", 0.0)] * 4 + [("docmath_qa", "7", 0.0)] * 2
    right = [("doc_mc", "A", 1.0)] * 3
    yes = verifier_calibration([(*s, 1) for s in wrong + right], 0.5, 3)
    assert yes.collapsed and yes.yes_rate == 1.0 and yes.false_yes_rate == 1.0 and yes.decisive_wrong == 6
    good = verifier_calibration([(*s, 0) for s in wrong] + [(*s, 1) for s in right], 0.5, 3)
    assert not good.collapsed and good.decisive_agreement == 1.0 and good.false_no_rate == 0.0
    few = verifier_calibration([(*s, 1) for s in wrong[:2]], 0.5, 3)
    assert not few.collapsed  # too few decisive samples to judge
    assert not verifier_calibration([(*s, 1) for s in wrong], 0.5, 3, guard=False).collapsed


def test_collapse_falls_back_to_the_rule_and_labels_verifier_votes_by_it():
    cfg = load_config(None, ["responder.group_size=4", "verifier.votes=3", "guards.verifier_collapse=true"])
    ids = {"run": "r", "iteration": 1, "round": 1}
    q = {**ids, "question_id": "q1", "task": "doc_mc", "cluster_id": "c", "status": "ok", "answer": "A"}
    preds = ["A", "B", "C", "D"]
    responses = [
        {**ids, "response_id": f"q1-a{j}", "question_id": "q1", "task": "doc_mc", "prediction": p,
         "rule_score": float(p == "A")}
        for j, p in enumerate(preds)
    ]  # fmt: skip
    votes = {"q1-a0": [1, 1, 1], "q1-a1": [1, 1, 0], "q1-a2": [1, 1, 1], "q1-a3": [1, 1, 1]}
    verdicts = [
        {**ids, "verdict_id": f"{rid}-v{k}", "response_id": rid, "vote": v}
        for rid, vs in votes.items()
        for k, v in enumerate(vs)
    ]
    from spell.stages.reward import round_calibration

    cal = round_calibration(responses, Votes.of(verdicts), cfg)
    assert cal.collapsed and cal.false_yes_rate == 1.0
    rows = reward_rows([q], [], responses, Votes.of(verdicts), cfg, cal)
    resp = {r["sample_id"]: r for r in rows if r["role"] == "responder"}
    assert [resp[f"q1-a{j}"]["reward"] for j in range(4)] == [1.0, 0.0, 0.0, 0.0]  # the rule, not the YES bias
    assert {r["label_source"] for r in rows if r["role"] != "questioner"} == {"rule"}
    ver = {r["sample_id"]: r for r in rows if r["role"] == "verifier"}
    assert [ver[f"q1-a1-v{k}"]["reward"] for k in range(3)] == [0.0, 0.0, 1.0]  # the NO vote was right
    assert ver["q1-a1-v0"]["eligible"] and not ver["q1-a2-v0"]["eligible"]  # unanimous: nothing to learn
    plain = reward_rows([q], [], responses, Votes.of(verdicts), cfg, None)  # no collapse: Eq. 6's max(rule, verdict)
    assert [r["reward"] for r in plain if r["role"] == "responder"] == [1.0, 1.0, 1.0, 1.0]


def test_under_a_collapse_only_parsable_votes_make_a_group_eligible():
    """Issue 25 item 2: on a rule-wrong answer, votes [YES, YES, unparsable] hold no NO: the -1 of the
    unparsable vote would otherwise give the wrong YES votes a positive advantage."""
    cfg = load_config(None, ["responder.group_size=2", "verifier.votes=3", "guards.verifier_collapse=true"])
    ids = {"run": "r", "iteration": 1, "round": 1}
    q = {**ids, "question_id": "q1", "task": "doc_mc", "cluster_id": "c", "status": "ok", "answer": "A"}
    responses = [
        {**ids, "response_id": f"q1-a{j}", "question_id": "q1", "task": "doc_mc", "prediction": "B", "rule_score": 0.0}
        for j in range(2)
    ]
    votes = {"q1-a0": [1, 1, -1], "q1-a1": [1, 0, -1]}
    verdicts = [
        {**ids, "verdict_id": f"{rid}-v{k}", "response_id": rid, "vote": v}
        for rid, vs in votes.items()
        for k, v in enumerate(vs)
    ]
    collapsed = Calibration(collapsed=True)
    ver = {r["sample_id"]: r for r in reward_rows([q], [], responses, Votes.of(verdicts), cfg, collapsed)
           if r["role"] == "verifier"}  # fmt: skip
    assert not ver["q1-a0-v0"]["eligible"]  # only YES among the parsable votes: nothing to learn
    assert ver["q1-a1-v0"]["eligible"]  # a YES and a NO: the rule's label tells them apart


def test_format_only_control_rewards_well_formed_outputs_only():
    cfg = load_config(None, ["responder.group_size=2", "verifier.votes=2", "reward.format_only=true"])
    ids = {"run": "r", "iteration": 1, "round": 1}
    q = {**ids, "question_id": "q1", "task": "doc_mc", "cluster_id": "c", "status": "ok", "answer": "A"}
    bad = {**ids, "question_id": "q2", "task": "doc_mc", "cluster_id": "c", "status": "bad_format", "answer": None}
    responses = [
        {**ids, "response_id": "q1-a0", "question_id": "q1", "task": "doc_mc", "prediction": "B", "rule_score": 0.0,
         "status": "ok"},
        {**ids, "response_id": "q1-a1", "question_id": "q1", "task": "doc_mc", "prediction": None, "rule_score": 0.0,
         "status": "unparsed"},
    ]  # fmt: skip
    verdicts = [
        {**ids, "verdict_id": "q1-a0-v0", "response_id": "q1-a0", "vote": 1},
        {**ids, "verdict_id": "q1-a0-v1", "response_id": "q1-a0", "vote": -1},
    ]
    rows = {r["sample_id"]: r for r in reward_rows([q, bad], [], responses, Votes.of(verdicts), cfg)}
    # a wrong but well-formed answer earns the format reward; correctness plays no part
    assert (rows["q1-a0"]["reward"], rows["q1-a1"]["reward"]) == (1.0, 0.0)
    assert (rows["q1-a0-v0"]["reward"], rows["q1-a0-v1"]["reward"]) == (1.0, 0.0)  # a readable vote, any side
    assert rows["q1"]["reward"] == 1.0 and rows["q2"]["reward"] == cfg.questioner.bad_format_reward
    assert {r["label_source"] for r in rows.values()} == {"format"}


def test_random_reward_control_is_a_seeded_coin_for_answers_only():
    from spell.stages.reward import coin

    ids = {"run": "r", "iteration": 1, "round": 1}
    q = {**ids, "question_id": "q1", "task": "doc_general_qa", "cluster_id": "c", "status": "ok", "answer": "Paris"}
    responses = [
        {**ids, "response_id": f"q1-a{k}", "question_id": "q1", "task": "doc_general_qa", "prediction": "Paris",
         "rule_score": 1.0, "status": "ok"}
        for k in range(64)
    ]  # fmt: skip
    base = ["responder.group_size=64", "verifier.enabled=false"]
    rows = reward_rows([q], [], responses, Votes.of([]), load_config(None, [*base, "reward.random_reward=true"]))
    coins = [r["reward"] for r in rows if r["role"] == "responder"]
    assert set(coins) == {0.0, 1.0} and 16 < sum(coins) < 48  # every answer right, yet the reward is a coin
    again = reward_rows([q], [], responses, Votes.of([]), load_config(None, [*base, "reward.random_reward=true"]))
    assert coins == [r["reward"] for r in again if r["role"] == "responder"]  # a replay draws the same coins
    assert coin(0, "q1-a0") == coin(0, "q1-a0") and [coin(s, "q1-a0") for s in range(16)].count(1.0) not in (0, 16)
    plain = reward_rows([q], [], responses, Votes.of([]), load_config(None, base))
    assert [r["reward"] for r in plain if r["role"] == "responder"] == [1.0] * 64
    with pytest.raises(ConfigError, match="two controls"):
        load_config(None, ["reward.format_only=true", "reward.random_reward=true"])


def test_question_word_opening_is_part_of_the_prefill():
    from spell.roles import prompts

    assert prompts.prefill_questioner("doc_mc") == prompts.PREFILL_QUESTIONER
    assert prompts.prefill_questioner("docmath_qa", "question_word").endswith('{"question": "How much')
    with pytest.raises(ValueError, match="questioner_opening"):
        load_config(None, ["rollout.questioner_opening=what"])


def test_question_rows_count_every_answer_in_one_call():
    """The questioner's answer lengths are counted in one actor round trip per round, with the same statuses
    a per-proposal count gives (an answer over questioner.max_answer_tokens is invalid)."""
    cfg = load_config(None, ["questioner.max_answer_tokens=3"])
    answers = ["Paris", "the old town of Varnholt", "Paris", "1932"]
    rows = []
    for i, a in enumerate(answers):
        p, ro = _question_row(f'```json\n{{"question": "What is it?", "answer": "{a}"}}\n```', "doc_general_qa")
        rows.append(({**p, "prompt_id": f"q{i}"}, ro))
    calls: list[list[str]] = []

    def count(texts: list[str]) -> list[int]:
        calls.append(list(texts))
        return [len(s.split()) for s in texts]

    out = question_rows([p for p, _ in rows], [ro for _, ro in rows], cfg, count, lambda _: DOCS)
    assert calls == [["Paris", "the old town of Varnholt", "1932"]]
    assert [r["status"] for r in out] == ["ok", "invalid", "ok", "ok"]


def test_general_qa_numbers_and_years_are_decisive_negatives():
    """Issue 25 item 5: a general-QA year or count that differs from the reference is wrong, with no paraphrase
    possible; other misses stay undecided."""
    assert decisive_label("doc_general_qa", "1992", 0.0, "1991") == 0
    assert decisive_label("doc_general_qa", "35", 0.0, "35.0") is None  # the same number: the rule missed it
    assert decisive_label("doc_general_qa", "the capital", 0.0, "Paris") is None
    assert decisive_label("doc_general_qa", "1992", 0.0) is None  # no reference: nothing to compare


def test_an_always_yes_verifier_is_caught_on_general_qa_alone():
    """Before, a general-QA-only preset never gave the collapse guard a decisive negative."""
    samples = [("doc_general_qa", str(1990 + i), 0.0, 1, "1989") for i in range(4)]
    assert verifier_calibration(samples, 0.5, 3).collapsed
    assert not verifier_calibration([s[:4] for s in samples], 0.5, 3).collapsed  # without references: blind


def test_the_collapse_window_pools_rounds_too_small_to_judge_alone():
    """Issue 25 item 5: rounds of 2 decisive wrong answers each (under collapse_min_decisive 3) are never judged
    alone; pooled over a window of 3 rounds the always-YES verifier is caught. The earlier rounds come back from
    their stored rows."""
    from spell.calibration import from_row

    round_ = [("doc_mc", "B", 0.0, 1), ("docmath_qa", "7", 0.0, 1)]
    alone = verifier_calibration(round_, 0.5, 3)
    assert not alone.collapsed and alone.window_rounds == 1
    stored = [from_row(alone.row({"run": "r", "iteration": 1, "round": k})) for k in (1, 2)]
    pooled = verifier_calibration(round_, 0.5, 3, earlier=stored)
    assert pooled.collapsed and pooled.window_rounds == 3 and pooled.window_decisive_wrong == 6
    assert pooled.decisive_wrong == 2  # the round's own numbers stay its own
    good = verifier_calibration([(*s[:3], 0) for s in round_], 0.5, 3)  # NO on both wrong answers
    earlier_good = [from_row(good.row({"run": "r", "iteration": 1, "round": k})) for k in (1, 2)]
    assert not verifier_calibration(round_, 0.5, 3, earlier=earlier_good).collapsed  # 2 YES of 6: calibrated
