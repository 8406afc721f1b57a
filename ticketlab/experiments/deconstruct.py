"""Shared pieces of the "deconstructing lottery tickets" experiments.

Three experiments ask what a lottery ticket's mask really encodes:

* ``supermask`` (Zhou, Lan, Liu & Yosinski 2019): a mask alone, applied to an *untrained*
  network, already computes far better than chance.
* ``pruning_at_init`` (Frankle, Dziugaite, Roy & Carbin 2021): masks chosen at initialization are
  worse than masks chosen after training, and only the latter care *which* weights they keep.
* ``rewinding`` (Renda, Frankle & Carbin 2020): after pruning, replaying the learning-rate
  schedule beats fine-tuning at the final learning rate.

This module holds what they share: how a target density is spread over the layers
(``layer_densities``) and the point plot with 95 % Student-t intervals that each experiment
draws; masks are ranked by ``ticketlab.prune``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from torch import Tensor, nn

from .. import prune
from ..masks import Mask
from ..models import prunable_names
from ..recipes import Recipe
from ..stats import t_errorbar
from ..verdict import SEED

__all__ = [
    "densities_list",
    "layer_densities",
    "masked_copy",
    "point_plot",
]


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
    would leave it when the other layers reach ``density`` (``prune.layer_density``, the rule
    ``prune.one_shot`` follows). The rule is the same whether the recipe prunes layerwise or
    globally.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")
    rates = dict(recipe.prune.layer_rates)
    base = recipe.prune.prune_fraction
    return {
        name: density if name not in rates else prune.layer_density(density, rates[name], base)
        for name in prunable_names(model)
    }


def masked_copy(state: Mapping[str, Tensor], mask: Mask | None) -> dict[str, Tensor]:
    """A copy of ``state`` (a ``state_dict``) with the pruned weights set to zero."""
    out = {name: value.detach().clone() for name, value in state.items()}
    for name, keep in (mask or {}).items():
        out[name] = out[name] * keep.to(out[name].device, out[name].dtype)
    return out


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
