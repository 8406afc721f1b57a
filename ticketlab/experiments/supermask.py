"""Supermasks: a mask alone turns an untrained network into a classifier.

Zhou, Lan, Liu & Yosinski, "Deconstructing Lottery Tickets: Zeros, Signs, and the Supermask"
(NeurIPS 2019, arXiv 1905.01067). Their abstract reports "Supermasks, or masks that can be applied
to an untrained, randomly initialized network to produce a model with performance far better than
chance (86% on MNIST, 41% on CIFAR-10)".

The experiment, for each seed (LeNet-300-100 on the 5k MNIST subset, ``lenet_mnist_paper``):

1. train the dense network once (the only training in the whole experiment);
2. for each target density, rank every weight by the **large_final_same_sign** score
   ``max(0, w_final · sign(w_init))``: weights whose sign flipped during training score 0, the
   others their final magnitude. Keep the top-scoring weights of each layer
   (``layer_densities``: hidden layers at the density, the output layer at the density iterative
   pruning at the recipe's rates would leave it, e.g. 33.7 % for 10 %);
3. apply that mask to the **untrained initialization** and measure test accuracy, with no training
   at all. The same is done with a random mask of the same per-layer counts, and, as an
   exploratory variant, with the "signed constant" network, in which every kept weight is replaced
   by ±σ (σ = the standard deviation of its layer's initial weights, the sign of its initial value).

Table settings: ``supermask``, ``random_mask``, ``signed_supermask`` (masked, one row per seed and
density), ``unmasked`` (the untrained dense network) and ``trained`` (the dense network after
training), both with density 1.

Our dense network trains on 3,500 images for a few epochs, not on 55,000 images for ~55 epochs;
the 86 % of the paper is at a sparsity its abstract does not give, so we test the direction
("far above chance", "better than a random mask"), not the number.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd
from torch import Tensor

from .. import prune
from ..config import budget
from ..config import device as pick_device
from ..imp import derive_seed
from ..masks import Mask
from ..population import train_many
from ..recipes import Recipe, get
from ..stats import seed_list
from ..training import evaluate
from ..verdict import Claim
from ._result import ExperimentResult
from ._units import over_seed_groups
from .deconstruct import densities_list, layer_densities, point_plot

__all__ = ["CLAIMS", "DENSITIES", "large_final_same_sign", "signed_constant", "supermask"]

_CITATION = "Zhou, Lan, Liu & Yosinski, NeurIPS 2019 (arXiv 1905.01067), abstract"

DENSITIES = (0.5, 0.3, 0.2, 0.1, 0.05)
"""Default sweep of hidden-layer densities; the paper's best sparsity for its 86 % is not used."""

CHANCE = 0.1
"""Accuracy of guessing on 10 balanced classes."""

