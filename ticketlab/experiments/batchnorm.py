"""BatchNorm-only training: random features, rescaled and shifted, are enough to classify.

Frankle, Schwab & Morcos, "Training BatchNorm and Only BatchNorm: On the Expressive Power of
Random Features in CNNs" (ICLR 2021), abstract: with every weight frozen at its random
initialization and only the BatchNorm γ and β trained, "sufficiently deep ResNets reach 82%
(CIFAR-10) [...] accuracy", "far higher than when training an equivalent number of randomly
chosen parameters elsewhere in the network", and BatchNorm learns to "disable around a third of
the random features".

This experiment asks the same questions at workbook scale: CIFAR-style ResNets (``width`` 8) on
the 5,000-image MNIST subset, average-pooled to 14×14 so that the sweep fits a laptop CPU. For
each depth and seed, one starting network (He-normal weights, γ ~ U[0, 1], β = 0, as in open_lth)
is trained three ways, each with the same data order:

* ``bn_only``: only BatchNorm γ/β train. The output layer stays frozen by default
  (``train_output=False``): whether the paper's headline runs trained it is unverified.
* ``random_params``: BatchNorm is frozen (γ stays at its random draw) and the same number of
  randomly chosen parameter elements elsewhere in the network (outside the output layer) train.
* ``full``: every parameter trains (the reference).

All three use Adam at the same learning rate, divided by 10 for the last quarter of training so
the final accuracies are not read off mid-oscillation. Absolute numbers are not comparable with the
paper's (MNIST is easier than CIFAR-10, our networks are far shallower and train for minutes); the
claims test directions and a bar of our own for "far above chance".

Budgets: quick mode (depths 8 and 14, 3 seeds, 150 steps) takes about 80 s of one CPU core; full
mode (depths 8, 14, 20, 4 seeds, 400 steps) about 7 minutes. When the budgets were set, three
quick runs (seeds 0–2, 3–5, 6–8) and one full run each supported all three claims.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import pandas as pd
import torch.nn.functional as F

from ..batchnorm import (
    DISABLED_THRESHOLD,
    batchnorm_parameter_count,
    disabled_fraction,
    freeze_all_but_batchnorm,
    gamma_frame,
    init_gamma,
    random_subset,
    trainable_count,
)
from ..config import budget
from ..config import device as pick_device
from ..data import Dataset, Split, mnist
from ..imp import derive_seed
from ..models import resnet
from ..population import train_many
from ..stats import seed_list, t_errorbar
from ..training import TrainConfig
from ..verdict import Claim
from ._result import ExperimentResult
from ._units import over_seed_groups

__all__ = ["CHANCE", "CLAIMS", "SETTINGS", "batchnorm_only", "downsample"]

SETTINGS = ("bn_only", "random_params", "full")
"""What trains, in table order: BatchNorm only, an equal count of random weights, everything."""

CHANCE = 0.1
"""Accuracy of guessing among MNIST's ten balanced classes."""

_CITATION = "Frankle, Schwab & Morcos (ICLR 2021), abstract"
_DEPTH_CLAIM = "BN-only grows with depth"

CLAIMS = (
    Claim(
        name="BN-only far above chance",
        statement="A ResNet whose only trained parameters are BatchNorm's γ and β classifies far "
        "above chance at the deepest depth. The bar is this lab's reading of 'far above': 40% "
        "test accuracy, four times the 10% of guessing (the paper reports 82% on CIFAR-10, "
        "also ten classes, for much deeper networks).",
        citation=_CITATION,
        metric="test_acc",
        treatment={"setting": "bn_only", "depth_role": "deepest"},
        control=None,
        direction="greater",
        margin=CHANCE + 0.3,
        min_seeds=2,
        unit="%",
        scale=100,
    ),
    Claim(
        name="BN-only beats random params",
        statement="Training only BatchNorm beats training the same number of randomly chosen "
        "parameters elsewhere in the network (BatchNorm frozen), averaged over the depths.",
        citation=_CITATION,
        metric="test_acc",
        treatment={"setting": "bn_only"},
        control={"setting": "random_params"},
        direction="greater",
        margin=0.0,
        min_seeds=2,
        unit="pp",
        scale=100,
    ),
    Claim(
        name=_DEPTH_CLAIM,
        statement="With BatchNorm-only training, the deepest ResNet is more accurate than the "
        "shallowest one of the same width ('sufficiently deep ResNets' reach high accuracy). Only "
        "evaluated when the run has at least two depths.",
        citation=_CITATION,
        metric="test_acc",
        treatment={"setting": "bn_only", "depth_role": "deepest"},
        control={"setting": "bn_only", "depth_role": "shallowest"},
        direction="greater",
        margin=0.0,
        min_seeds=2,
        unit="pp",
        scale=100,
    ),
)


