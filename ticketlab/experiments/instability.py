"""Instability analysis: are two runs from the same weights linearly connected?

Frankle, Dziugaite, Roy & Carbin ("Linear Mode Connectivity and the Lottery Ticket Hypothesis",
ICML 2020) train two copies of a network from the same weights W_k (the weights after k steps)
with different data orders, then measure the error barrier on the straight line between the two
results. Their abstract: networks "become stable to SGD noise … early in training", which
"occurs at initialization for small-scale settings (MNIST)"; and sparse subnetworks "only reach
full accuracy when they are stable to SGD noise".

For each seed, rewind step k and kind (``"dense"``; with ``sparse_round``, also the IMP
``"ticket"`` of that round and a ``"random"`` mask with the same per-layer counts):

1. train from the initialization (masked for sparse kinds) to step k with data seed = seed;
2. train two copies from W_k to the end with two other data orders;
3. interpolate between the copies (``ticketlab.connectivity``) and record the error barrier and the
   L2 distance between them.

All copies that start at the same k train together as one population.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import pandas as pd

from .. import prune
from ..config import budget
from ..config import device as pick_device
from ..connectivity import error_barrier, interpolate, l2_distance
from ..imp import derive_seed
from ..imp import run as run_imp
from ..population import train_many
from ..recipes import Recipe, get
from ..rewinding import rewind
from ..stats import seed_list
from ..verdict import Claim
from ._result import ExperimentResult
from ._units import over_seed_groups

__all__ = ["CLAIMS", "instability"]

_LMC = "Frankle, Dziugaite, Roy & Carbin (ICML 2020)"

CLAIMS = (
    Claim(
        name="stable at initialization",
        statement="LeNet on MNIST is stable to SGD noise at initialization: two copies trained "
        "from the same initial weights with different data orders are linearly connected.",
        citation=f"{_LMC}, abstract; the < 2% barrier threshold is from secondary notes on §3",
        metric="barrier",
        treatment={"kind": "dense", "rewind_step": 0},
        control=None,
        direction="less",
        margin=0.02,
        min_seeds=2,
        unit="pp",
        scale=100,
    ),
    Claim(
        name="ticket at least as stable as random",
        statement="At the same sparsity, the IMP ticket rewound to initialization has no higher an "
        "error barrier than a randomly pruned subnetwork (within 0.5 pp).",
        citation=f"{_LMC}, abstract (sparse subnetworks and stability); LeNet details unverified",
        metric="barrier",
        treatment={"kind": "ticket", "rewind_step": 0},
        control={"kind": "random", "rewind_step": 0},
        direction="less",
        margin=0.005,
        min_seeds=2,
        unit="pp",
        scale=100,
    ),
    Claim(
        name="ticket copies end closer",
        statement="Two copies of the IMP ticket trained with different data orders end closer "
        "together (L2 distance) than two copies of a randomly pruned subnetwork.",
        citation="Frankle, Dziugaite, Roy & Carbin, arXiv 1903.01611v3 (2019), LeNet at 10.7%: "
        "distance 20.7 (IMP) vs 58.6 (random)",
        metric="distance",
        treatment={"kind": "ticket", "rewind_step": 0},
        control={"kind": "random", "rewind_step": 0},
        direction="less",
        margin=0.0,
        min_seeds=2,
    ),
)


@over_seed_groups(lambda: budget(quick=(0, 1, 2), full=(0, 1, 2, 3, 4)))
def instability(
    recipe: str | Recipe = "lenet_mnist_paper",
    rewind_steps: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
    sparse_round: int | None = None,
    points: int = 30,
    device=None,
    progress: bool = True,
    **overrides,
) -> ExperimentResult:
    """Error barriers between pairs of copies trained from the weights at each rewind step.

    Args:
        recipe: preset name or ``Recipe`` (default ``lenet_mnist_paper`` at the current budget).
        rewind_steps: the steps k copies branch from (default: 0 and two early steps).
        seeds: initializations (default: 3 quick, 5 full).
        sparse_round: also study the IMP ticket of this round and a random mask of the same
            per-layer density (None: dense only). IMP results come from the shared IMP cache.
        points: α values along each path, endpoints included.
        overrides: recipe fields, e.g. ``steps=500``.
    Returns an ``ExperimentResult``: ``table`` has one row per (seed, rewind_step, kind) with
    density, barrier (error, 0–1), distance (L2), error_a, error_b (endpoint test errors);
    ``extras["curves"]`` the interpolation curves (seed, rewind_step, kind, alpha, loss, error).
    """
    started = time.perf_counter()
    rec = get(recipe, **overrides)
    steps = rec.train.steps
    if rewind_steps is None:
        rewind_steps = (0, steps // 40, steps // 8)
    rewind_steps = sorted(set(rewind_steps))
    if rewind_steps[0] < 0 or rewind_steps[-1] >= steps:
        raise ValueError(f"rewind_steps must lie in [0, {steps}), got {rewind_steps}")
    seeds = seed_list(budget(quick=(0, 1, 2), full=(0, 1, 2, 3, 4)) if seeds is None else seeds)
    dev = pick_device(device)
    data = rec.data.load(dev)

    # (seed, kind) → (model at initialization, mask or None)
    starts: dict[tuple[int, str], tuple] = {(s, "dense"): (rec.model.build(s), None) for s in seeds}
    if sparse_round is not None:
        imp = run_imp(rec, rounds=sparse_round, seeds=seeds, device=dev, progress=progress)
        for s in seeds:
            ticket_mask = imp.masks[(s, sparse_round)]
            random_mask = prune.random(ticket_mask, seed=derive_seed(s, "instability-random"))
            for kind, mask in (("ticket", ticket_mask), ("random", random_mask)):
                model = rewind(rec.model.build(s).to(dev), imp_init(rec, s), mask)
                starts[(s, kind)] = (model, mask)

    def fit(models, masks, data_seeds, start, cfg, checkpoints=()):
        return train_many(
            models, data, cfg, masks=masks, data_seeds=data_seeds, start_step=start,
            checkpoint_steps=checkpoints, progress=progress,
        )  # fmt: skip

    # Stage 1: each start trains to the last rewind step, keeping W_k for every k.
    keys = list(starts)
    branch_points = {key: {0: copy.deepcopy(starts[key][0]).state_dict()} for key in keys}
    k_max = rewind_steps[-1]
    if k_max > 0:
        runs = fit(
            [copy.deepcopy(starts[key][0]) for key in keys],
            [starts[key][1] for key in keys],
            [key[0] for key in keys],
            0,
            rec.train.replace(steps=k_max, eval_every=k_max),
            checkpoints=[k for k in rewind_steps if k > 0],
        )
        for key, result in zip(keys, runs, strict=True):
            branch_points[key].update(result.checkpoints)

    # Stage 2: from each W_k, two copies with different data orders, then interpolate.
    rows, curves = [], []
    for k in rewind_steps:
        jobs = [(key, branch) for key in keys for branch in ("a", "b")]
        models = []
        for (seed, kind), _ in jobs:
            model = rec.model.build(seed).to(dev)
            models.append(rewind(model, branch_points[(seed, kind)][k], starts[(seed, kind)][1]))
        results = fit(
            models,
            [starts[key][1] for key, _ in jobs],
            [derive_seed(key[0], k, branch, "instability") for key, branch in jobs],
            k,
            rec.train,
        )
        by_job = dict(zip(jobs, results, strict=True))
        for seed, kind in keys:
            a, b = by_job[((seed, kind), "a")], by_job[((seed, kind), "b")]
            mask = starts[(seed, kind)][1]
            curve = interpolate(a.model, b.model, data.test, points=points, mask=mask)
            rows.append(
                {
                    "seed": seed,
                    "rewind_step": k,
                    "kind": kind,
                    "density": 1.0 if mask is None else mask.density,
                    "barrier": error_barrier(curve),
                    "distance": l2_distance(a.model, b.model),
                    "error_a": 1 - a.test_acc,
                    "error_b": 1 - b.test_acc,
                }
            )
            curves.append(curve.assign(seed=seed, rewind_step=k, kind=kind))

    table = pd.DataFrame(rows)
    claims = CLAIMS if sparse_round is not None else CLAIMS[:1]
    return ExperimentResult(
        name="instability",
        table=table,
        claims=claims,
        extras={"curves": pd.concat(curves, ignore_index=True), "recipe": rec},
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


def imp_init(rec: Recipe, seed: int) -> dict:
    """The initialization IMP rewinds seed ``seed``'s ticket to (rewind step 0)."""
    return rec.model.build(seed).state_dict()


def _plot(result: ExperimentResult):
    from ..plots import interpolation_curves

    return interpolation_curves(result.extras["curves"])
