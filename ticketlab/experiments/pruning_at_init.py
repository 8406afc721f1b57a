"""Pruning at initialization: missing the mark that pruning after training hits.

Frankle, Dziugaite, Roy & Carbin, "Pruning Neural Networks at Initialization: Why are We Missing
the Mark?" (ICLR 2021, arXiv 2009.08576). Their abstract: methods that prune at initialization
"surpass the trivial baseline of random pruning" but "remain below the accuracy of magnitude
pruning after training", and "unlike pruning after training, randomly shuffling the weights these
methods prune within each layer or sampling new initial values preserves or improves accuracy".

For each seed (LeNet-300-100 on the 5k MNIST subset, ``lenet_mnist_paper``), masks keeping the
same fraction ``density`` of all prunable weights, each trained from the *same* initialization for
the recipe's full budget:

* ``snip``: SNIP (Lee et al. 2019), |∂L/∂w · w| on one batch of 10 × classes = 100 training
  examples drawn with the seed;
* ``magnitude_init``: the largest |w| at initialization;
* ``magnitude_trained``: "magnitude pruning after training": train the dense network, keep the
  largest |w|, rewind the survivors to their initial values. One-shot, not iterative (so not IMP):
  iterative pruning at 20 % per round would need ~21 rounds to reach 1 %, which our budget cannot
  afford. Rewinding to initialization makes this a one-shot lottery ticket (Frankle & Carbin
  2019);
* ``random``: uniformly random, every layer at ``density``: the trivial baseline.

The three scored methods rank all layers together, so each chooses its own per-layer densities
(SNIP does so by construction; ranking magnitudes globally gives the magnitude methods the same
freedom). Their masks are also **shuffled** within each layer (``ticketlab.prune.shuffle``) and
trained: a shuffled mask keeps the method's per-layer densities and nothing else. ``random`` is
not shuffled: a uniformly random mask, shuffled, is again a uniformly random mask, so its shuffle
would only be a second sample of the same baseline.

Our setting is far smaller than the paper's (LeNet on 3,500 images, 10 epochs quick or 40 full),
so the direction of each claim is tested, not its size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd
import torch

from .. import prune
from ..config import budget, generator
from ..config import device as pick_device
from ..imp import derive_seed
from ..masks import Mask
from ..population import train_many
from ..recipes import Recipe, get
from ..stats import seed_list
from ..verdict import Claim
from ._result import ExperimentResult
from ._units import over_seed_groups
from .deconstruct import densities_list, point_plot

__all__ = ["CLAIMS", "METHODS", "pruning_at_init", "snip_batch"]

METHODS = ("snip", "magnitude_init", "random", "magnitude_trained")
"""Every method ``pruning_at_init`` knows, in the order tables and plots show them."""

DENSITY = 0.01
"""Default fraction of all prunable weights kept. Low on purpose: in pilot runs at 2 %, the full
40-epoch budget brought every non-random mask to within ~2 pp of the others (90–92 %), too
close for a few seeds to order them; at 1 % the choice of weights still shows."""

_CITATION = "Frankle, Dziugaite, Roy & Carbin, ICLR 2021 (arXiv 2009.08576), abstract"
# A shuffle "does not hurt" if it costs less than 1 pp: about the standard error of one network's
# accuracy on the 1,000 test images (√(0.9 · 0.1 / 1000) ≈ 0.95 pp), the finest harm one run
# can show.
_SHUFFLE_MARGIN = 0.01


def _beats(method: str, label: str) -> Claim:
    return Claim(
        name=f"after training beats {label}",
        statement=f"A mask from magnitude pruning after training (rewound to initialization) "
        f"trains to higher test accuracy than the {label} mask at the same density.",
        citation=_CITATION,
        metric="test_acc",
        treatment={"method": "magnitude_trained", "shuffled": False},
        control={"method": method, "shuffled": False},
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    )


def _shuffle_harmless(method: str, label: str) -> Claim:
    return Claim(
        name=f"shuffling does not hurt {label}",
        statement=f"Shuffling the {label} mask within each layer costs less than one "
        "percentage point of test accuracy (the paper: it preserves or improves accuracy).",
        citation=_CITATION,
        metric="test_acc",
        treatment={"method": method, "shuffled": False},
        control={"method": method, "shuffled": True},
        direction="less",
        margin=_SHUFFLE_MARGIN,
        min_seeds=3,
        unit="pp",
        scale=100,
    )


def _beats_random(method: str, label: str) -> Claim:
    return Claim(
        name=f"{label} beats random",
        statement=f"The {label} mask trains to higher test accuracy than random pruning (every "
        "layer at the same density).",
        citation=_CITATION,
        metric="test_acc",
        treatment={"method": method, "shuffled": False},
        control={"method": "random", "shuffled": False},
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    )


CLAIMS = (
    _beats_random("snip", "SNIP"),
    _beats_random("magnitude_init", "magnitude-at-init"),
    _beats("snip", "SNIP"),
    _beats("magnitude_init", "magnitude-at-init"),
    Claim(
        name="shuffling hurts after-training mask",
        statement="Shuffling the after-training mask within each layer lowers test accuracy: "
        "which weights it keeps matters, not only how many per layer.",
        citation=_CITATION,
        metric="test_acc",
        treatment={"method": "magnitude_trained", "shuffled": False},
        control={"method": "magnitude_trained", "shuffled": True},
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
    _shuffle_harmless("snip", "SNIP"),
    _shuffle_harmless("magnitude_init", "magnitude-at-init"),
)


def snip_batch(data, seed: int, per_class: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` × classes training examples, drawn uniformly without replacement with
    ``generator(seed)``: the batch SNIP scores on. Returns (X, y) on the data's device.

    10 × classes is the batch a reimplementation reports for Frankle et al. (2021); we have not
    checked it against the paper, so treat it as our choice."""
    X, y = data.train
    n = per_class * data.num_classes
    if n > len(y):
        raise ValueError(f"asked for {n} SNIP examples but the training set has {len(y)}")
    pick = torch.randperm(len(y), generator=generator(seed))[:n].to(X.device)
    return X.index_select(0, pick), y.index_select(0, pick)


