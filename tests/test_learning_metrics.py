import duckdb
import pytest

from storage.learning import learning_rows, paired_ci, slope, trend


def _con(rewards: list[tuple], calibration: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(
        'CREATE TABLE rewards (iteration INT, role VARCHAR, "case" VARCHAR, rule_score DOUBLE, reward DOUBLE, '
        "branch VARCHAR)"
    )
    con.executemany("INSERT INTO rewards VALUES (?, ?, ?, ?, ?, ?)", rewards)
    con.execute(
        "CREATE TABLE calibration (iteration INT, verified INT, yes_rate DOUBLE, decisive_wrong INT, "
        "decisive_right INT, decisive_agreement DOUBLE, branch VARCHAR, false_yes_rate DOUBLE DEFAULT 0, "
        "false_no_rate DOUBLE DEFAULT 0, collapsed BOOLEAN DEFAULT false)"
    )
    con.executemany(
        "INSERT INTO calibration (iteration, verified, yes_rate, decisive_wrong, decisive_right, "
        "decisive_agreement, branch) VALUES (?, ?, ?, ?, ?, ?, ?)",
        calibration,
    )
    return con


def test_learning_rows_per_iteration():
    cases = ("good", "bad_format", "rejected", "zero_variance", "skipped", "ungrounded")
    q = [(1, "questioner", c, None, None if c == "skipped" else 0.0, "") for c in cases]
    a = [(1, "responder", None, s, r, "") for s, r in ((1.0, 1.0), (0.0, 1.0), (0.0, 0.0), (0.0, 0.0))]
    replay = [(1, "questioner", "good", None, 1.0, "b1")]  # a replay branch never counts
    cal = [(1, 4, 0.5, 2, 0, 1.0, ""), (1, 6, 1.0, 1, 1, 0.5, "")]  # 3 decisive: 2 agree + 1 agree of 2
    (row,) = learning_rows(_con(q + a + replay, cal))
    # valid = parsed, guard-passed and grounded: a skipped proposal (invalid, truncated, prompt too long) is not
    assert row["questions"] == 6 and row["valid_share"] == pytest.approx(2 / 6)
    assert row["good_share"] == pytest.approx(1 / 6)
    assert row["guard_rejects"] == 1
    assert row["rule_accuracy"] == 0.25 and row["reward_accuracy"] == 0.5  # the verifier's YES shows here
    assert row["decisive"] == 4 and row["verifier_agreement"] == pytest.approx(0.75)
    assert row["verifier_yes_rate"] == pytest.approx(0.8)


def test_trend_ci_excludes_zero_only_for_a_real_rise():
    xs = list(range(1, 21))
    rising = [0.1 + 0.02 * x + (0.01 if x % 2 else -0.01) for x in xs]
    est, lo, hi = trend(xs, rising)
    assert est == pytest.approx(0.02 * 19, abs=0.01) and lo > 0
    flat = [0.3 + (0.1 if x % 3 == 0 else -0.05) for x in xs]
    _, lo, hi = trend(xs, flat)
    assert lo < 0 < hi
    assert trend([1, 2], [0.0, 1.0]) is None and slope([1, 1, 1], [0, 1, 2]) == 0.0


def test_trend_ci_allows_for_correlated_iterations():
    """Issue 25 item 7: a flat run whose noise drifts in runs of iterations (as a shared policy's does) reads as a
    trend far less often than when iterations are treated as independent. 40 seeded flat runs, AR(1) 0.8."""
    import random

    xs = list(range(1, 21))
    false_trends = 0
    for seed in range(40):
        rng, e, ys = random.Random(seed), 0.0, []
        for _ in xs:
            e = 0.8 * e + rng.gauss(0, 0.05)
            ys.append(0.3 + e)
        _, lo, hi = trend(xs, ys)
        false_trends += not lo < 0 < hi
    assert false_trends <= 8  # 14% measured on 200 runs; an independent-iterations bootstrap gave 30-42% here


def test_paired_ci_brackets_the_mean():
    diffs = [0.0] * 30 + [1.0] * 10
    lo, hi = paired_ci(diffs)
    assert lo < 0.25 < hi and lo > 0
