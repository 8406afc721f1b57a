"""How many seeds? Seed-to-seed variation, and what it does to a verdict.

A *seed* fixes everything random in one run: the initial weights and the order of the training
batches. Two seeds of the same experiment give two different numbers, so every conclusion in this
workbook rests on a handful of replicates. This module asks how much that matters, using the same
decision rule as ``ticketlab.verdict`` (a claim is supported when its whole two-sided 95%
Student-t interval over seeds clears the margin):

* ``seed_spread``: mean, standard deviation, min and max of a metric across seeds;
* ``single_seed_conclusions``: what an experiment with only one seed would have concluded;
* ``subsample_verdicts`` / ``outcome_frequencies``: the verdict an experiment with only n of the
  seeds would have reached, over many (or all) subsets of n seeds;
* ``cherry_picking_simulation``: how often "supported" comes out when there is no effect at all,
  for a comparison fixed in advance versus the best of k comparisons picked after the fact;
* ``weak_effect_simulation``: the verdicts of many small experiments on one real but weak effect.

``CLAIMS`` are this lab's own pre-registered predictions (notebook 07); ``SPECIMEN`` is the LeNet
comparison the lab studies (no outcome is predicted for it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .stats import OUTCOMES, outcomes, t_intervals
from .verdict import SEED, Claim, evaluate

__all__ = [
    "CLAIMS",
    "cherry_picking_simulation",
    "outcome_frequencies",
    "per_seed_values",
    "seed_spread",
    "single_seed_conclusions",
    "subsample_verdicts",
    "weak_effect_simulation",
]

CONCLUSIONS = ("as claimed", "tie", "opposite")
"""What one seed says about a claim: on the claimed side of the margin, exactly on it, or not."""

CLAIMS = (
    Claim(
        name="one seed can mislead",
        statement="Even for XOR, where tickets learn far more reliably than reinitialized "
        "networks, a comparison on a single seed fails to show the ticket ahead (a tie or the "
        "opposite) for at least 20% of seeds: fewer than 80% of seeds point the claimed way.",
        citation="this lab (a prediction fixed before the run), on the runs of "
        "ticketlab.experiments.xor_tickets",
        metric="as_claimed",
        treatment={"claim": "ticket beats reinit"},
        control=None,
        direction="less",
        margin=0.8,
        min_seeds=20,
        unit="%",
        scale=100,
    ),
    Claim(
        name="cherry-picking inflates false positives",
        statement="When no effect exists, reporting the best of 4 comparisons, picked after "
        "seeing the data, comes out 'supported' at least 3 percentage points more often than one "
        "comparison fixed in advance.",
        citation="this lab (a simulation, cherry_picking_simulation; for independent comparisons "
        "the expected rates are 1 − 0.975⁴ ≈ 9.6% versus 2.5%)",
        metric="false_positive_rate",
        treatment={"comparisons": 4, "strategy": "best of k"},
        control={"comparisons": 4, "strategy": "pre-registered"},
        direction="greater",
        margin=0.03,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
    Claim(
        name="pre-registration holds the error rate",
        statement="When no effect exists, one comparison fixed in advance comes out 'supported' "
        "in fewer than 5% of experiments (the 95% interval misses on the claimed side in 2.5%).",
        citation="this lab (a simulation, cherry_picking_simulation)",
        metric="false_positive_rate",
        treatment={"comparisons": 4, "strategy": "pre-registered"},
        control=None,
        direction="less",
        margin=0.05,
        min_seeds=3,
        unit="%",
        scale=100,
    ),
)


SPECIMEN = Claim(
    name="ticket beats reinit at 40%",
    statement="One-shot LeNet tickets are more accurate than the same masks reinitialized.",
    citation="Frankle & Carbin (ICLR 2019), §2; at a moderate density",
    metric="test_acc",
    treatment={"kind": "ticket"},
    control={"kind": "reinit"},
    min_seeds=3,
    unit="pp",
    scale=100,
)
"""The comparison notebook 07 dissects: eight LeNet seeds, one round of pruning to 40 %."""


def per_seed_values(claim: Claim, table: pd.DataFrame) -> pd.Series:
    """The numbers a verdict on ``claim`` averages: one float per seed, indexed by seed (sorted).

    For a paired claim, the treatment − control difference of each seed; for a threshold claim
    (``control=None``), the treatment's value. They come from ``ticketlab.verdict.evaluate``
    itself, so ``where``, the filters, the averaging over rows and the pairing are exactly the
    verdict's (seeds present in only one arm are left out). Only the claim's ``min_seeds`` is
    ignored: this reads the raw material, it does not decide anything. Needs at least 2 seeds.
    """
    verdict = evaluate(dataclasses.replace(claim, min_seeds=2), table)
    index = pd.Index(verdict.seeds, name=SEED)
    return pd.Series(verdict.per_seed, index=index, name=claim.metric, dtype=float)


def single_seed_conclusions(claim: Claim, table: pd.DataFrame) -> pd.DataFrame:
    """What an experiment with only one seed would conclude, for each seed of ``table``.

    One row per seed: ``claim`` (the claim's name), ``seed``, ``value`` (treatment − control, or
    the treatment's value for a threshold claim, in the metric's units), ``conclusion``
    (``"as claimed"`` if the value lies beyond the margin in the claimed direction, ``"opposite"``
    if it lies beyond it the other way, ``"tie"`` if it equals the margin up to 1e-12) and
    ``as_claimed`` (1.0 or 0.0, so the fraction of seeds that agree is its mean).
    """
    values = per_seed_values(claim, table)
    x = values.to_numpy()
    sign = 1.0 if claim.direction == "greater" else -1.0
    tie = np.isclose(x, claim.margin, rtol=0.0, atol=1e-12)
    agrees = ~tie & (sign * (x - claim.margin) > 0)
    conclusion = np.where(tie, "tie", np.where(agrees, "as claimed", "opposite"))
    return pd.DataFrame(
        {
            "claim": claim.name,
            SEED: values.index.to_numpy(),
            "value": x,
            "conclusion": conclusion,
            "as_claimed": agrees.astype(float),
        }
    )


def subsample_verdicts(
    claim: Claim,
    table: pd.DataFrame,
    sizes: Sequence[int] = (2, 3, 5),
    draws: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """The verdicts ``claim`` would get from experiments that ran only ``size`` of the seeds.

    For each size n in ``sizes``, subsets of n distinct seeds are taken from the seeds of
    ``table`` (those ``per_seed_values`` keeps): all of them when there are at most ``draws``,
    otherwise ``draws`` subsets drawn uniformly at random (independently of each other, from a
    generator seeded by ``(seed, n)``, so a size's draws do not depend on the other sizes asked
    for). Each subset is decided by the verdict's rule, as ``claim.evaluate`` would on the rows of
    those seeds alone (``min_seeds`` aside).

    Returns one row per (size, draw): ``size``, ``draw`` (0, 1, …), ``seeds`` (tuple of seed ids),
    ``outcome``, ``effect``, ``ci_low``, ``ci_high``, ``ci_width`` (metric units).
    """
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws must be a positive int (subsets per size), got {draws!r}")
    values = per_seed_values(claim, table)
    ids, x = values.index.to_numpy(), values.to_numpy()
    available = len(x)
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes is empty; pass the numbers of seeds to try, e.g. (2, 3, 5)")
    for size in sizes:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise ValueError(f"sizes must be ints, got {size!r}")
        if not 2 <= size <= available:
            raise ValueError(
                f"size {size} is impossible: a confidence interval needs at least 2 seeds and the "
                f"table has {available}; use sizes between 2 and {available} (and "
                "single_seed_conclusions for one seed)"
            )
    frames = []
    for size in dict.fromkeys(int(s) for s in sizes):
        if math.comb(available, size) <= draws:
            picks = np.array(list(itertools.combinations(range(available), size)))
        else:
            rng = np.random.default_rng([seed, size])
            picks = np.sort(np.argsort(rng.random((draws, available)), axis=1)[:, :size], axis=1)
        mean, low, high = t_intervals(x[picks])
        frames.append(
            pd.DataFrame(
                {
                    "size": size,
                    "draw": np.arange(len(picks)),
                    "seeds": [tuple(ids[row].tolist()) for row in picks],
                    "outcome": outcomes(claim.direction, claim.margin, low, high),
                    "effect": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "ci_width": high - low,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def outcome_frequencies(subsamples: pd.DataFrame) -> pd.DataFrame:
    """Fraction of subsets reaching each outcome, per size: tidy (size, outcome, count, fraction).

    ``subsamples`` is ``subsample_verdicts``'s table. Every outcome appears for every size (count
    0 when it never happened), in the order supported, inconclusive, refuted.
    """
    missing = {"size", "outcome"} - set(subsamples.columns)
    if missing:
        raise ValueError(
            f"the table lacks columns {sorted(missing)}; pass subsample_verdicts()'s output"
        )
    counts = (
        pd.crosstab(subsamples["size"], subsamples["outcome"])
        .reindex(columns=list(OUTCOMES), fill_value=0)
        .stack()
        .rename("count")
        .reset_index()
    )
    totals = counts.groupby("size")["count"].transform("sum")
    return counts.assign(fraction=counts["count"] / totals)


def seed_spread(table: pd.DataFrame, metric: str, by: str | Sequence[str] = ()) -> pd.DataFrame:
    """How much ``metric`` varies from seed to seed, per group of ``by`` columns.

    Rows of one seed within a group are averaged first, so each seed counts once. One row per
    group: the ``by`` columns, then ``n`` (seeds), ``mean``, ``std`` (sample standard deviation,
    ddof = 1; NaN for one seed), ``min``, ``max``, in the metric's units.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = sorted({SEED, metric, *by} - set(table.columns))
    if missing:
        raise ValueError(
            f"seed_spread needs columns {missing} that the table lacks; it has "
            f"{list(table.columns)}"
        )
    if table.empty:
        raise ValueError("seed_spread got an empty table")
    per_seed = table.groupby([*by, SEED], sort=True)[metric].mean().reset_index()
    if by:
        groups = per_seed.groupby(by, sort=True)[metric]
        stats = groups.agg(["count", "mean", "std", "min", "max"]).reset_index()
    else:
        stats = per_seed[metric].agg(["count", "mean", "std", "min", "max"]).to_frame().T
        stats = stats.reset_index(drop=True)
    stats = stats.rename(columns={"count": "n"})
    stats["n"] = stats["n"].astype(int)
    return stats


