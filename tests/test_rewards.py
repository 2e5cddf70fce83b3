"""Rewards, spec Part A rows 'majority vote', 'responder reward', 'questioner reward', 'verifier reward',
'grounding filter' and 'history admission'."""

import pytest

from spell.rewards import (
    BAD_FORMAT,
    GOOD,
    SKIPPED,
    UNGROUNDED,
    ZERO_VARIANCE,
    accuracy_to_reward,
    history_admits,
    majority_vote,
    questioner_reward,
    responder_reward,
    verifier_agreement,
    verifier_group_eligible,
    verifier_rewards,
)


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0, 0.0), (1, 0.080), (2, 0.325), (3, 0.755), (4, 1.0), (5, 0.755), (6, 0.325), (7, 0.080), (8, 0.0)],
)
def test_questioner_reward_paper_numbers(k, expected):
    """Part A 'questioner reward': 0.080 / 0.325 / 0.755 / 1.0 / 0 for 1-7 / 2-6 / 3-5 / 4 / 0-8 correct of 8."""
    out = questioner_reward("ok", True, [1.0] * k + [0.0] * (8 - k))
    assert out.reward == pytest.approx(expected, abs=5e-4)
    assert out.case == (ZERO_VARIANCE if k in (0, 8) else GOOD)


def test_questioner_reward_penalties_and_skips():
    """Part A 'questioner reward' (-1 unparsable) and 'grounding filter' (-0.5 ungrounded)."""
    assert questioner_reward("bad_format", None, None).reward == -1.0
    assert questioner_reward("bad_format", None, None).case == BAD_FORMAT
    ung = questioner_reward("ok", False, None)
    assert (ung.case, ung.reward) == (UNGROUNDED, -0.5)
    for status in ("invalid", "truncated"):
        assert questioner_reward(status, None, None) == questioner_reward(status, True, [1, 0])
        assert questioner_reward(status, None, None).case == SKIPPED
    assert questioner_reward("ok", True, []).reward is None  # responder prompt too long: skipped


def test_questioner_reward_variants_and_sigma():
    assert accuracy_to_reward(0.25, "rzero") == pytest.approx(0.5)
    assert accuracy_to_reward(0.25, "reverse") == pytest.approx(0.75)
    assert accuracy_to_reward(0.25, "gaussian", sigma=0.5 / 6) < accuracy_to_reward(0.25, "gaussian")
    assert questioner_reward("ok", True, [1, 1, 1, 0], kind="reverse").reward == pytest.approx(0.25)
    with pytest.raises(ValueError):
        accuracy_to_reward(0.5, "linear")


@pytest.mark.parametrize(
    ("votes", "maj"),
    [
        ([1] * 5 + [0] * 3, 1),
        ([0] * 5 + [1] * 3, 0),
        ([1] * 4 + [0] * 4, None),  # tie
        ([1] * 4 + [-1] * 4, None),  # too many unparsable
        ([1] * 5 + [-1] * 3, 1),
        ([], None),
    ],
)
def test_majority_vote_strict(votes, maj):
    """Part A 'majority vote': 1 if YES > 4, 0 if NO > 4 of 8; otherwise no verdict."""
    assert majority_vote(votes) == maj


def test_responder_reward_combinations():
    """Part A 'responder reward': max(rule, majority); the rule alone decides with no verdict."""
    assert responder_reward(0.0, 1) == 1.0
    assert responder_reward(1.0, 0) == 1.0
    assert responder_reward(0.0, None) == 0.0
    assert responder_reward(0.0, 1, "rule") == 0.0
    assert responder_reward(1.0, 0, "verifier") == 0.0
    assert responder_reward(1.0, None, "verifier") == 0.0  # Part A 'majority vote': a tie counts 0 under verifier
    assert responder_reward(1.0, majority_vote([1, 1, 0, 0]), "verifier") == 0.0
    assert responder_reward(1.0, majority_vote([1, 1, 0, 0]), "max") == 1.0


def test_verifier_rewards_and_eligibility():
    """Part A 'verifier reward': 1 agree / 0 disagree / -1 unparsable; trained only if 0.51<=a<=0.99 and
    the majority equals the rule check."""
    votes = [1, 1, 1, 1, 1, 0, 0, -1]
    maj = majority_vote(votes)
    assert maj == 1
    assert verifier_rewards(votes, maj) == [1, 1, 1, 1, 1, 0, 0, -1]
    assert verifier_agreement(votes, maj) == pytest.approx(5 / 7)
    assert verifier_group_eligible(votes, maj, rule=1.0)
    assert not verifier_group_eligible(votes, maj, rule=0.0)
    assert verifier_group_eligible(votes, maj, rule=0.0, label="maj")
    assert not verifier_group_eligible([1] * 8, 1, rule=1.0)  # unanimous: a = 1 > 0.99
    assert not verifier_group_eligible([1] * 4 + [0] * 4, None, rule=1.0)  # no majority
    assert verifier_rewards([1, 0, -1], None) == [0.0, 0.0, -1.0]


def test_history_admission_rules():
    """Part A 'history admission': paper 0 < mean < 1; official any_correct 0.01 <= mean <= 1."""
    assert history_admits(0.5) and not history_admits(1.0) and not history_admits(0.0)
    assert history_admits(1.0, "any_correct") and not history_admits(0.0, "any_correct")
