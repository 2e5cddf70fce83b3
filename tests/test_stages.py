"""The stage functions over plain rows (spell.stages): what reaches the responder and the verifier, and the
rewards of every role in one round (spec Part A rows 'grounding filter', 'responder group', 'verifier',
'questioner reward', 'history admission')."""

import pytest

from spell.config import load_config
from spell.data.clusters import Cluster, Corpus
from spell.stages.respond import grounded_questions, responder_requests
from spell.stages.reward import Votes, reward_rows
from spell.stages.verify import verifier_requests

IDS = {"run": "r", "iteration": 1, "round": 1}


def _question(qid: str, status: str = "ok", answer: str = "Paris", task: str = "doc_general_qa") -> dict:
    return {**IDS, "question_id": qid, "task": task, "cluster_id": "c1", "status": status,
            "question": f"Where {qid}?", "answer": answer if status == "ok" else None,
            "responder_question": f"Where {qid}?" if status == "ok" else None}  # fmt: skip


def _responses(qid: str, rule: list[float], preds: list[str | None] | None = None) -> list[dict]:
    preds = preds or ["Paris" if r else "Rome" for r in rule]
    return [
        {**IDS, "response_id": f"{qid}-a{j}", "question_id": qid, "task": "doc_general_qa", "sample": j,
         "prediction": p, "rule_score": r}
        for j, (r, p) in enumerate(zip(rule, preds, strict=True))
    ]  # fmt: skip


def _verdicts(response_id: str, votes: list[int]) -> list[dict]:
    return [{**IDS, "verdict_id": f"{response_id}-v{k}", "response_id": response_id, "vote": v}
            for k, v in enumerate(votes)]  # fmt: skip


def _by(rows: list[dict], role: str) -> dict[str, dict]:
    return {r["sample_id"]: r for r in rows if r["role"] == role}


CFG = load_config(None, ["responder.group_size=4", "verifier.votes=4"])


def test_ungrounded_question_gets_minus_half_and_no_responder_rows():
    questions = [_question("q1"), _question("q2")]
    grounding = [{"question_id": "q1", "rule_score": 1.0}, {"question_id": "q2", "rule_score": 0.0}]
    responses = _responses("q2", [1.0, 0.0, 0.0, 0.0])
    rows = reward_rows(questions, grounding, responses, Votes.of([]), CFG)
    q = _by(rows, "questioner")
    assert (q["q1"]["case"], q["q1"]["reward"]) == ("ungrounded", -0.5) and q["q1"]["admitted"] is False
    assert {r["group_id"] for r in rows if r["role"] == "responder"} == {"q2"}
    assert q["q2"]["case"] == "good" and q["q2"]["reward"] == pytest.approx(0.325, abs=1e-3)  # 1 of 4


def test_question_whose_prompt_was_too_long_is_skipped_never_a_negative():
    """Part A 'responder group': a prompt over max_prompt_tokens is skipped and counted, no questioner penalty."""
    from spell.batch import QuestionerSample, select_training_batch

    questions = [_question("q1"), _question("q2")]
    grounding = [{"question_id": q, "rule_score": 0.0} for q in ("q1", "q2")]
    rows = reward_rows(questions, grounding, _responses("q2", [1.0, 0.0, 1.0, 0.0]), Votes.of([]), CFG)
    q = _by(rows, "questioner")
    assert q["q1"]["case"] == "skipped" and q["q1"]["reward"] is None and q["q1"]["group_mean"] is None
    import random

    from spell.batch import ResponderGroup

    samples = [QuestionerSample(r["sample_id"], r["task"], r["case"], r["reward"]) for r in q.values()]
    group = ResponderGroup("q2", "doc_general_qa", ("a", "b"), (1.0, 0.0))
    batch = select_training_batch(samples, [group], [], train_batch_size=1, rng=random.Random(0))
    assert "q1" not in {r.sample_id for r in batch.by_role("questioner")}