def cherry_picking_simulation(
    comparisons: Sequence[int] = (1, 2, 4, 8),
    n_seeds: int = 3,
    experiments: int = 2000,
    seeds: Sequence[int] = (0,),
) -> pd.DataFrame:
    """How often a claim is declared supported when nothing is there, with and without hindsight.

    A simulated world with no effect: an experiment runs ``k`` comparisons (think: tickets vs
    reinitialized networks at k densities), each on ``n_seeds`` seeds whose per-seed differences
    are independent standard normal draws (true mean 0). Each comparison is decided by the verdict
    rule (supported if the whole 95% Student-t interval lies above 0). Two ways to report:

    * ``"pre-registered"``: the comparison was chosen before the run (the first one);
    * ``"best of k"``: the analyst looks at all k and reports one that came out supported, if any.

    For each simulation seed in ``seeds`` (an independent replicate with its own generator) and
    each k in ``comparisons``, the fraction of ``experiments`` declared supported. Larger k reuses
    the first comparisons of smaller k, so the rates grow with k within a seed.

    Returns tidy rows: ``seed``, ``comparisons`` (k), ``strategy``, ``false_positive_rate`` (0–1),
    ``experiments``.
    """
    comparisons = [int(k) for k in comparisons]
    if not comparisons or min(comparisons) < 1:
        raise ValueError(f"comparisons must be positive ints, e.g. (1, 2, 4, 8); got {comparisons}")
    if not isinstance(n_seeds, int) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an int >= 2 (a t-interval needs 2), got {n_seeds!r}")
    if not isinstance(experiments, int) or experiments < 1:
        raise ValueError(f"experiments must be a positive int, got {experiments!r}")
    rows = []
    for sim_seed in seeds:
        rng = np.random.default_rng([int(sim_seed)])
        draws = rng.standard_normal((experiments, max(comparisons), n_seeds))
        _, low, high = t_intervals(draws)
        supported = outcomes("greater", 0.0, low, high) == "supported"
        for k in comparisons:
            rates = {
                "pre-registered": supported[:, 0].mean(),
                "best of k": supported[:, :k].any(axis=1).mean(),
            }
            for strategy, rate in rates.items():
                rows.append(
                    {
                        SEED: int(sim_seed),
                        "comparisons": k,
                        "strategy": strategy,
                        "false_positive_rate": float(rate),
                        "experiments": experiments,
                    }
                )
    return pd.DataFrame(rows)


