"""Seed statistics: crafted tables with known answers, the verdict rule as oracle, determinism."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ticketlab import seeds
from ticketlab.experiments import xor
from ticketlab.verdict import Claim, evaluate

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}  # printed t tables, two-sided 95%


def _claim(**overrides) -> Claim:
    fields = dict(
        name="tickets beat reinit",
        statement="Tickets are more accurate than reinitialized networks.",
        citation="a test",
        metric="test_acc",
        treatment={"kind": "ticket"},
        control={"kind": "reinit"},
        direction="greater",
        margin=0.0,
        min_seeds=3,
    )
    fields.update(overrides)
    return Claim(**fields)


def _paired(differences, base=0.9) -> pd.DataFrame:
    """Seed s: reinit = base, ticket = base + differences[s]."""
    rows = []
    for s, d in enumerate(differences):
        rows.append({"seed": s, "kind": "ticket", "test_acc": base + d})
        rows.append({"seed": s, "kind": "reinit", "test_acc": base})
    return pd.DataFrame(rows)


NOISY = [0.01, -0.02, 0.015, 0.004, -0.006, 0.02, -0.001]  # seeds disagree in sign


def test_per_seed_values_by_hand():
    # Seed 0 has two ticket rows (averaged: 0.92), seed 2 has no reinit row (left out).
    table = pd.DataFrame(
        [
            (0, "ticket", 0.91),
            (0, "ticket", 0.93),
            (0, "reinit", 0.90),
            (1, "ticket", 0.80),
            (1, "reinit", 0.85),
            (2, "ticket", 0.99),
        ],
        columns=["seed", "kind", "test_acc"],
    )
    values = seeds.per_seed_values(_claim(), table)
    assert values.index.tolist() == [0, 1]
    assert values.to_numpy() == pytest.approx([0.02, -0.05])
    threshold = seeds.per_seed_values(_claim(control=None, margin=0.5), table)
    assert threshold.to_numpy() == pytest.approx([0.92, 0.80, 0.99])


def test_single_seed_conclusions_noisy_table():
    out = seeds.single_seed_conclusions(_claim(), _paired([0.01, -0.02, 0.0, 0.03]))
    assert list(out.columns) == ["claim", "seed", "value", "conclusion", "as_claimed"]
    assert out["seed"].tolist() == [0, 1, 2, 3]
    assert out["conclusion"].tolist() == ["as claimed", "opposite", "tie", "as claimed"]
    assert out["as_claimed"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert (out["claim"] == "tickets beat reinit").all()
    # The mirror claim: every non-tie conclusion flips.
    mirror = seeds.single_seed_conclusions(
        _claim(direction="less"), _paired([0.01, -0.02, 0.0, 0.03])
    )
    assert mirror["conclusion"].tolist() == ["opposite", "as claimed", "tie", "opposite"]


def test_single_seed_conclusions_margin_and_float_ties():
    # 0.3 − 0.1 is 0.19999999999999998 in floating point: still exactly at the margin 0.2.
    table = pd.DataFrame(
        [(0, "ticket", 0.3), (0, "reinit", 0.1), (1, "ticket", 0.5), (1, "reinit", 0.1),
         (2, "ticket", 0.2), (2, "reinit", 0.1)],
        columns=["seed", "kind", "test_acc"],
    )  # fmt: skip
    out = seeds.single_seed_conclusions(_claim(margin=0.2), table)
    assert out["conclusion"].tolist() == ["tie", "as claimed", "opposite"]


def test_every_subset_supported_when_every_seed_agrees():
    rng = np.random.default_rng(1)
    table = _paired(0.05 + 0.002 * rng.standard_normal(6))
    out = seeds.subsample_verdicts(_claim(), table, sizes=(2, 3, 4, 5, 6), draws=1000)
    assert (out["outcome"] == "supported").all()
    # Exhaustive: there are C(6, n) subsets of each size, each listed once.
    for n in (2, 3, 4, 5, 6):
        listed = out.loc[out["size"] == n, "seeds"].tolist()
        assert sorted(listed) == list(itertools.combinations(range(6), n))


def test_subsets_match_evaluate_on_the_subset():
    claim = _claim()
    table = _paired(NOISY)
    out = seeds.subsample_verdicts(claim, table, sizes=(2, 3, 5), draws=25, seed=3)
    assert set(out["size"]) == {2, 3, 5}
    for row in out.itertuples():
        alone = table[table["seed"].isin(row.seeds)]
        oracle = evaluate(dataclasses.replace(claim, min_seeds=2), alone)
        assert row.outcome == oracle.outcome
        assert row.effect == pytest.approx(oracle.effect, abs=1e-12)
        assert row.ci_low == pytest.approx(oracle.ci_low, abs=1e-12)
        assert row.ci_high == pytest.approx(oracle.ci_high, abs=1e-12)
        assert row.ci_width == pytest.approx(oracle.ci_high - oracle.ci_low, abs=1e-12)


def test_two_seed_interval_by_hand():
    # Seeds 0 and 1 differ by +0.01 and −0.02: mean −0.005, s = 0.03/√2, half = 12.706·s/√2.
    out = seeds.subsample_verdicts(_claim(), _paired([0.01, -0.02]), sizes=(2,), draws=5)
    assert len(out) == 1
    half = T975[1] * (0.03 / math.sqrt(2)) / math.sqrt(2)
    assert out.loc[0, "effect"] == pytest.approx(-0.005)
    assert out.loc[0, "ci_low"] == pytest.approx(-0.005 - half, abs=1e-4)
    assert out.loc[0, "ci_high"] == pytest.approx(-0.005 + half, abs=1e-4)
    assert out.loc[0, "outcome"] == "inconclusive"


def test_zero_width_interval_on_the_margin_is_inconclusive():
    # Seeds 0 and 1 differ by exactly 0: the interval is [0, 0], which does not lie above 0.
    # Seeds 2 and 3 both differ by +1: the interval [1, 1] lies above it.
    table = _paired([0.0, 0.0, 1.0, 1.0], base=0.0)
    out = seeds.subsample_verdicts(_claim(), table, sizes=(2,), draws=10).set_index("seeds")
    assert out.loc[[(0, 1)], "outcome"].item() == "inconclusive"
    assert out.loc[[(2, 3)], "outcome"].item() == "supported"
    assert evaluate(_claim(min_seeds=2), table[table["seed"] < 2]).outcome == "inconclusive"


def test_single_seeds_flip_but_all_seeds_decide():
    # A consistent but noisy effect: single seeds disagree, the full set of 30 does not.
    rng = np.random.default_rng(0)
    table = _paired(0.01 + 0.01 * rng.standard_normal(30))
    single = seeds.single_seed_conclusions(_claim(), table)
    assert 0 < (single["conclusion"] == "opposite").sum() < 30
    assert evaluate(_claim(), table).outcome == "supported"
    small = seeds.subsample_verdicts(_claim(), table, sizes=(2,), draws=300)
    assert (small["outcome"] == "inconclusive").mean() > 0.5


def test_random_draws_are_distinct_seed_subsets():
    table = _paired(np.linspace(-0.01, 0.02, 40))
    out = seeds.subsample_verdicts(_claim(), table, sizes=(5, 20), draws=50, seed=7)
    assert out.groupby("size").size().to_dict() == {5: 50, 20: 50}
    for row in out.itertuples():
        assert len(row.seeds) == row.size == len(set(row.seeds))
        assert list(row.seeds) == sorted(row.seeds)
        assert set(row.seeds) <= set(range(40))
    assert out["draw"].tolist() == list(range(50)) * 2


def test_subsample_verdicts_deterministic_and_size_independent():
    table = _paired(np.linspace(-0.01, 0.02, 12))
    a = seeds.subsample_verdicts(_claim(), table, sizes=(3, 4), draws=20, seed=5)
    b = seeds.subsample_verdicts(_claim(), table, sizes=(3, 4), draws=20, seed=5)
    pd.testing.assert_frame_equal(a, b)
    other = seeds.subsample_verdicts(_claim(), table, sizes=(3, 4), draws=20, seed=6)
    assert a["seeds"].tolist() != other["seeds"].tolist()
    alone = seeds.subsample_verdicts(_claim(), table, sizes=(4,), draws=20, seed=5)
    pd.testing.assert_frame_equal(
        a[a["size"] == 4].reset_index(drop=True), alone.reset_index(drop=True)
    )


def test_subsample_verdicts_schema():
    out = seeds.subsample_verdicts(_claim(), _paired(NOISY), sizes=(2, 3), draws=10)
    assert list(out.columns) == [
        "size", "draw", "seeds", "outcome", "effect", "ci_low", "ci_high", "ci_width",
    ]  # fmt: skip
    assert set(out["outcome"]) <= set(seeds.OUTCOMES)
    assert (out["ci_low"] <= out["effect"]).all() and (out["effect"] <= out["ci_high"]).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": (1,)}, "at least 2 seeds"),
        ({"sizes": (8,)}, "has 7"),
        ({"sizes": ()}, "empty"),
        ({"sizes": (2.5,)}, "ints"),
        ({"draws": 0}, "positive int"),
    ],
)
def test_subsample_verdicts_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        seeds.subsample_verdicts(_claim(), _paired(NOISY), **kwargs)


def test_outcome_frequencies_by_hand():
    sub = pd.DataFrame(
        {
            "size": [2, 2, 2, 2, 3, 3],
            "outcome": ["supported", "inconclusive", "inconclusive", "refuted", "supported",
                        "supported"],
        }
    )  # fmt: skip
    freq = seeds.outcome_frequencies(sub)
    assert list(freq.columns) == ["size", "outcome", "count", "fraction"]
    got = {(r.size, r.outcome): (r.count, r.fraction) for r in freq.itertuples()}
    assert got == {
        (2, "supported"): (1, 0.25),
        (2, "inconclusive"): (2, 0.5),
        (2, "refuted"): (1, 0.25),
        (3, "supported"): (2, 1.0),
        (3, "inconclusive"): (0, 0.0),
        (3, "refuted"): (0, 0.0),
    }
    with pytest.raises(ValueError, match="subsample_verdicts"):
        seeds.outcome_frequencies(pd.DataFrame({"size": [2]}))


def test_seed_spread_by_hand():
    table = pd.DataFrame(
        [
            (0, "ticket", 0.90),
            (0, "ticket", 0.92),  # seed 0's ticket averages to 0.91
            (1, "ticket", 0.95),
            (2, "ticket", 0.93),
            (0, "reinit", 0.80),
            (1, "reinit", 0.84),
        ],
        columns=["seed", "kind", "test_acc"],
    )
    out = seeds.seed_spread(table, "test_acc", by="kind")
    assert list(out.columns) == ["kind", "n", "mean", "std", "min", "max"]
    rows = out.set_index("kind")
    assert rows.loc["ticket", "n"] == 3
    assert rows.loc["ticket", "mean"] == pytest.approx(0.93)
    assert rows.loc["ticket", "std"] == pytest.approx(0.02)  # 0.91, 0.95, 0.93
    assert (rows.loc["ticket", "min"], rows.loc["ticket", "max"]) == pytest.approx((0.91, 0.95))
    assert rows.loc["reinit", "std"] == pytest.approx(math.sqrt(2) * 0.02)
    pd.testing.assert_frame_equal(out, seeds.seed_spread(table, "test_acc", by=["kind"]))
    overall = seeds.seed_spread(table, "test_acc")
    assert list(overall.columns) == ["n", "mean", "std", "min", "max"]
    assert overall.loc[0, "n"] == 3  # per seed: mean of all its rows
    assert overall.loc[0, "mean"] == pytest.approx(np.mean([(0.9 + 0.92 + 0.8) / 3, 0.895, 0.93]))
    with pytest.raises(ValueError, match="density"):
        seeds.seed_spread(table, "test_acc", by="density")


def test_cherry_picking_matches_theory():
    # Under the null the t statistic is exactly Student-t: P(supported) = 0.025 per comparison,
    # and for k independent comparisons P(any supported) = 1 − 0.975^k.
    out = seeds.cherry_picking_simulation(
        comparisons=(1, 4), n_seeds=3, experiments=40_000, seeds=(0,)
    )
    rate = out.set_index(["comparisons", "strategy"])["false_positive_rate"]
    se = math.sqrt(0.1 * 0.9 / 40_000)
    assert rate[(1, "pre-registered")] == rate[(1, "best of k")]
    assert rate[(4, "pre-registered")] == pytest.approx(0.025, abs=4 * se)
    assert rate[(4, "best of k")] == pytest.approx(1 - 0.975**4, abs=4 * se)


def test_cherry_picking_monotone_deterministic_schema():
    out = seeds.cherry_picking_simulation(experiments=500, seeds=(0, 1))
    assert list(out.columns) == [
        "seed", "comparisons", "strategy", "false_positive_rate", "experiments",
    ]  # fmt: skip
    for _, group in out[out["strategy"] == "best of k"].groupby("seed"):
        assert group["false_positive_rate"].is_monotonic_increasing
    pd.testing.assert_frame_equal(
        out, seeds.cherry_picking_simulation(experiments=500, seeds=(0, 1))
    )
    with pytest.raises(ValueError, match="n_seeds"):
        seeds.cherry_picking_simulation(n_seeds=1)


def test_claims_fit_the_tables_they_are_evaluated_on():
    assert len({c.name for c in seeds.CLAIMS}) == len(seeds.CLAIMS)
    assert all(c.citation.startswith("this lab") for c in seeds.CLAIMS)
    # An XOR-shaped table: 30 seeds, the ticket succeeds on 24, reinit on 6 (seeds 0-5).
    rows = []
    for s in range(30):
        rows.append({"seed": s, "setting": "ticket", "success": float(s >= 6)})
        rows.append({"seed": s, "setting": "reinit", "success": float(s < 6)})
    conclusions = seeds.single_seed_conclusions(xor.CLAIMS[1], pd.DataFrame(rows))
    assert conclusions["as_claimed"].mean() == pytest.approx(24 / 30)
    verdict = seeds.CLAIMS[0].evaluate(conclusions)
    assert verdict.n == 30 and verdict.effect == pytest.approx(0.8)
    assert verdict.outcome == "inconclusive"  # 80% agree: exactly at the margin
    simulated = seeds.cherry_picking_simulation(experiments=4000, seeds=range(4))
    assert seeds.CLAIMS[1].evaluate(simulated).outcome == "supported"
    assert seeds.CLAIMS[2].evaluate(simulated).outcome == "supported"
