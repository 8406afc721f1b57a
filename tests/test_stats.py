"""The statistics module: intervals against SciPy, the decision rule by hand, colors, seed lists."""

from __future__ import annotations

import math
import typing

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.colors import to_rgb
from scipy import stats as scipy_stats

from ticketlab import plots, seeds, stats, verdict
from ticketlab.verdict import Claim, evaluate


def _scipy_interval(x, confidence=0.95):
    """SciPy's mean ± t · sem, the oracle for every interval here."""
    x = np.asarray(x, dtype=float)
    low, high = scipy_stats.t.interval(
        confidence, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x)
    )
    return x.mean(), low, high


SAMPLES = [
    [0.91, 0.93],
    [1.0, 2.0, 3.0],
    [0.971, 0.968, 0.975, 0.962, 0.980],
    list(np.random.default_rng(0).normal(2.0, 3.0, size=10)),
    list(np.random.default_rng(1).normal(-0.5, 0.01, size=30)),
]


# -- intervals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", SAMPLES, ids=lambda x: f"n={len(x)}")
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_t_interval_matches_scipy(x, confidence):
    mean, low, high = stats.t_interval(x, confidence)
    expected = _scipy_interval(x, confidence)
    assert (mean, low, high) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert all(isinstance(v, float) for v in (mean, low, high))


def test_t_interval_with_two_values_is_wide():
    # n = 2: one degree of freedom, t_{0.975, 1} = 12.706, sem = |a − b| / 2.
    mean, low, high = stats.t_interval([1.0, 3.0])
    assert mean == 2.0
    assert high - mean == pytest.approx(12.7062047 * 1.0, rel=1e-7)
    assert mean - low == pytest.approx(high - mean, rel=1e-12)


def test_t_interval_takes_series_and_generators_alike():
    x = SAMPLES[2]
    assert stats.t_interval(pd.Series(x)) == stats.t_interval(v for v in x) == stats.t_interval(x)


@pytest.mark.parametrize("values", [[], [0.7]])
def test_fewer_than_two_values_have_no_interval(values):
    for func in (stats.t_interval, stats.t_intervals, stats.t_errorbar):
        with pytest.raises(ValueError, match=f"at least 2 values, got {len(values)}"):
            func(values)


def test_t_interval_rejects_tables_and_bad_confidence():
    with pytest.raises(ValueError, match="one number per seed"):
        stats.t_interval(np.ones((3, 2)))
    with pytest.raises(ValueError, match="confidence"):
        stats.t_interval([1.0, 2.0], confidence=95)


def test_a_nan_value_makes_the_whole_interval_nan():
    assert all(math.isnan(v) for v in stats.t_interval([1.0, math.nan, 2.0]))


def test_t_intervals_works_along_the_last_axis_like_t_interval():
    values = np.random.default_rng(2).normal(size=(4, 3, 5))
    values[1, 2, 0] = math.nan
    mean, low, high = stats.t_intervals(values)
    assert mean.shape == low.shape == high.shape == (4, 3)
    for index in np.ndindex(4, 3):
        row = values[index]
        # exactly (==, NaN included) what the one-sample version gives: the same arithmetic
        got = (mean[index], low[index], high[index])
        np.testing.assert_array_equal(got, stats.t_interval(row))
        if not np.isnan(row).any():
            assert got == pytest.approx(_scipy_interval(row), rel=1e-9)
    assert np.isnan([mean[1, 2], low[1, 2], high[1, 2]]).all()


def test_t_half_width_matches_scipy_and_is_nan_for_one_value():
    std = np.array([0.5, 2.0, 1.0, 3.0])
    n = np.array([2, 3, 10, 1])
    half = stats.t_half_width(std, n)
    expected = scipy_stats.t.ppf(0.975, n[:3] - 1) * std[:3] / np.sqrt(n[:3])
    np.testing.assert_allclose(half[:3], expected, rtol=1e-9)
    assert math.isnan(half[3])
    # a Series in, a Series out (plots builds its bands from a pandas summary table)
    out = stats.t_half_width(pd.Series(std, index=list("abcd")), pd.Series(n))
    assert isinstance(out, pd.Series) and list(out.index) == list("abcd")
    np.testing.assert_array_equal(out.to_numpy(), half)
    # a scalar count applies to every standard deviation
    np.testing.assert_allclose(
        stats.t_half_width(std, 4), scipy_stats.t.ppf(0.975, 3) * std / 2, rtol=1e-9
    )
    with pytest.raises(ValueError, match="confidence"):
        stats.t_half_width(std, n, confidence=1.0)


def test_t_errorbar_is_the_interval_without_its_mean():
    x = pd.Series(SAMPLES[3])
    assert stats.t_errorbar(x) == stats.t_interval(x)[1:]


def test_seaborn_draws_the_t_interval_and_no_bar_for_a_single_value():
    # t_errorbar refuses one value; seaborn must never ask (it skips the bar itself).
    frame = pd.DataFrame({"x": ["a"] * 4 + ["b"], "y": [1.0, 2.0, 4.0, 7.0, 5.0]})
    fig, ax = plt.subplots()
    try:
        sns.pointplot(data=frame, x="x", y="y", errorbar=stats.t_errorbar, ax=ax)
        lines = [(line.get_xdata(), line.get_ydata()) for line in ax.lines]
        bars = [ys for xs, ys in lines if len(xs) == 2 and xs[0] == xs[1]]  # vertical segments
    finally:
        plt.close(fig)
    _, low, high = _scipy_interval([1.0, 2.0, 4.0, 7.0])
    assert len(bars) == 2  # one bar per point; "b"'s is all NaN
    assert sorted(bars[0]) == pytest.approx([low, high], rel=1e-9)
    assert np.isnan(bars[1]).all()


