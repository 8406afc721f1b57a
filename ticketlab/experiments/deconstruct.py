"""Shared pieces of the "deconstructing lottery tickets" experiments.

Three experiments ask what a lottery ticket's mask really encodes:

* ``supermask`` (Zhou, Lan, Liu & Yosinski 2019): a mask alone, applied to an *untrained*
  network, already computes far better than chance.
* ``pruning_at_init`` (Frankle, Dziugaite, Roy & Carbin 2021): masks chosen at initialization are
  worse than masks chosen after training, and only the latter care *which* weights they keep.
* ``rewinding`` (Renda, Frankle & Carbin 2020): after pruning, replaying the learning-rate
  schedule beats fine-tuning at the final learning rate.

This module holds what they share: how a target density is spread over the layers
(``layer_densities``), ranking weights into a mask (``keep_largest``), training many networks at
once (``fit``), and the point plot with 95 % Student-t intervals that each experiment draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from ..masks import Mask
from ..models import prunable_names
from ..population import supports, train_population
from ..recipes import Recipe
from ..train import TrainConfig, TrainResult, train
from ..verdict import SEED, t_interval

__all__ = [
    "densities_list",
    "fit",
    "keep_largest",
    "layer_densities",
    "masked_copy",
    "point_plot",
    "seed_list",
    "t_errorbar",
]


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``seeds`` as a list: a count n means seeds 0 … n − 1. Raises on repeats or an empty list."""
    out = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"seeds must be a count >= 1 or distinct ints, got {seeds!r}")
    return out


def densities_list(density: float | Sequence[float]) -> list[float]:
    """``density`` as a list of fractions in (0, 1]; raises a clear error otherwise."""
    values = [density] if isinstance(density, (int, float)) else list(density)
    bad = [d for d in values if isinstance(d, bool) or not 0 < d <= 1]
    if not values or bad:
        raise ValueError(
            f"density must be a fraction of weights kept in (0, 1], or a list of them; got "
            f"{density!r}"
        )
    return [float(d) for d in values]


def layer_densities(recipe: Recipe, model: nn.Module, density: float) -> dict[str, float]:
    """Fraction of weights to keep in each prunable layer of ``model`` for a target ``density``.

    Every layer keeps ``density`` except those the recipe prunes at their own rate
    (``recipe.prune.layer_rates``): such a layer keeps what iterative pruning at the recipe's rates
    would leave it when the other layers reach ``density``. With rates p (default) and q (own),
    k = log(density) / log(1 − p) rounds leave it (1 − q)^k = density^(log(1 − q) / log(1 − p)).
    For ``lenet_mnist_paper`` (20 %, output 10 %: Frankle & Carbin 2019) the output layer keeps
    density^0.472, e.g. 15.8 % when the hidden layers keep 2 %; a rate of 0 keeps a layer dense.
    The rule is the same whether the recipe prunes layerwise or globally.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")
    rates = dict(recipe.prune.layer_rates)
    base = math.log1p(-recipe.prune.prune_fraction)
    out = {}
    for name in prunable_names(model):
        rate = rates.get(name)
        out[name] = density if rate is None else density ** (math.log1p(-rate) / base)
    return out


def keep_largest(scores: Mapping[str, Tensor], densities: Mapping[str, float]) -> Mask:
    """Per layer, keep the ``floor(d × n + 0.5)`` entries with the largest score (d = its density).

    ``scores`` maps a parameter name to a float tensor of that parameter's shape (any device);
    ``densities`` gives each named layer's fraction to keep. Ties are broken by position: among
    equal scores, the lower row-major index is kept. Returns a ``Mask`` on the scores' devices.
    """
    missing = sorted(set(scores) ^ set(densities))
    if missing:
        raise ValueError(
            f"scores and densities must name the same layers; they differ in {missing}"
        )
    kept = {}
    for name, score in scores.items():
        flat = torch.nan_to_num(score.detach().flatten(), nan=-math.inf)
        k = math.floor(densities[name] * flat.numel() + 0.5)
        order = torch.argsort(flat, descending=True, stable=True)
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[order[:k]] = True
        kept[name] = keep.view_as(score)
    return Mask(kept)


def fit(
    models: Sequence[nn.Module],
    data,
    config: TrainConfig,
    *,
    masks: Sequence[Mask | None],
    data_seeds: Sequence[int],
    start_step: int = 0,
    checkpoint_steps: Sequence[int] = (),
    progress: bool = True,
) -> list[TrainResult]:
    """Train ``models`` in place: one batched population when they allow it, else one by one."""
    if all(supports(m) for m in models):
        return train_population(
            models, data, config, masks=masks, data_seeds=data_seeds, start_step=start_step,
            checkpoint_steps=checkpoint_steps, progress=progress,
        )  # fmt: skip
    return [
        train(model, data, config, mask=mask, data_seed=seed, start_step=start_step,
              checkpoint_steps=checkpoint_steps, progress=progress)
        for model, mask, seed in zip(models, masks, data_seeds, strict=True)
    ]  # fmt: skip


def masked_copy(state: Mapping[str, Tensor], mask: Mask | None) -> dict[str, Tensor]:
    """A copy of ``state`` (a ``state_dict``) with the pruned weights set to zero."""
    out = {name: value.detach().clone() for name, value in state.items()}
    for name, keep in (mask or {}).items():
        out[name] = out[name] * keep.to(out[name].device, out[name].dtype)
    return out


def t_errorbar(values: pd.Series) -> tuple[float, float]:
    """(low, high) of the 95 % Student-t interval of the mean, for seaborn's ``errorbar=``."""
    if len(values) < 2:
        mean = float(values.mean())
        return mean, mean
    _, low, high = t_interval(values)
    return low, high


def point_plot(
    table: pd.DataFrame,
    *,
    x: str,
    hue: str | None,
    order: Sequence | None,
    hue_order: Sequence | None,
    title: str,
    xlabel: str,
    ax=None,
    reference: float | None = None,
    reference_label: str = "",
    chance: float | None = None,
):
    """Mean test accuracy (%) per ``x`` (and ``hue``) with 95 % Student-t intervals over seeds.

    Rows of one seed and group are averaged first, so seeds are the replicates. ``reference``
    draws a dashed horizontal line (e.g. the trained dense network), ``chance`` a dotted one.
    Returns the matplotlib Figure (closed if this function created it).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    keys = [k for k in (x, hue) if k is not None]
    per_seed = table.groupby([*keys, SEED], sort=False)["test_acc"].mean().reset_index()
    per_seed["test_acc"] *= 100
    owned = ax is None
    if owned:
        fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    sns.pointplot(
        data=per_seed, x=x, y="test_acc", hue=hue, order=order, hue_order=hue_order,
        errorbar=t_errorbar, dodge=0.35 if hue else False, palette="colorblind" if hue else None,
        capsize=0.1, linestyle="none", marker="o", ax=ax,
    )  # fmt: skip
    if reference is not None:
        ax.axhline(reference * 100, ls="--", lw=1.2, color="0.3", label=reference_label)
    if chance is not None:
        ax.axhline(chance * 100, ls=":", lw=1.2, color="0.5", label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Test accuracy (%)")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    if owned:
        plt.close(fig)
    return ax.figure
