"""Part A rows 'dynamic sampling', 'questioner negatives', 'verifier samples per step'."""

import random

import numpy as np

from spell.batch import (
    QuestionerSample,
    ResponderGroup,
    VerifierGroup,
    select_training_batch,
    usable_groups,
)
from spell.stages.reward import usable_group_count


def _pool():
    qs, groups, vgs = [], [], []
    for i in range(12):
        task = ("doc_general_qa", "doc_mc", "docmath_qa")[i % 3]
        rewards = (1.0, 0.0, 1.0, 0.0) if i % 4 else (1.0, 1.0, 1.0, 1.0)  # every 4th is zero-variance
        case = "good" if i % 4 else "zero_variance"
        qs.append(QuestionerSample(f"q{i}", task, case, 0.8 if case == "good" else 0.0))
        groups.append(ResponderGroup(f"q{i}", task, tuple(f"q{i}r{j}" for j in range(4)), rewards))
        for j in range(4):
            vgs.append(
                VerifierGroup(
                    f"q{i}r{j}",
                    task,
                    tuple(f"q{i}r{j}v{k}" for k in range(4)),
                    (1.0, 1.0, 1.0, 0.0),
                    eligible=(i + j) % 2 == 0,
                )
            )
    for i in range(6):
        task = ("doc_general_qa", "doc_mc", "docmath_qa")[i % 3]
        qs.append(QuestionerSample(f"bad{i}", task, ("bad_format", "ungrounded")[i % 2], (-1.0, -0.5)[i % 2]))
    qs.append(QuestionerSample("skipped", "doc_mc", "skipped", None))
    return qs, groups, vgs


def test_zero_variance_groups_dropped_and_batch_size_respected():
    qs, groups, vgs = _pool()
    assert len(usable_groups(groups)) == 9  # the rule that stops the rounds at train_batch_size
    rows = [{"role": "responder", "group_id": g.question_id, "reward": r} for g in groups for r in g.rewards]
    assert usable_group_count(rows) == 9 and usable_group_count(rows, dynamic=False) == len(groups)  # one rule
    b = select_training_batch(qs, groups, vgs, train_batch_size=5, verifier_share=0.4, rng=random.Random(0))
    kept = {r.group_id for r in b.by_role("responder")}
    assert kept == {"q1", "q2", "q3", "q5", "q6"}  # first 5 non-zero-variance groups, collection order
    assert b.counts["responder"] == 20 and b.counts["responder_groups"] == 5
    without = select_training_batch(
        qs, groups, vgs, train_batch_size=5, rng=random.Random(0), dynamic=False, verifier_share=0
    )
    assert "q0" in {r.group_id for r in without.by_role("responder")}


def test_questioner_good_plus_negatives_per_task():
    qs, groups, vgs = _pool()
    b = select_training_batch(
        qs, groups, vgs, train_batch_size=9, negatives_ratio=1.0, verifier_share=0, rng=random.Random(0)
    )
    q = b.by_role("questioner")
    good = [r for r in q if r.reward > 0]
    neg = [r for r in q if r.reward <= 0]
    assert len(good) == 9
    # 3 good per task, and each task has exactly 3 negatives (1 zero-variance + 2 bad) to draw from
    assert len({r.sample_id for r in neg}) == 9
    for task in ("doc_general_qa", "doc_mc", "docmath_qa"):
        assert sum(r.task == task for r in neg) == 3
    assert "skipped" not in {r.sample_id for r in q}
    for task in ("doc_general_qa", "doc_mc", "docmath_qa"):
        adv = np.array([r.advantage for r in q if r.task == task])
        assert abs(adv.mean()) < 1e-6
    none = select_training_batch(
        qs, groups, vgs, train_batch_size=9, negatives_ratio=0.0, verifier_share=0, rng=random.Random(0)
    )
    assert all(r.reward > 0 for r in none.by_role("questioner"))