def test_verifier_off_leaves_the_rule_alone():
    """Ablation 'w/o verifier': stored votes are ignored, the rule check is the reward (whatever reward.combine)."""
    questions = [_question("q1")]
    responses = _responses("q1", [1.0, 0.0, 0.0, 0.0])
    verdicts = [v for r in responses for v in _verdicts(r["response_id"], [1, 1, 1, 1])]  # all YES
    grounding = [{"question_id": "q1", "rule_score": 0.0}]
    on = _by(reward_rows(questions, grounding, responses, Votes.of(verdicts), CFG), "responder")
    assert [r["reward"] for r in on.values()] == [1.0] * 4
    for combine in ("max", "verifier"):
        cfg = load_config(None, ["responder.group_size=4", "verifier.enabled=false", f"reward.combine={combine}"])
        off = reward_rows(questions, grounding, responses, Votes.of(verdicts), cfg)
        assert [r["reward"] for r in _by(off, "responder").values()] == [1.0, 0.0, 0.0, 0.0]


def test_admitted_flag_follows_the_admission_rule():
    questions = [_question("half"), _question("all")]
    grounding = [{"question_id": q, "rule_score": 0.0} for q in ("half", "all")]
    responses = _responses("half", [1.0, 1.0, 0.0, 0.0]) + _responses("all", [1.0] * 4)
    paper = _by(reward_rows(questions, grounding, responses, Votes.of([]), CFG), "questioner")
    assert paper["half"]["admitted"] is True and paper["all"]["admitted"] is False  # 0 < mean < 1
    anyc = load_config(None, ["responder.group_size=4", "history.admit=any_correct"])
    loose = _by(reward_rows(questions, grounding, responses, Votes.of([]), anyc), "questioner")
    assert loose["all"]["admitted"] is True  # the official code's 0.01 <= mean <= 1
    assert paper["all"]["case"] == "zero_variance" and paper["all"]["reward"] == 0.0


def test_grounding_with_two_samples_drops_only_when_both_are_right():
    """Part A 'grounding filter': with samples=k a question is ungrounded only if all k blind answers are right."""
    grounding = [
        {"question_id": "both", "rule_score": 1.0},
        {"question_id": "both", "rule_score": 1.0},
        {"question_id": "one", "rule_score": 1.0},
        {"question_id": "one", "rule_score": 0.0},
        {"question_id": "none", "rule_score": 0.0},
        {"question_id": "none", "rule_score": 0.0},
    ]
    assert grounded_questions(grounding) == {"both": False, "one": True, "none": True}


def test_responder_sees_the_whole_cluster_in_original_order():
    """Part A 'responder group': every document of the cluster (distractors the questioner never saw included),
    in corpus order; grounded and parsed questions only."""
    docs = ("Doc zero.", "Doc one.", "Doc two.", "Doc three.", "Doc four.", "Doc five.")
    corpus = Corpus({"c1": Cluster("c1", "doc_general_qa", docs)})
    questions = [_question("q1"), _question("q2"), _question("bad", status="bad_format")]
    reqs = responder_requests(questions, {"q1": True, "q2": False}, corpus, grounding_on=True)
    assert [q["question_id"] for q, _ in reqs] == ["q1"]
    prompt = reqs[0][1]
    assert prompt.index("Doc zero.") < prompt.index("Doc one.") < prompt.index("Doc five.")
    assert "\n".join(docs) in prompt and "Question: Where q1?" in prompt
    assert len(responder_requests(questions, {}, corpus, grounding_on=False)) == 2


def test_verifier_request_shows_question_parsed_prediction_and_parsed_reference():
    """Part A 'verifier': shown the question, the parsed prediction and the parsed reference, never the
    documents or the raw response; an unparsed answer is not verified."""
    questions = [_question("q1", answer="Paris, France")]
    responses = _responses("q1", [1.0, 0.0], preds=["paris", None])
    responses[0]["text"] = "long reasoning... The correct answer is paris"
    reqs = verifier_requests(responses, questions)
    assert [r["response_id"] for r, _ in reqs] == ["q1-a0"]
    prompt = reqs[0][1]
    assert "Problem: Where q1?" in prompt and "Answer 1: paris" in prompt and "Answer 2: Paris, France" in prompt
    assert "long reasoning" not in prompt and "<text>" not in prompt
