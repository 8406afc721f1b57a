"""Claims and verdicts: the statistics against hand computations, the decision rule, the errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from ticketlab.stats import t_interval, t_quantile
from ticketlab.verdict import Claim, Verdict, evaluate, verdicts_frame

# Two-sided 95% critical values from printed t tables (df → t_{0.975, df}).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 29: 2.045, 100: 1.984}


@pytest.mark.parametrize(("df", "expected"), sorted(T975.items()))
def test_t_quantile_matches_printed_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [(0.95, 1, 6.314), (0.95, 9, 1.833), (0.995, 3, 5.841), (0.9, 20, 1.325), (0.5, 7, 0.0)],
)
def test_t_quantile_other_levels(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=5e-4)


def test_t_quantile_closed_forms():
    # df = 1 is the Cauchy distribution, t_p = tan(π (p − ½)); df = 2: t_p = (2p−1)·√(2/(4p(1−p)))
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)
        assert t_quantile(p, 2) == pytest.approx(
            (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-10
        )
    assert t_quantile(0.975, 1000) == pytest.approx(1.962339, abs=1e-5)  # → normal 1.95996


def test_t_quantile_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (*range(1, 40), 75, 200):
        for p in (0.55, 0.9, 0.975, 0.9995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


@pytest.mark.parametrize(("p", "df"), [(0.0, 3), (1.0, 3), (0.975, 0), (0.975, 2.5)])
def test_t_quantile_rejects_bad_input(p, df):
    with pytest.raises(ValueError):
        t_quantile(p, df)


def test_t_interval_by_hand():
    # values 1, 2, 3: mean 2, s = 1, half-width = 4.303 / √3.
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert low == pytest.approx(2.0 - 4.3027 / math.sqrt(3), abs=1e-4)
    assert high == pytest.approx(2.0 + 4.3027 / math.sqrt(3), abs=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])


def _table(rows):
    return pd.DataFrame(rows, columns=["seed", "kind", "density", "test_acc"])


def _paired(ticket, reinit, density=0.05):
    rows = [(s, "ticket", density, a) for s, a in enumerate(ticket)]
    rows += [(s, "reinit", density, a) for s, a in enumerate(reinit)]
    return _table(rows)


def _claim(**overrides):
    fields = dict(
        name="tickets beat reinit",
        statement="Winning tickets are more accurate than reinitialized ones.",
        citation="Frankle & Carbin 2019, §2",
        metric="test_acc",
        treatment={"kind": "ticket"},
        control={"kind": "reinit"},
        unit="pp",
        scale=100,
    )
    fields.update(overrides)
    return Claim(**fields)


def test_supported_with_hand_computed_interval():
    table = _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96])
    verdict = evaluate(_claim(), table)
    diffs = np.array([0.01, 0.015, 0.015])
    half = 4.302653 * diffs.std(ddof=1) / math.sqrt(3)
    assert verdict.outcome == "supported"
    assert verdict.n == 3
    assert verdict.effect == pytest.approx(diffs.mean())
    assert verdict.ci_low == pytest.approx(diffs.mean() - half)
    assert verdict.ci_high == pytest.approx(diffs.mean() + half)
    assert verdict.per_seed == pytest.approx(tuple(diffs))
    assert verdict.seeds == (0, 1, 2)
    assert _claim().evaluate(table) == verdict


def test_refuted_and_inconclusive():
    refuted = evaluate(_claim(), _paired([0.90, 0.91, 0.90], [0.95, 0.955, 0.96]))
    assert refuted.outcome == "refuted"
    assert refuted.ci_high < 0
    # differences +0.02, -0.02, +0.01: mean 0.0033, the CI straddles 0
    unclear = evaluate(_claim(), _paired([0.97, 0.95, 0.97], [0.95, 0.97, 0.96]))
    assert unclear.outcome == "inconclusive"
    assert unclear.ci_low < 0 < unclear.ci_high


def test_margin_moves_the_bar():
    table = _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96])  # effect 0.0133, CI ≈ [0.006, 0.021]
    assert evaluate(_claim(), table).outcome == "supported"
    assert evaluate(_claim(margin=0.03), table).outcome == "refuted"
    assert evaluate(_claim(margin=0.01), table).outcome == "inconclusive"


def test_less_direction_mirrors_the_rule():
    table = _paired([0.90, 0.91, 0.90], [0.95, 0.955, 0.96])  # ticket clearly worse
    assert evaluate(_claim(direction="less"), table).outcome == "supported"
    table = _paired([0.97, 0.98, 0.975], [0.90, 0.90, 0.905])
    assert evaluate(_claim(direction="less"), table).outcome == "refuted"


def test_rows_of_a_seed_are_averaged_before_the_interval():
    rows = [
        (0, "ticket", 0.1, 0.90),
        (0, "ticket", 0.05, 0.94),  # seed 0 ticket: mean 0.92
        (1, "ticket", 0.1, 0.95),
        (2, "ticket", 0.1, 0.93),
        (0, "reinit", 0.1, 0.90),
        (1, "reinit", 0.1, 0.91),
        (1, "reinit", 0.05, 0.93),  # seed 1 reinit: mean 0.92
        (2, "reinit", 0.1, 0.90),
    ]
    verdict = evaluate(_claim(), _table(rows))
    assert verdict.per_seed == pytest.approx((0.02, 0.03, 0.03))
    assert verdict.effect == pytest.approx(0.08 / 3)


def test_where_applies_before_the_filters():
    dense = [(s, k, 1.0, 0.5) for s in range(3) for k in ("ticket", "reinit")]
    table = pd.concat([_paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96]), _table(dense)])
    verdict = evaluate(_claim(where="density < 0.5"), table)
    assert verdict.effect == pytest.approx(0.04 / 3)
    # without where, the dense rows (0.5 in both arms) halve each seed's difference
    assert evaluate(_claim(), table).effect == pytest.approx(0.04 / 6)


def test_list_filter_selects_any_of_its_values():
    rows = [(s, "reinit", 0.05, 0.90) for s in range(3)]
    rows += [(s, "random", 0.05, 0.92) for s in range(3)]
    rows += [(s, "ticket", 0.05, 0.95 + 0.001 * s) for s in range(3)]
    verdict = evaluate(_claim(control={"kind": ["reinit", "random"]}), _table(rows))
    assert verdict.per_seed == pytest.approx((0.04, 0.041, 0.042))


def test_only_seeds_present_in_both_arms_are_paired():
    table = _paired([0.97, 0.98, 0.975, 0.99], [0.96, 0.965, 0.96])  # seed 3 has no control
    verdict = evaluate(_claim(), table)
    assert verdict.seeds == (0, 1, 2)
    assert verdict.unpaired == (3,)
    assert "seeds 3 had no partner" in verdict.reading


def test_threshold_claim_against_a_fixed_bar():
    table = pd.DataFrame(
        {
            "seed": [0, 1, 2, 0, 1, 2],
            "kind": ["ticket"] * 3 + ["random"] * 3,
            "barrier": [0.004, 0.006, 0.005, 0.30, 0.25, 0.35],
        }
    )
    stable = Claim(
        name="tickets are stable",
        statement="IMP subnetworks of LeNet are stable at initialization.",
        citation="Frankle et al. 2020, §4",
        metric="barrier",
        treatment={"kind": "ticket"},
        direction="less",
        margin=0.02,
        unit="%",
        scale=100,
    )
    assert "Prediction: barrier(kind=ticket) is less than 2%." in stable.describe()
    verdict = evaluate(stable, table)
    half = 4.302653 * 0.001 / math.sqrt(3)
    assert verdict.outcome == "supported"
    assert verdict.effect == pytest.approx(0.005)
    assert verdict.ci_high == pytest.approx(0.005 + half)
    unstable = dataclasses.replace(stable, name="random is stable", treatment={"kind": "random"})
    assert evaluate(unstable, table).outcome == "refuted"


def test_reading_and_str():
    verdict = evaluate(_claim(), _paired([0.97, 0.98, 0.99], [0.96, 0.96, 0.96]))
    # differences 1, 2, 3 pp: mean 2, half-width 4.303/√3 = 2.48 pp
    assert verdict.reading == (
        "inconclusive: test_acc(kind=ticket) − test_acc(kind=reinit) = 2 pp "
        "(95% CI -0.484 to 4.48 pp, n=3 seeds; needed > 0 pp)"
    )
    assert str(verdict) == f"Verdict: inconclusive — {verdict.reading}"
    assert "inconclusive" in repr(verdict)
    assert "INCONCLUSIVE" in verdict._repr_html_()


def test_html_escapes_user_text():
    verdict = evaluate(_claim(name="<b>x</b>"), _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96]))
    assert "<b>x</b>" not in verdict._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in verdict._repr_html_()


def test_describe_states_the_rule_before_the_run():
    text = _claim(where="density <= 0.07", margin=0.005, min_seeds=4).describe()
    for piece in (
        "Frankle & Carbin 2019, §2",
        "test_acc(kind=ticket) − test_acc(kind=reinit)",
        "density <= 0.07",
        "greater than 0.5 pp",
        "n ≥ 4 seeds",
        "Supported if the whole interval lies above 0.5 pp",
        "refuted if it lies entirely below 0.5 pp",
    ):
        assert piece in text
    claim = _claim(direction="less")
    assert "lies below 0 pp" in claim.describe()
    assert "Prediction" in claim._repr_markdown_()
    assert "Decision rule" in claim._repr_html_()
    assert repr(claim) == (
        "Claim('tickets beat reinit': test_acc(kind=ticket) − test_acc(kind=reinit) < 0 pp, "
        "n ≥ 3 seeds)"
    )


def test_too_few_seeds_says_how_many_and_what_to_do():
    table = _paired([0.97, 0.98], [0.96, 0.96])
    with pytest.raises(ValueError, match=r"has 2 seeds but needs at least 3; run more seeds"):
        evaluate(_claim(), table)
    assert evaluate(_claim(min_seeds=2), table).n == 2


def test_empty_selection_names_filters_and_available_values():
    table = _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96])
    with pytest.raises(
        ValueError, match=r"treatment \{'kind': 'tiket'\}.*kind: \['reinit', 'ticket'\]"
    ):
        evaluate(_claim(treatment={"kind": "tiket"}), table)


def test_control_without_shared_seeds_is_an_error():
    rows = [(s, "ticket", 0.05, 0.97) for s in range(3)]
    rows += [(s, "reinit", 0.05, 0.96) for s in range(3, 6)]
    with pytest.raises(ValueError, match="share no seed"):
        evaluate(_claim(), _table(rows))


def test_table_problems_are_clear_errors():
    table = _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96])
    with pytest.raises(ValueError, match=r"needs columns \['val_acc'\]"):
        evaluate(_claim(metric="val_acc"), table)
    with pytest.raises(ValueError, match="could not be applied"):
        evaluate(_claim(where="nonexistent > 1"), table)
    with pytest.raises(ValueError, match="selects none"):
        evaluate(_claim(where="density > 2"), table)
    broken = table.copy()
    broken.loc[0, "test_acc"] = float("nan")
    with pytest.raises(ValueError, match=r"NaN for the treatment at seeds \[0\]"):
        evaluate(_claim(), broken)
    with pytest.raises(TypeError):
        evaluate(_claim(), table.to_dict())


@pytest.mark.parametrize(
    "overrides",
    [
        {"direction": "bigger"},
        {"min_seeds": 1},
        {"treatment": {}},
        {"control": {}},
        {"metric": ""},
        {"scale": 0},
        {"margin": float("nan")},
    ],
)
def test_claim_validates_itself(overrides):
    with pytest.raises(ValueError):
        _claim(**overrides)


def test_claim_is_frozen_and_owns_its_filters():
    filters = {"kind": "ticket"}
    claim = _claim(treatment=filters)
    filters["kind"] = "reinit"
    assert claim.treatment == {"kind": "ticket"}
    assert hash(claim) == hash(_claim())
    with pytest.raises(AttributeError):
        claim.margin = 1.0  # type: ignore[misc]


def test_verdicts_frame_one_row_per_claim():
    a = evaluate(_claim(), _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96]))
    b = evaluate(_claim(name="b", margin=0.05), _paired([0.97, 0.98, 0.975], [0.96, 0.965, 0.96]))
    frame = verdicts_frame([a, b])
    assert list(frame.columns) == [
        "name",
        "outcome",
        "effect",
        "ci_low",
        "ci_high",
        "n",
        "margin",
        "direction",
    ]
    assert frame["name"].tolist() == ["tickets beat reinit", "b"]
    assert frame["outcome"].tolist() == ["supported", "refuted"]
    assert frame["margin"].tolist() == [0.0, 0.05]
    assert frame["effect"].tolist() == pytest.approx([a.effect, b.effect])
    assert isinstance(a, Verdict)