def test_verifier_groups_drawn_only_when_enough_eligible():
    qs, groups, vgs = _pool()
    n_eligible = sum(v.eligible for v in vgs)
    b = select_training_batch(qs, groups, vgs, train_batch_size=4, verifier_share=0.75, rng=random.Random(1))
    ver = b.by_role("verifier")
    assert len(ver) == 12 and len({r.group_id for r in ver}) == 3
    assert all(next(v for v in vgs if v.response_id == r.group_id).eligible for r in ver)
    too_many = select_training_batch(
        qs, groups, vgs, train_batch_size=4, verifier_share=(n_eligible + 1) / 4, rng=random.Random(1)
    )
    assert too_many.by_role("verifier") == []


def test_responder_advantages_are_group_zscores():
    qs, groups, vgs = _pool()
    b = select_training_batch(qs, groups, vgs, train_batch_size=3, verifier_share=0, rng=random.Random(0))
    for gid in {r.group_id for r in b.by_role("responder")}:
        adv = [r.advantage for r in b.by_role("responder") if r.group_id == gid]
        assert abs(sum(adv)) < 1e-9 and np.std(adv, ddof=1) > 0.99


def test_negative_shortfall_is_not_made_up_from_other_tasks():
    """Part A 'questioner negatives': per task, no carry-over (the official code carries shortfalls)."""
    qs = [QuestionerSample("g1", "doc_general_qa", "good", 1.0), QuestionerSample("g2", "doc_general_qa", "good", 1.0)]
    qs += [QuestionerSample(f"n{i}", "doc_mc", "bad_format", -1.0) for i in range(5)]
    qs += [QuestionerSample("ng", "doc_general_qa", "ungrounded", -0.5)]
    groups = [ResponderGroup(q.sample_id, q.task, ("a", "b"), (1.0, 0.0)) for q in qs[:2]]
    b = select_training_batch(qs, groups, [], train_batch_size=2, verifier_share=0, rng=random.Random(0))
    neg = [r.sample_id for r in b.by_role("questioner") if r.reward < 0]
    assert neg == ["ng"]  # general QA had 2 good but 1 negative; doc_mc had no good, so none of its negatives


def test_verifier_groups_follow_the_responder_groups_collected():
    """Part A 'verifier samples per step': in proportion to the groups actually kept, not the target size."""
    qs, groups, vgs = _pool()
    full = select_training_batch(qs, groups, vgs, train_batch_size=8, verifier_share=0.5, rng=random.Random(0))
    assert full.counts["responder_groups"] == 8 and len({r.group_id for r in full.by_role("verifier")}) == 4
    short = select_training_batch(qs, groups[:4], vgs, train_batch_size=8, verifier_share=0.5, rng=random.Random(0))
    assert short.counts["responder_groups"] == 3 and len({r.group_id for r in short.by_role("verifier")}) == 1


def test_format_floor_trains_the_questioner_without_good_cases():
    """questioner.format_floor (not in the paper): no proposal at the frontier still gives the questioner a
    signed signal, valid proposals (0) up and broken ones (-1) down; off (0) it is the paper's empty batch."""
    qs = [QuestionerSample(f"v{i}", "docmath_qa", "zero_variance", 0.0) for i in range(3)]
    qs += [QuestionerSample(f"b{i}", "docmath_qa", "bad_format", -1.0) for i in range(5)]
    qs += [QuestionerSample("r0", "docmath_qa", "rejected", -1.0), QuestionerSample("s", "docmath_qa", "skipped", None)]
    qs += [QuestionerSample(f"m{i}", "doc_mc", "bad_format", -1.0) for i in range(4)]  # one reward level only
    paper = select_training_batch(qs, [], [], train_batch_size=2, verifier_share=0, rng=random.Random(0))
    assert paper.by_role("questioner") == []
    b = select_training_batch(qs, [], [], train_batch_size=2, verifier_share=0, rng=random.Random(0), format_floor=4)
    rows = b.by_role("questioner")
    assert {r.task for r in rows} == {"docmath_qa"}  # doc_mc's proposals all share -1: nothing to learn
    assert sorted(r.reward for r in rows) == [-1.0, -1.0, 0.0, 0.0] and "s" not in {r.sample_id for r in rows}
    assert all((r.advantage > 0) == (r.reward == 0.0) for r in rows)
    assert abs(sum(r.advantage for r in rows)) < 1e-9