def weak_effect_simulation(
    effect: float = 0.5,
    sizes: Sequence[int] = (3, 4, 5),
    experiments: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The verdicts of many small experiments on one real but weak effect.

    Each simulated experiment has ``n`` seeds (one per ``sizes``) whose per-seed differences are
    independent draws from N(``effect``, 1): the effect is in units of the seed-to-seed standard
    deviation σ, so 0.5 means "half a standard deviation", a weak effect. Each experiment is
    decided by the verdict rule for "treatment > control" (supported if the whole 95% Student-t
    interval lies above 0, refuted if it lies below). Draws come from NumPy's PCG64 generator
    seeded with ``seed``, which gives the same numbers on every machine.

    Returns ``outcome_frequencies``' tidy table: size, outcome, count, fraction (0–1).
    """
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) < 2:
        raise ValueError(f"sizes must be ints >= 2 (a t-interval needs 2 seeds), got {sizes}")
    if not isinstance(experiments, int) or experiments < 1:
        raise ValueError(f"experiments must be a positive int, got {experiments!r}")
    if not math.isfinite(effect):
        raise ValueError(f"effect must be a finite number (in units of σ), got {effect!r}")
    rng = np.random.default_rng([int(seed)])
    frames = []
    for n in sizes:
        draws = effect + rng.standard_normal((experiments, n))
        _, low, high = t_intervals(draws)
        frames.append(pd.DataFrame({"size": n, "outcome": outcomes("greater", 0.0, low, high)}))
    return outcome_frequencies(pd.concat(frames, ignore_index=True))
