"""Lottery tickets in LeNet-300-100 on MNIST: the claims IMP is tested against.

Frankle & Carbin (ICLR 2019, arXiv 1803.03635v5) prune LeNet-300-100 iteratively by magnitude,
resetting the surviving weights to their initialization after every round (``ticketlab.imp.run``),
and compare the resulting *winning tickets* with two controls trained at the same masks' density:
random reinitialization (the ticket's mask, fresh weights) and random pruning (a random mask with
the same per-layer counts). They also compare iterative pruning with one-shot pruning.

``CLAIMS`` fixes, before any run, what the tickets should show; the claims are evaluated on
``combine(iterative, one_shot)``, one tidy table of both IMP runs with a ``mode`` column. At our
scale (5,000 MNIST images, a few thousand steps) absolute numbers differ from the paper's; the
claims test directions only.
"""

from __future__ import annotations

import pandas as pd

from ..verdict import Claim

__all__ = ["CLAIMS", "LOW_DENSITY", "combine"]

_PAPER = "Frankle & Carbin, ICLR 2019 (arXiv 1803.03635v5)"

LOW_DENSITY = 0.3
"""The low-density scope of the claims: rounds with at most 30 % of the weights remaining."""

_LOW = f"density <= {LOW_DENSITY}"

CLAIMS = (
    Claim(
        name="tickets beat reinit",
        statement="At low density, winning tickets reach higher test accuracy than the same masks "
        "trained from a fresh random initialization.",
        citation=f"{_PAPER}, §2: reinitialized tickets' accuracy drops off from Pm = 21.1%, the "
        "tickets' only at 2.9%",
        metric="test_acc",
        treatment={"mode": "iterative", "kind": "ticket"},
        control={"mode": "iterative", "kind": "reinit"},
        where=_LOW,
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
    Claim(
        name="tickets beat random pruning",
        statement="At low density, winning tickets reach higher test accuracy than randomly pruned "
        "networks with the same per-layer density and the same initial weights.",
        citation=f"{_PAPER}, Figure 1: winning tickets vs randomly sampled sparse networks",
        metric="test_acc",
        treatment={"mode": "iterative", "kind": "ticket"},
        control={"mode": "iterative", "kind": "random"},
        where=_LOW,
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
    Claim(
        name="tickets learn faster",
        statement="At low density, winning tickets reach their minimum validation loss (the "
        "early-stopping step) earlier than the same masks randomly reinitialized.",
        citation=f"{_PAPER}, §2: at Pm = 21%, the ticket reaches minimum validation loss 2.51x "
        "faster than when reinitialized",
        metric="early_stop_step",
        treatment={"mode": "iterative", "kind": "ticket"},
        control={"mode": "iterative", "kind": "reinit"},
        where=_LOW,
        direction="less",
        margin=0.0,
        min_seeds=3,
        unit="steps",
    ),
    Claim(
        name="iterative beats one-shot",
        statement="At the smallest density reached, tickets found by iterative pruning reach "
        "higher test accuracy than tickets pruned to the same density in one shot.",
        citation=f"{_PAPER}, §2 (one-shot pruning): iterative pruning finds smaller winning "
        "tickets; one-shot tickets beat the original network only down to Pm = 5.17%",
        metric="test_acc",
        treatment={"mode": "iterative", "kind": "ticket"},
        control={"mode": "one_shot", "kind": "ticket"},
        where="round == round.max()",
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
)


def combine(*results) -> pd.DataFrame:
    """One tidy table from several ``ImpResult``s, with a ``mode`` column ("iterative",
    "one_shot") in front: the table ``CLAIMS`` are evaluated on.

    Every result must come from the same recipe (same ``recipe.key``) and a different mode, so
    rows compare like with like; each result's table keeps its columns (seed, round, density,
    kind, test_acc, early_stop_step, ...).
    """
    if not results:
        raise ValueError("combine needs at least one ImpResult, e.g. combine(iterative, one_shot)")
    for result in results:
        if not (hasattr(result, "table") and hasattr(result, "mode")):
            raise TypeError(
                f"combine takes ImpResults from ticketlab.imp.run, got {type(result).__name__}"
            )
    modes = [result.mode for result in results]
    if len(set(modes)) != len(modes):
        raise ValueError(f"each result must have its own mode; got modes {modes}")
    keys = {result.recipe.key for result in results}
    if len(keys) != 1:
        raise ValueError(
            "the results come from different recipes "
            f"({', '.join(repr(r.recipe) for r in results)}); run both modes with the same "
            "recipe and overrides so their rows compare"
        )
    return pd.concat(
        [result.table.assign(mode=result.mode) for result in results], ignore_index=True
    )[["mode", *results[0].table.columns]]