# -- the decision rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "low", "high", "expected"),
    [
        ("greater", 0.1, 0.3, "supported"),
        ("greater", -0.3, -0.1, "refuted"),
        ("greater", -0.1, 0.1, "inconclusive"),
        ("greater", 0.0, 0.2, "inconclusive"),  # touching the margin is not clearing it
        ("greater", -0.2, 0.0, "inconclusive"),
        ("less", -0.3, -0.1, "supported"),
        ("less", 0.1, 0.3, "refuted"),
        ("less", -0.1, 0.1, "inconclusive"),
        ("greater", math.nan, math.nan, "inconclusive"),
        ("less", math.nan, math.nan, "inconclusive"),
    ],
)
def test_outcome_by_hand(direction, low, high, expected):
    result = stats.outcome(direction, 0.0, low, high)
    assert result == expected and type(result) is str
    assert stats.outcomes(direction, 0.0, np.array([low]), np.array([high])).tolist() == [expected]


def test_outcomes_keep_the_shape_and_compare_with_the_margin():
    low = np.array([[0.6, 0.4], [0.1, 0.45]])
    high = np.array([[0.9, 0.45], [0.3, 0.7]])
    got = stats.outcomes("greater", 0.5, low, high)
    assert got.shape == (2, 2)
    assert got.tolist() == [["supported", "refuted"], ["refuted", "inconclusive"]]
    assert stats.outcomes("less", 0.5, low, high).tolist() == [
        ["refuted", "supported"],
        ["supported", "inconclusive"],
    ]


def test_outcome_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match='"greater" or "less"'):
        stats.outcome("above", 0.0, 1.0, 2.0)


# -- outcome names and colors ---------------------------------------------------------------------


def _verdict(ticket, reinit) -> verdict.Verdict:
    claim = Claim(
        name="c",
        statement="s",
        citation="a test",
        metric="acc",
        treatment={"kind": "ticket"},
        control={"kind": "reinit"},
    )
    rows = [(s, "ticket", a) for s, a in enumerate(ticket)]
    rows += [(s, "reinit", a) for s, a in enumerate(reinit)]
    return evaluate(claim, pd.DataFrame(rows, columns=["seed", "kind", "acc"]))


CASES = {  # per-seed ticket and reinit accuracies that reach each outcome
    "supported": ([0.9, 0.91, 0.92], [0.8, 0.81, 0.83]),
    "refuted": ([0.8, 0.81, 0.83], [0.9, 0.91, 0.92]),
    "inconclusive": ([0.9, 0.8, 0.85], [0.85, 0.9, 0.8]),
}


def test_every_outcome_a_verdict_reaches_has_one_color():
    verdicts = [_verdict(*arms) for arms in CASES.values()]
    assert [v.outcome for v in verdicts] == list(CASES)
    assert set(CASES) == set(typing.get_args(stats.Outcome)) == set(stats.OUTCOMES)
    assert set(stats.OUTCOME_COLORS) == set(CASES)
    assert len(set(stats.OUTCOME_COLORS.values())) == 3
    for v in verdicts:
        assert f"background:{stats.OUTCOME_COLORS[v.outcome]}" in v._repr_html_()


def test_outcome_colors_are_seaborns_colorblind_green_vermillion_grey():
    # the figures drew these palette entries before the colors moved here
    palette = sns.color_palette("colorblind")
    expected = {"supported": palette[2], "refuted": palette[3], "inconclusive": palette[7]}
    assert {k: to_rgb(v) for k, v in stats.OUTCOME_COLORS.items()} == expected


def test_outcomes_are_listed_supported_inconclusive_refuted():
    assert stats.OUTCOMES == ("supported", "inconclusive", "refuted")


def test_notebook_facing_names_are_the_stats_module_s():
    # notebook 07 imports t_quantile from verdict and reads seeds.OUTCOMES, plots.OUTCOME_COLORS
    assert verdict.t_quantile is stats.t_quantile
    assert seeds.OUTCOMES is stats.OUTCOMES
    assert plots.OUTCOME_COLORS is stats.OUTCOME_COLORS


# -- seed lists -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seeds_in", "expected"),
    [
        (3, [0, 1, 2]),
        (1, [0]),
        (np.int64(2), [0, 1]),
        ([4, 1, 7], [4, 1, 7]),
        ((0,), [0]),
        (range(2, 5), [2, 3, 4]),
        (np.array([5, 3]), [5, 3]),
        ([np.int32(9), 2], [9, 2]),
    ],
)
def test_seed_list_accepts_counts_and_collections(seeds_in, expected):
    out = stats.seed_list(seeds_in)
    assert out == expected
    assert all(type(s) is int for s in out)


@pytest.mark.parametrize(
    ("seeds_in", "message"),
    [
        (0, "count must be at least 1"),
        (-2, "count must be at least 1"),
        ([], "empty"),
        (range(0), "empty"),
        ([1, 2, 1, 3, 3], r"distinct, but \[1, 3\] appear more than once"),
        (True, "count >= 1 or a collection"),
        (2.0, "count >= 1 or a collection"),
        ([0, 1.5], r"ints, but \[1.5\]"),
        ([0, True], r"ints, but \[True\]"),
        ("01", r"ints, but \['0', '1'\]"),
    ],
)
def test_seed_list_rejects_what_is_not_a_set_of_seeds(seeds_in, message):
    with pytest.raises(ValueError, match=message):
        stats.seed_list(seeds_in)
