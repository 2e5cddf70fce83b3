"""Part A 'advantages': group z-scores, unbiased std, eps 1e-6, questioner per task or per batch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spell.advantages import group_zscore, grouped_zscore, questioner_advantages

rewards_st = st.lists(st.floats(-10, 10, allow_nan=False, allow_infinity=False), min_size=2, max_size=32)


@settings(max_examples=300, deadline=None)
@given(rewards_st)
def test_group_zscore_zero_mean_unit_std(rewards):
    adv = group_zscore(rewards)
    assert adv.shape == (len(rewards),)
    assert np.all(np.isfinite(adv))
    assert abs(adv.mean()) < 1e-6
    std = np.std(rewards, ddof=1)
    if std > 1e-3:
        assert adv.std(ddof=1) == pytest.approx(1.0, rel=1e-3)
    # Exact form: adv * (std + eps) == r - mean, so a (near) zero-variance group stays bounded.
    r = np.asarray(rewards)
    np.testing.assert_allclose(adv * (std + 1e-6), r - r.mean(), atol=1e-9)


def test_zero_variance_and_singletons_give_zero():
    assert np.all(group_zscore([1.0] * 8) == 0)
    assert np.all(group_zscore([0.3]) == 0)
    assert group_zscore([]).size == 0


def test_known_values():
    adv = group_zscore([1, 0, 0, 0])
    std = np.std([1, 0, 0, 0], ddof=1)
    assert adv[0] == pytest.approx(0.75 / (std + 1e-6))


def test_grouped_and_questioner_modes():
    r = [1.0, 0.0, -1.0, -0.5, 0.5, 0.5]
    tasks = ["a", "a", "b", "b", "b", "a"]
    per_task = questioner_advantages(r, tasks, "task")
    np.testing.assert_allclose(per_task[[0, 1, 5]], group_zscore([1.0, 0.0, 0.5]))
    np.testing.assert_allclose(per_task[[2, 3, 4]], group_zscore([-1.0, -0.5, 0.5]))
    np.testing.assert_allclose(questioner_advantages(r, tasks, "batch"), group_zscore(r))
    with pytest.raises(ValueError):
        grouped_zscore([1.0], ["a", "b"])
