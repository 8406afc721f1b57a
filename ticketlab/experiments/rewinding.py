"""After pruning, how to retrain: fine-tuning, weight rewinding, or learning-rate rewinding.

Renda, Frankle & Carbin, "Comparing Rewinding and Fine-tuning in Neural Network Pruning" (ICLR 2020,
arXiv 2003.02389). Their abstract: "Learning rate rewinding (which we propose) trains the unpruned
weights from their final values using the same learning rate schedule as weight rewinding. Both
rewinding techniques outperform fine-tuning". In the authors' released results the ordering
LR rewinding ≥ weight rewinding > fine-tuning holds across sparsities.

For each seed (LeNet-300-100 on the 5k MNIST subset):

1. train the dense network for T steps with SGD, momentum 0.9, learning rate 0.01 divided by 10
   at 50 % and 75 % of T (the ``lenet_mnist_openlth`` recipe with this step schedule; pass
   ``lr=``, ``momentum=``, ``milestones=`` to change it), keeping its weights at step k;
2. prune the trained weights by magnitude in one shot to the target density, as the recipe prunes
   (globally over the hidden layers; the output layer stays dense). One shot, not iterative, to
   fit the budget;
3. retrain the pruned network for the same T − k steps, on the same batches, in three ways:

   * ``finetune``: from the trained weights, at the final learning rate, constant;
   * ``weight_rewind``: from the weights at step k, replaying the schedule from step k;
   * ``lr_rewind``: from the trained weights, replaying the schedule from step k.

The schedule must decay for the comparison to mean anything: with a constant learning rate,
learning-rate rewinding *is* fine-tuning (same weights, same rate). The optimizer's momentum starts
from zero in every retraining run (``ticketlab.train``).

Renda et al. prune ResNets on CIFAR-10 and ImageNet; we test the direction of their claims on a
small network, where the gaps can be smaller or absent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd
from torch import Tensor

from .. import prune
from ..config import budget
from ..config import device as pick_device
from ..masks import Mask
from ..population import train_many
from ..recipes import Recipe, get
from ..stats import seed_list
from ..training import TrainConfig, evaluate
from ..verdict import Claim
from ._result import ExperimentResult
from ._units import over_seed_groups
from .deconstruct import densities_list, masked_copy, point_plot

__all__ = ["CLAIMS", "METHODS", "retraining", "rewinding_vs_finetuning"]

METHODS = ("finetune", "weight_rewind", "lr_rewind")
"""The three ways to retrain after pruning, in the order tables and plots show them."""

DENSITY = 0.05
"""Default fraction of hidden-layer weights kept: sparse enough that pruning hurts before
retraining, so the retraining methods have something to recover."""

_CITATION = "Renda, Frankle & Carbin, ICLR 2020 (arXiv 2003.02389), abstract"


def _beats_finetuning(method: str, label: str) -> Claim:
    return Claim(
        name=f"{label} beats fine-tuning",
        statement=f"After one-shot pruning, retraining by {label} reaches higher test accuracy "
        "than fine-tuning at the final learning rate, for the same number of steps.",
        citation=_CITATION,
        metric="test_acc",
        treatment={"method": method},
        control={"method": "finetune"},
        direction="greater",
        margin=0.0,
        min_seeds=3,
        unit="pp",
        scale=100,
    )


CLAIMS = (
    _beats_finetuning("weight_rewind", "weight rewinding"),
    _beats_finetuning("lr_rewind", "LR rewinding"),
    Claim(
        name="LR rewinding matches weight rewinding",
        statement="LR rewinding is at least as accurate as weight rewinding: it loses less than "
        "half a percentage point to it, if anything.",
        citation="Renda, Frankle & Carbin, ICLR 2020: the authors' released results, where LR "
        "rewinding ≥ weight rewinding at every sparsity",
        metric="test_acc",
        treatment={"method": "lr_rewind"},
        control={"method": "weight_rewind"},
        direction="greater",
        margin=-0.005,
        min_seeds=3,
        unit="pp",
        scale=100,
    ),
)


def retraining(
    method: str,
    *,
    trained: Mapping[str, Tensor],
    rewound: Mapping[str, Tensor],
    mask: Mask,
    config: TrainConfig,
    rewind_step: int,
) -> tuple[dict[str, Tensor], TrainConfig, int]:
    """Where one retraining method starts: (weights, config, start step).

    ``trained`` and ``rewound`` are the dense network's ``state_dict``s at the end of training
    (step ``config.steps``) and at ``rewind_step``; the returned weights are a copy with the pruned
    weights zeroed. Every method then trains from ``rewind_step`` to ``config.steps`` (so the same
    steps, and the same batches). ``finetune`` gets a copy of ``config`` whose learning rate is the
    final one, ``config.lr_at(config.steps - 1)``, at every step; the rewinding methods replay
    ``config``'s schedule from ``rewind_step``.
    """
    if not 0 <= rewind_step < config.steps:
        raise ValueError(f"rewind_step={rewind_step} must lie in [0, steps={config.steps})")
    if method == "finetune":
        final_lr = config.lr_at(config.steps - 1)
        constant = config.replace(lr=final_lr, milestones=(), warmup_steps=0)
        return masked_copy(trained, mask), constant, rewind_step
    if method == "weight_rewind":
        return masked_copy(rewound, mask), config, rewind_step
    if method == "lr_rewind":
        return masked_copy(trained, mask), config, rewind_step
    raise ValueError(f"unknown retraining method {method!r}; choose one of {METHODS}")


@over_seed_groups(lambda: budget(quick=4, full=5))
def rewinding_vs_finetuning(
    density: float | Sequence[float] = DENSITY,
    seeds: int | Sequence[int] | None = None,
    rewind_step: int | None = None,
    steps: int | None = None,
    recipe: str | Recipe = "lenet_mnist_openlth",
    device=None,
    progress: bool = True,
    **overrides,
) -> ExperimentResult:
    """Fine-tuning vs weight rewinding vs learning-rate rewinding (see the module docstring).

    Args:
        density: fraction of the hidden layers' weights kept (or a list of them).
        seeds: a count (seeds 0…n−1) or explicit seeds (default: 4 quick, 5 full). A seed sets
            the initialization and the data order.
        rewind_step: k, the step weight rewinding resets to; every method retrains T − k steps
            (default: T // 10).
        steps: T, the dense training length (default: the recipe's budget).
        recipe: a preset name or ``Recipe``. ``overrides`` replace its fields; unless given there,
            ``optimizer="sgd"``, ``lr=0.01``, ``momentum=0.9``, ``gamma=0.1`` and
            ``milestones=(T // 2, 3 * T // 4)`` are used.
        device: where to compute (default ``ticketlab.device()``).
    Returns an ``ExperimentResult`` whose ``table`` has one row per (seed, method, density):
    seed, method ("dense": the trained dense network; "pruned": right after pruning, not
    retrained; then ``METHODS``), density, mask_density (fraction of all prunable weights kept),
    start_lr (learning rate of the first retraining step), test_acc, val_acc (in [0, 1]).
    ``extras``: ``runs[(seed, method, density)]`` (``TrainResult``s; ``.checkpoints[k]`` holds
    the starting weights and ``.config`` the schedule), ``masks[(seed, density)]``,
    ``trained[seed]``, ``rewound[seed]`` (state_dicts), ``rewind_step``, ``recipe``.
    """
    started = time.perf_counter()
    seeds = seed_list(budget(quick=4, full=5) if seeds is None else seeds)
    densities = densities_list(density)
    if steps is not None:
        overrides["steps"] = steps
    base = get(recipe, **overrides)
    T = base.train.steps
    schedule = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "gamma": 0.1,
                "milestones": (T // 2, 3 * T // 4)}  # fmt: skip
    rec = base.replace(**{k: v for k, v in schedule.items() if k not in overrides})
    cfg = rec.train
    k = T // 10 if rewind_step is None else rewind_step
    if not isinstance(k, int) or not 0 <= k < T:
        raise ValueError(f"rewind_step must be an int in [0, steps={T}), got {rewind_step!r}")
    dev = pick_device(device)
    data = rec.data.load(dev)

    dense = train_many(
        [rec.model.build(s) for s in seeds], data, cfg, masks=[None] * len(seeds),
        data_seeds=seeds, checkpoint_steps=[k] if k else [], progress=progress,
    )  # fmt: skip
    rows: list[dict] = []
    trained, rewound, masks = {}, {}, {}
    jobs: list[dict] = []
    layer_rates = dict(rec.prune.layer_rates) or None
    for seed, run in zip(seeds, dense, strict=True):
        trained[seed] = run.model.state_dict()
        rewound[seed] = run.checkpoints[k] if k else rec.model.build(seed).to(dev).state_dict()
        rows.append({"seed": seed, "method": "dense", "density": 1.0, "mask_density": 1.0,
                     "start_lr": float("nan"), "test_acc": run.test_acc,
                     "val_acc": run.val_acc})  # fmt: skip
        for d in densities:
            mask = prune.one_shot(run.model, d, rec.prune.prune_scope, layer_rates)
            masks[(seed, d)] = mask
            pruned = rec.model.build(seed).to(dev)
            pruned.load_state_dict(masked_copy(trained[seed], mask))
            rows.append({"seed": seed, "method": "pruned", "density": d,
                         "mask_density": mask.density, "start_lr": float("nan"),
                         "test_acc": evaluate(pruned, data.test)[1],
                         "val_acc": evaluate(pruned, data.val)[1]})  # fmt: skip
            for method in METHODS:
                state, config, start = retraining(
                    method, trained=trained[seed], rewound=rewound[seed], mask=mask,
                    config=cfg, rewind_step=k,
                )  # fmt: skip
                model = rec.model.build(seed).to(dev)
                model.load_state_dict(state)
                jobs.append({"seed": seed, "method": method, "density": d, "mask": mask,
                             "model": model, "config": config, "start": start})  # fmt: skip

    runs = {}
    # Jobs sharing a schedule train together: the rewinding methods in one population,
    # fine-tuning (constant rate) in another. All start at step k (``retraining``).
    for group in ([j for j in jobs if j["method"] != "finetune"],
                  [j for j in jobs if j["method"] == "finetune"]):  # fmt: skip
        results = train_many(
            [j["model"] for j in group], data, group[0]["config"],
            masks=[j["mask"] for j in group], data_seeds=[j["seed"] for j in group],
            start_step=group[0]["start"], checkpoint_steps=[k], progress=progress,
        )  # fmt: skip
        for job, result in zip(group, results, strict=True):
            runs[(job["seed"], job["method"], job["density"])] = result
            rows.append({"seed": job["seed"], "method": job["method"], "density": job["density"],
                         "mask_density": job["mask"].density,
                         "start_lr": job["config"].lr_at(k), "test_acc": result.test_acc,
                         "val_acc": result.val_acc})  # fmt: skip

    # Per seed: the dense run first, then each density's rows in the order pruned, METHODS.
    order = {m: i for i, m in enumerate(("dense", "pruned", *METHODS))}
    table = pd.DataFrame(rows)
    table = (
        table.assign(_dense=table["method"] != "dense", _order=table["method"].map(order))
        .sort_values(["seed", "_dense", "density", "_order"], kind="stable")
        .drop(columns=["_dense", "_order"])
        .reset_index(drop=True)
    )
    return ExperimentResult(
        name="rewinding_vs_finetuning",
        table=table,
        claims=CLAIMS,
        extras={
            "runs": runs,
            "masks": masks,
            "trained": trained,
            "rewound": rewound,
            "rewind_step": k,
            "recipe": rec,
        },
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


def _plot(result: ExperimentResult):
    table = result.table
    shown = table[table["method"] != "dense"]
    dense = table.loc[table["method"] == "dense", "test_acc"].mean()
    k = result.extras.get("rewind_step", 0)
    densities = ", ".join(f"{d * 100:.3g}%" for d in sorted(shown["density"].unique()))
    return point_plot(
        shown, x="method", hue=None, order=["pruned", *METHODS], hue_order=None,
        title=f"LeNet-300-100 at {densities} of hidden weights, retrained from step {k} "
        "(95% CIs)",
        xlabel="Retraining method (pruned = before retraining)", reference=dense,
        reference_label="dense, trained",
    )  # fmt: skip
