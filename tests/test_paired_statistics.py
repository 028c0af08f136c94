"""Paired per-task comparisons: bootstrap intervals, the sign test and the verdicts."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from metaprune.paired_statistics import PairedComparison, SignTest, bootstrap_mean_ci, compare_paired, sign_test


def test_two_tasks_give_the_exact_bootstrap_interval():
    # resampled means of [0, 1] are 0, 0.5, 1 with chances 1/4, 1/2, 1/4: the 95% interval is [0, 1]
    assert bootstrap_mean_ci([0.0, 1.0], random_state=0) == (0.0, 1.0)
    # at 40% coverage the 30% and 70% quantiles both fall on 0.5
    assert bootstrap_mean_ci([0.0, 1.0], confidence=0.4, random_state=0) == (0.5, 0.5)


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=12), st.integers(0, 2**32 - 1))
def test_the_interval_holds_the_mean_lies_within_the_data_and_repeats_with_its_seed(d, seed):
    low, high = bootstrap_mean_ci(d, n_resamples=500, random_state=seed)
    assert min(d) - 1e-12 <= low <= high <= max(d) + 1e-12
    assert bootstrap_mean_ci(d, n_resamples=500, random_state=seed) == (low, high)
    shifted = bootstrap_mean_ci(np.asarray(d) + 0.5, n_resamples=500, random_state=seed)
    np.testing.assert_allclose(shifted, (low + 0.5, high + 0.5), atol=1e-12)


def test_the_95_percent_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        d = rng.normal(0.03, 0.05, size=30)
        low, high = bootstrap_mean_ci(d, n_resamples=2000, random_state=rng)
        hits += low <= 0.03 <= high
    assert 0.90 <= hits / 400 <= 0.99  # percentile intervals under-cover slightly at n = 30


def test_sign_test_counts_and_exact_p_values():
    assert sign_test([0.1] * 8) == SignTest(wins=8, ties=0, losses=0, p_value=2 / 2**8)
    assert sign_test([1, 1, 0, -1]) == SignTest(wins=2, ties=1, losses=1, p_value=1.0)
    assert sign_test([0.0, 0.0]).p_value == 1.0
    # 9 of 10: P(X >= 9) + P(X <= 1) = 2 * 11 / 1024
    assert sign_test([1] * 9 + [-1]).p_value == pytest.approx(22 / 1024)


def test_mappings_are_paired_on_shared_tasks_whatever_their_order():
    a = {"t1": 0.7, "t2": 0.6, "t3": 0.9, "only_a": 0.0}
    b = {"t3": 0.8, "t1": 0.5, "t2": 0.65}
    c = compare_paired(a, b)
    assert c.tasks == ("t1", "t2", "t3") and c.n == 3
    assert c.mean_a == pytest.approx(2.2 / 3) and c.mean_b == pytest.approx(1.95 / 3)
    assert c.mean_difference == pytest.approx((0.2 - 0.05 + 0.1) / 3)
    assert (c.sign.wins, c.sign.ties, c.sign.losses) == (2, 0, 1)
    assert compare_paired(dict(reversed(list(a.items()))), b) == c
    assert compare_paired([0.7, 0.6, 0.9], [0.5, 0.65, 0.8]).mean_difference == pytest.approx(c.mean_difference)


def _comparison(low, high):
    return PairedComparison(tasks=("a", "b"), mean_a=0, mean_b=0, mean_difference=(low + high) / 2, ci_low=low,
                            ci_high=high, confidence=0.95, sign=SignTest(1, 0, 1, 1.0))


@pytest.mark.parametrize("low, high, margin, expected", [
    (0.01, 0.08, 0.0, "holds"), (-0.01, 0.08, 0.0, "undecided"), (-0.09, -0.02, 0.0, "fails"),
    (0.06, 0.09, 0.05, "holds"), (0.01, 0.09, 0.05, "undecided"), (0.01, 0.04, 0.05, "fails")])
def test_verdict_of_an_at_least_claim(low, high, margin, expected):
    assert _comparison(low, high).verdict(margin) == expected


@pytest.mark.parametrize("low, high, expected", [
    (-0.01, 0.015, "holds"), (-0.03, 0.01, "undecided"), (-0.09, -0.03, "fails"), (0.03, 0.05, "fails")])
def test_verdict_of_a_within_claim(low, high, expected):
    assert _comparison(low, high).verdict(0.02, within=True) == expected


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 tasks"):
        bootstrap_mean_ci([0.1])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci([0.1, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        sign_test(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([0.1, 0.2], confidence=95)
    with pytest.raises(ValueError, match="share 1 task"):
        compare_paired({"a": 1.0, "b": 0.0}, {"a": 0.5})
    with pytest.raises(ValueError, match="equal length"):
        compare_paired([1.0, 2.0], [1.0])
    with pytest.raises(TypeError, match="one of each"):
        compare_paired({"a": 1.0}, [1.0])
    with pytest.raises(ValueError, match="positive"):
        _comparison(0, 0).verdict(0.0, within=True)