def _claims_for(methods: Sequence[str]) -> list[Claim]:
    """The claims whose every arm is a method that was run."""
    wanted = set(methods)
    keep = []
    for claim in CLAIMS:
        arms = [claim.treatment] + ([claim.control] if claim.control else [])
        if all(arm["method"] in wanted for arm in arms):
            keep.append(claim)
    return keep


@over_seed_groups(lambda: budget(quick=4, full=6))
def pruning_at_init(
    density: float | Sequence[float] = DENSITY,
    seeds: int | Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    steps: int | None = None,
    recipe: str | Recipe = "lenet_mnist_paper",
    device=None,
    progress: bool = True,
    **overrides,
) -> ExperimentResult:
    """Masks chosen at initialization vs after training, each trained as is and shuffled.

    Args:
        density: fraction of all prunable weights kept (or a list of them).
        seeds: a count (seeds 0…n−1) or explicit seeds (default: 3 quick, 5 full). A seed sets
            the initialization, the data order, the SNIP batch, and the random draws.
        methods: any of ``METHODS``; claims about methods not run are left out.
        steps: training steps of every run (default: the recipe's budget).
        recipe: a preset name or ``Recipe``; ``overrides`` replace its fields.
        device: where to compute (default ``ticketlab.device()``).
    Returns an ``ExperimentResult`` whose ``table`` has one row per (seed, method, shuffled,
    density): seed, method (``METHODS``, plus "dense": the unpruned network, density 1),
    shuffled (bool), density (the target), mask_density (fraction of all prunable weights
    actually kept), test_acc, val_acc, train_loss, early_stop_step, early_stop_test_acc,
    diverged. ``extras``: ``masks[(seed, method, shuffled, density)]``, ``trained[seed]`` (the
    dense network's final ``state_dict``, when "magnitude_trained" ran), ``recipe``.
    """
    started = time.perf_counter()
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of {METHODS}; got {methods!r}")
    methods = [m for m in METHODS if m in methods]
    seeds = seed_list(budget(quick=4, full=6) if seeds is None else seeds)
    densities = densities_list(density)
    if steps is not None:
        overrides["steps"] = steps
    rec = get(recipe, **overrides)
    dev = pick_device(device)
    data = rec.data.load(dev)

    rows: list[dict] = []
    trained = {}
    if "magnitude_trained" in methods:
        dense = [rec.model.build(seed) for seed in seeds]
        runs = train_many(dense, data, rec.train, masks=[None] * len(seeds), data_seeds=seeds,
                          progress=progress)  # fmt: skip
        for seed, run in zip(seeds, runs, strict=True):
            trained[seed] = run.model
            rows.append({"seed": seed, "method": "dense", "shuffled": False, "density": 1.0,
                         "mask_density": 1.0, **run.summary()})  # fmt: skip

    jobs: list[dict] = []
    for seed in seeds:
        init = rec.model.build(seed).to(dev)
        for d in densities:
            chosen: dict[str, Mask] = {}
            if "snip" in methods:
                X, y = snip_batch(data, derive_seed(seed, "snip-batch"))
                chosen["snip"] = prune.snip(init, Mask.ones(init), X, y, d)
            if "magnitude_init" in methods:
                chosen["magnitude_init"] = prune.one_shot(init, d, scope="global")
            if "random" in methods:
                uniform = prune.random(Mask.ones(init), 1 - d, seed=derive_seed(seed, d, "random"))
                chosen["random"] = uniform
            if "magnitude_trained" in methods:
                chosen["magnitude_trained"] = prune.one_shot(trained[seed], d, scope="global")
            for method, mask in chosen.items():
                jobs.append({"seed": seed, "method": method, "shuffled": False, "density": d,
                             "mask": mask})  # fmt: skip
                if method != "random":
                    shuffled = prune.shuffle(mask, seed=derive_seed(seed, d, method, "shuffle"))
                    jobs.append({"seed": seed, "method": method, "shuffled": True, "density": d,
                                 "mask": shuffled})  # fmt: skip

    runs = train_many(
        [rec.model.build(j["seed"]) for j in jobs], data, rec.train,
        masks=[j["mask"] for j in jobs], data_seeds=[j["seed"] for j in jobs], progress=progress,
    )  # fmt: skip
    for job, run in zip(jobs, runs, strict=True):
        rows.append({"seed": job["seed"], "method": job["method"], "shuffled": job["shuffled"],
                     "density": job["density"], "mask_density": job["mask"].density,
                     **run.summary()})  # fmt: skip

    masks = {(j["seed"], j["method"], j["shuffled"], j["density"]): j["mask"] for j in jobs}
    return ExperimentResult(
        name="pruning_at_init",
        table=pd.DataFrame(rows),
        claims=_claims_for(methods),
        extras={
            "masks": masks,
            "trained": {seed: model.state_dict() for seed, model in trained.items()},
            "recipe": rec,
        },
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


def _plot(result: ExperimentResult):
    table = result.table
    sparse = table[table["method"] != "dense"].copy()
    sparse["mask"] = sparse["shuffled"].map({False: "as chosen", True: "shuffled in each layer"})
    dense = table.loc[table["method"] == "dense", "test_acc"]
    densities = ", ".join(f"{d * 100:.3g}%" for d in sorted(sparse["density"].unique()))
    return point_plot(
        sparse, x="method", hue="mask", order=[m for m in METHODS if m in set(sparse["method"])],
        hue_order=["as chosen", "shuffled in each layer"],
        title=f"LeNet-300-100, {densities} of weights kept (mean, 95% CI over seeds)",
        xlabel="How the mask was chosen", reference=dense.mean() if len(dense) else None,
        reference_label="dense",
    )  # fmt: skip
