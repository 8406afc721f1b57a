"""IMP claims: the combined table and what each pre-registered claim selects and compares."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from ticketlab.experiments.lottery import CLAIMS, LOW_DENSITY, combine

DENSITIES = {0: 1.0, 1: 0.5, 2: 0.3, 3: 0.2}


def _result(mode: str, key: str = "k", kinds=("ticket", "reinit", "random")):
    """Per seed s, round r, kind: test_acc and early_stop_step from simple formulas."""
    bonus = {"ticket": 0.02, "reinit": 0.0, "random": -0.01}
    rows = []
    for seed in (0, 1, 2):
        rows.append((seed, 0, 1.0, "dense", 0.95, 500))
        for r in (1, 2, 3):
            for kind in kinds:
                acc = 0.90 + bonus[kind] * r + 0.001 * seed + (0.05 if mode == "one_shot" else 0)
                if mode == "one_shot" and r == 3:
                    acc -= 0.08  # one-shot falls behind only at the sparsest round
                stop = 300 + 100 * r * (kind != "ticket") + 10 * seed
                rows.append((seed, r, DENSITIES[r], kind, acc, stop))
    table = pd.DataFrame(
        rows, columns=["seed", "round", "density", "kind", "test_acc", "early_stop_step"]
    )
    return SimpleNamespace(table=table, mode=mode, recipe=SimpleNamespace(key=key))


def _table():
    return combine(_result("iterative"), _result("one_shot", kinds=("ticket",)))


def test_combine_stacks_the_modes_with_a_leading_mode_column():
    table = _table()
    assert list(table.columns) == [
        "mode", "seed", "round", "density", "kind", "test_acc", "early_stop_step",
    ]  # fmt: skip
    counts = table.groupby("mode").size().to_dict()
    assert counts == {"iterative": 3 * (1 + 3 * 3), "one_shot": 3 * (1 + 3)}


def test_combine_rejects_mixed_recipes_repeated_modes_and_other_objects():
    with pytest.raises(ValueError, match="different recipes"):
        combine(_result("iterative"), _result("one_shot", key="other"))
    with pytest.raises(ValueError, match="its own mode"):
        combine(_result("iterative"), _result("iterative"))
    with pytest.raises(TypeError, match="ImpResults"):
        combine(pd.DataFrame())
    with pytest.raises(ValueError, match="at least one"):
        combine()


def test_claims_compare_low_density_rounds_paired_by_seed():
    table = _table()
    verdicts = {c.name: c.evaluate(table) for c in CLAIMS}
    low = [r for r, d in DENSITIES.items() if d <= LOW_DENSITY]
    assert low == [2, 3]

    # ticket − reinit per seed: mean over rounds 2 and 3 of 0.02·r = 0.05, for every seed
    reinit = verdicts["tickets beat reinit"]
    assert reinit.n == 3 and reinit.effect == pytest.approx(0.05)
    assert reinit.outcome == "supported"
    # ticket − random: 0.03·r averaged over rounds 2, 3 = 0.075
    assert verdicts["tickets beat random pruning"].effect == pytest.approx(0.075)
    # early stop, ticket − reinit: −100·r averaged over rounds 2, 3 = −250 steps
    faster = verdicts["tickets learn faster"]
    assert faster.effect == pytest.approx(-250.0) and faster.outcome == "supported"


def test_iterative_vs_one_shot_uses_only_the_sparsest_round():
    verdict = next(c for c in CLAIMS if c.name == "iterative beats one-shot").evaluate(_table())
    # at round 3 one-shot is 0.05 − 0.08 = 0.03 behind; at rounds 1–2 it is 0.05 ahead, so any
    # other selection would flip the sign
    assert verdict.effect == pytest.approx(0.03)
    assert verdict.outcome == "supported"