def test_format_floor_only_tops_up():
    """A task with frontier rows keeps them as the paper selects them; the floor only adds rows (it triggers
    here: one good row and its negative are fewer than the floor), in a group of their own, never with a larger
    advantage than a frontier row."""
    qs, groups, vgs = _pool()
    base = select_training_batch(qs, groups, vgs, train_batch_size=9, verifier_share=0, rng=random.Random(0))
    floor = select_training_batch(
        qs, groups, vgs, train_batch_size=9, verifier_share=0, rng=random.Random(0), format_floor=2
    )
    assert [r.sample_id for r in floor.by_role("questioner")] == [r.sample_id for r in base.by_role("questioner")]
    one = [
        QuestionerSample("g", "doc_mc", "good", 0.9),
        QuestionerSample("n", "doc_mc", "bad_format", -1.0),
        *(QuestionerSample(f"z{i}", "doc_mc", "zero_variance", 0.0) for i in range(3)),
        *(QuestionerSample(f"b{i}", "doc_mc", "bad_format", -1.0) for i in range(3)),
    ]
    group = [ResponderGroup("g", "doc_mc", ("g-a0", "g-a1"), (1.0, 0.0))]
    kw = {"train_batch_size": 1, "verifier_share": 0, "format_floor": 4}
    b = select_training_batch(one, group, [], rng=random.Random(0), **kw)
    rows = b.by_role("questioner")
    paper = [r for r in rows if r.source == "paper"]
    topped = [r for r in rows if r.source == "floor"]
    assert len(paper) == 2 and "g" in {r.sample_id for r in paper}  # the good row and one paper negative
    assert len(topped) == 2 and {r.group_id for r in topped} == {"floor:doc_mc"}
    frontier = min(abs(r.advantage) for r in paper if r.sample_id == "g")
    assert max(abs(r.advantage) for r in topped) <= frontier + 1e-9


def test_format_floor_pairs_a_valid_proposal_with_the_lowest_level_only():
    """Issue 25 item 1: the positive is parsed and grounded (zero variance), never ungrounded; the negative is the
    lowest level; a pool of {0, -0.5 x2, -1 x8} with floor 2 pairs 0 with -1 for every seed."""
    pool = [QuestionerSample("z", "docmath_qa", "zero_variance", 0.0)]
    pool += [QuestionerSample(f"u{i}", "docmath_qa", "ungrounded", -0.5) for i in range(2)]
    pool += [QuestionerSample(f"b{i}", "docmath_qa", "bad_format", -1.0) for i in range(8)]
    for seed in range(5):
        b = select_training_batch(pool, [], [], train_batch_size=1, verifier_share=0, rng=random.Random(seed),
                                  format_floor=2)  # fmt: skip
        assert sorted(r.reward for r in b.by_role("questioner")) == [-1.0, 0.0]
        assert {r.source for r in b.by_role("questioner")} == {"floor"}
    ungrounded_only = [q for q in pool if q.case != "zero_variance"]
    b = select_training_batch(ungrounded_only, [], [], train_batch_size=1, verifier_share=0, rng=random.Random(0),
                              format_floor=2)  # fmt: skip
    assert b.by_role("questioner") == []  # an ungrounded proposal is no positive


def test_format_floor_keeps_the_no_format_penalty_ablation():
    """negatives_ratio=0 (the paper's 'w/o format penalty'): the floor brings no negative back."""
    pool = [QuestionerSample("z", "docmath_qa", "zero_variance", 0.0)]
    pool += [QuestionerSample(f"b{i}", "docmath_qa", "bad_format", -1.0) for i in range(4)]
    b = select_training_batch(pool, [], [], train_batch_size=1, verifier_share=0, rng=random.Random(0),
                              format_floor=4, negatives_ratio=0.0)  # fmt: skip
    assert b.by_role("questioner") == []