CLAIMS = (
    Claim(
        name="supermask far above chance",
        statement="An untrained network with a large_final_same_sign mask classifies MNIST far "
        "better than chance: averaged over the density sweep, test accuracy exceeds 40 % "
        "(four times the 10 % of guessing).",
        citation=_CITATION,
        metric="test_acc",
        treatment={"setting": "supermask"},
        direction="greater",
        margin=0.4,
        min_seeds=3,
        unit="%",
        scale=100,
    ),
    Claim(
        name="supermask beats random mask",
        statement="On the same untrained initialization, the large_final_same_sign mask is more "
        "accurate than a random mask with the same number of weights in each layer.",
        citation=_CITATION,
        metric="test_acc",
        treatment={"setting": "supermask"},
        control={"setting": "random_mask"},
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
)


def large_final_same_sign(
    initial: Mapping[str, Tensor], final: Mapping[str, Tensor], densities: Mapping[str, float]
) -> Mask:
    """The large_final_same_sign mask of Zhou et al. (2019): per layer, keep the weights with the
    largest ``max(0, w_final · sign(w_init))``.

    ``initial`` and ``final`` map parameter names to the weights before and after training (same
    shapes, same device); ``densities`` names the layers to mask and the fraction each keeps.
    A weight whose sign changed scores 0 and is kept only if a layer needs more weights than
    kept their sign (ranked by ``prune.top``: among ties the lower row-major index goes first).
    """
    scores = {name: (final[name] * initial[name].sign()).clamp_min(0) for name in densities}
    return prune.top(scores, densities)


def signed_constant(state: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
    """A copy of ``state`` where each layer in ``names`` becomes σ · sign(w), σ = the standard
    deviation of that layer's weights in ``state`` (computed over the whole, unmasked layer)."""
    out = {name: value.detach().clone() for name, value in state.items()}
    for name in names:
        out[name] = out[name].std() * out[name].sign()
    return out


@over_seed_groups(lambda: budget(quick=3, full=5))
def supermask(
    density: float | Sequence[float] = DENSITIES,
    seeds: int | Sequence[int] | None = None,
    steps: int | None = None,
    signed: bool = True,
    recipe: str | Recipe = "lenet_mnist_paper",
    device=None,
    progress: bool = True,
    **overrides,
) -> ExperimentResult:
    """Supermasks on untrained networks vs random masks (see the module docstring).

    Args:
        density: fraction of weights kept in the hidden layers, or a list of them (a sweep).
        seeds: a count (seeds 0…n−1) or explicit seeds (default: 3 quick, 5 full). A seed sets
            the initialization and the data order of its dense run.
        steps: training steps of the dense run (default: the recipe's budget).
        signed: also evaluate the signed-constant variant (cheap: no training).
        recipe: a preset name or ``Recipe``; ``overrides`` replace its fields (e.g. ``lr=2e-3``).
        device: where to compute (default ``ticketlab.device()``).
    Returns an ``ExperimentResult`` whose ``table`` has one row per (seed, setting, density):
    seed, setting, density (target density of the hidden layers; 1 for unmasked and trained),
    mask_density (fraction of all prunable weights kept), test_acc, test_loss, val_acc
    (accuracies in [0, 1]). ``extras``: ``masks[(seed, density)]`` (the supermasks),
    ``random_masks[(seed, density)]``, ``initial[seed]`` and ``trained[seed]`` (state_dicts),
    ``recipe``.
    """
    started = time.perf_counter()
    seeds = seed_list(budget(quick=3, full=5) if seeds is None else seeds)
    densities = densities_list(density)
    if steps is not None:
        overrides["steps"] = steps
    rec = get(recipe, **overrides)
    dev = pick_device(device)
    data = rec.data.load(dev)

    models = [rec.model.build(seed) for seed in seeds]
    initial = {seed: rec.model.build(seed).to(dev).state_dict() for seed in seeds}
    runs = train_many(models, data, rec.train, masks=[None] * len(seeds), data_seeds=seeds,
                      progress=progress)  # fmt: skip
    trained = {seed: run.model.state_dict() for seed, run in zip(seeds, runs, strict=True)}

    rows: list[dict] = []
    masks, random_masks = {}, {}

    def measure(seed: int, setting: str, target: float, state, mask=None) -> None:
        model = rec.model.build(seed).to(dev)
        model.load_state_dict(state)
        if mask is not None:
            mask.apply(model)
        test_loss, test_acc = evaluate(model, data.test)
        _, val_acc = evaluate(model, data.val)
        rows.append({
            "seed": seed, "setting": setting, "density": target,
            "mask_density": 1.0 if mask is None else mask.density,
            "test_acc": test_acc, "test_loss": test_loss, "val_acc": val_acc,
        })  # fmt: skip

    for seed in seeds:
        measure(seed, "trained", 1.0, trained[seed])
        measure(seed, "unmasked", 1.0, initial[seed])
        template = rec.model.build(seed)
        for d in densities:
            per_layer = layer_densities(rec, template, d)
            mask = large_final_same_sign(initial[seed], trained[seed], per_layer)
            random_mask = prune.random(mask, seed=derive_seed(seed, d, "supermask-random"))
            masks[(seed, d)], random_masks[(seed, d)] = mask, random_mask
            measure(seed, "supermask", d, initial[seed], mask)
            measure(seed, "random_mask", d, initial[seed], random_mask)
            if signed:
                measure(seed, "signed_supermask", d, signed_constant(initial[seed], per_layer),
                        mask)  # fmt: skip

    return ExperimentResult(
        name="supermask",
        table=pd.DataFrame(rows),
        claims=CLAIMS,
        extras={
            "masks": masks,
            "random_masks": random_masks,
            "initial": initial,
            "trained": trained,
            "recipe": rec,
        },
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


_SETTINGS = ("supermask", "signed_supermask", "random_mask")


def _plot(result: ExperimentResult):
    table = result.table
    masked = table[table["setting"].isin(_SETTINGS)].copy()
    masked["weights kept"] = (masked["density"] * 100).map(lambda d: f"{d:.3g}")
    order = [f"{d * 100:.3g}" for d in sorted(masked["density"].unique(), reverse=True)]
    trained = table.loc[table["setting"] == "trained", "test_acc"].mean()
    return point_plot(
        masked, x="weights kept", hue="setting", order=order,
        hue_order=[s for s in _SETTINGS if s in set(masked["setting"])],
        title="Untrained LeNet-300-100 under a mask (mean, 95% CI over seeds)",
        xlabel="Weights kept in the hidden layers (%)", reference=trained,
        reference_label="dense, trained", chance=CHANCE,
    )  # fmt: skip