def downsample(data: Dataset, factor: int) -> Dataset:
    """``data`` with images average-pooled by ``factor`` (28×28 → 14×14 for 2); 1 returns ``data``.

    Inputs (N, C, H, W) float32 stay on their device; labels are shared, not copied.
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"downsample factor must be a positive int (1 = keep 28×28), got {factor}")
    if factor == 1:
        return data
    splits = {
        name: Split(F.avg_pool2d(split.X, factor), split.y) for name, split in data.splits.items()
    }
    return Dataset(f"{data.name}-pool{factor}", num_classes=data.num_classes, **splits)


def _depth_roles(depths: Sequence[int]) -> dict[int, str]:
    roles = {d: "middle" for d in depths}
    roles[min(depths)] = "shallowest"
    roles[max(depths)] = "deepest"  # a single depth is both; it is called the deepest
    return roles


@over_seed_groups(lambda: budget(quick=3, full=4))
def batchnorm_only(
    depths: Sequence[int] | None = None,
    seeds: int | Sequence[int] | None = None,
    width: int = 8,
    steps: int | None = None,
    lr: float = 2e-2,
    batch_size: int = 128,
    pool: int = 2,
    train_output: bool = False,
    threshold: float = DISABLED_THRESHOLD,
    device=None,
    progress: bool = True,
) -> ExperimentResult:
    """Train every (depth, seed) three ways (module docstring); one row per depth, seed, setting.

    Args:
        depths: ResNet depths, 6n + 2 (default (8, 14) quick, (8, 14, 20) full).
        seeds: a count (seeds 0…n−1) or explicit seeds, at least 2 (default 3 quick, 4 full).
            A seed fixes the weights, the γ draw, the random control's choice and the data order.
        width: channels of the first ResNet stage (then 2× and 4×).
        steps, lr, batch_size: Adam for ``steps`` (default 150 quick, 400 full) at ``lr``, then
            ``lr / 10`` for the last quarter; the same for all three settings.
        pool: average-pooling factor for the 28×28 MNIST images (2 → 14×14; 1 keeps them).
        train_output: also train the output layer in ``bn_only`` and ``random_params``.
        threshold: |γ| below which a feature counts as disabled (``disabled_fraction``).

    Returns an ``ExperimentResult``. ``table`` columns: depth, depth_role ("shallowest",
    "middle", "deepest"), seed, setting, trainable (parameter elements that trained),
    bn_params (γ/β elements in the network), test_acc, val_acc (in [0, 1]), train_loss,
    disabled_fraction (for random_params, whose γ never moves, the fraction at initialization:
    the baseline to compare with), chance (0.1), diverged.
    ``extras``: "gammas" (``gamma_frame`` rows of every bn_only network, with depth and seed),
    "models" ({(setting, depth, seed): trained model}), "threshold", "chance". The depth claim is
    evaluated only when ``depths`` holds at least two depths.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    depths = budget(quick=(8, 14), full=(8, 14, 20)) if depths is None else depths
    depths = sorted(set(depths))
    if not depths:
        raise ValueError("depths is empty; pass ResNet depths such as (8, 14)")
    seeds = seed_list(budget(quick=3, full=4) if seeds is None else seeds)
    if len(seeds) < 2:
        raise ValueError(
            f"need at least 2 distinct seeds for confidence intervals, got {seeds}; "
            "pass seeds=3 or more"
        )
    steps = budget(quick=150, full=400) if steps is None else steps
    config = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, milestones=(steps * 3 // 4,), eval_every=steps
    )
    data = downsample(mnist(device=pick_device(device)), pool)

    rows, gammas, models = [], [], {}
    roles = _depth_roles(depths)
    bar = tqdm(total=len(depths) * len(seeds) * len(SETTINGS), desc="batchnorm_only",
               disable=not progress)  # fmt: skip
    for depth in depths:
        starts = {}
        for seed in seeds:
            starts[seed] = resnet(depth, width, seed=seed)
            init_gamma(starts[seed], "uniform", seed=derive_seed(seed, "bn-gamma"))
        # One setting's seeds train together (a population where that is faster).
        for setting in SETTINGS:
            group = [copy.deepcopy(starts[seed]) for seed in seeds]
            chosen, grad_masks = [None] * len(seeds), [None] * len(seeds)
            for i, (seed, model) in enumerate(zip(seeds, group, strict=True)):
                if setting == "bn_only":
                    freeze_all_but_batchnorm(model, train_output)
                elif setting == "random_params":
                    count = batchnorm_parameter_count(model)
                    chosen[i], grad_masks[i] = random_subset(
                        model, count, derive_seed(seed, "bn-random"), train_output
                    )
            runs = train_many(group, data, config, masks=[None] * len(seeds),
                              grad_masks=grad_masks, data_seeds=seeds, progress=False)  # fmt: skip
            for seed, model, picked, run in zip(seeds, group, chosen, runs, strict=True):
                rows.append({
                    "depth": depth, "depth_role": roles[depth], "seed": seed, "setting": setting,
                    "trainable": trainable_count(model, grad_mask=picked),
                    "bn_params": batchnorm_parameter_count(starts[seed]),
                    "test_acc": run.test_acc, "val_acc": run.val_acc,
                    "train_loss": run.train_loss,
                    "disabled_fraction": disabled_fraction(model, threshold),
                    "chance": CHANCE, "diverged": run.diverged,
                })  # fmt: skip
                if setting == "bn_only":
                    gammas.append(gamma_frame(model).assign(depth=depth, seed=seed))
                models[setting, depth, seed] = model
                bar.update()
    bar.close()
    # Rows, γ frames and models in the order of depth, seed, setting.
    order = {setting: i for i, setting in enumerate(SETTINGS)}
    rows.sort(key=lambda r: (r["depth"], seeds.index(r["seed"]), order[r["setting"]]))
    models = dict(sorted(models.items(), key=lambda kv: (kv[0][1], seeds.index(kv[0][2]),
                                                          order[kv[0][0]])))  # fmt: skip
    # with one depth there is no shallower network to compare with
    claims = CLAIMS if len(depths) > 1 else tuple(c for c in CLAIMS if c.name != _DEPTH_CLAIM)
    return ExperimentResult(
        name="batchnorm_only",
        table=pd.DataFrame(rows),
        claims=claims,
        extras={
            "gammas": pd.concat(gammas, ignore_index=True),
            "models": models,
            "threshold": threshold,
            "chance": CHANCE,
        },
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


def _plot(result: ExperimentResult):
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = result.table.assign(test_pct=result.table["test_acc"] * 100)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    sns.pointplot(
        data=table, x="depth", y="test_pct", hue="setting", hue_order=list(SETTINGS),
        errorbar=t_errorbar, dodge=0.25, capsize=0.08, palette="colorblind", ax=ax,
    )  # fmt: skip
    ax.axhline(CHANCE * 100, ls="--", lw=1.2, color="0.4", label="chance (10%)")
    ax.set_xlabel("ResNet depth (layers)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Mean over seeds, 95% CI", fontsize="medium")
    ax.legend(title="what trains", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    plt.close(fig)
    return fig
