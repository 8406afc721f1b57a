"""Pruning cost: one magnitude-pruning call as a share of one IMP round's training time.

For LeNet-300-100 and the ResNet (``models.resnet()``: depth 8, width 16, 28×28 MNIST), each round
of ``ticketlab.timing.interleave`` times ``calls`` calls of ``prune.magnitude`` (20 % of the
remaining weights, layerwise and global; LeNet's output layer at 10 %, as in ``lenet_mnist_paper``)
and ``steps`` steps of ``ticketlab.training`` on the same model. One round of IMP is taken to be
``lenet_mnist_paper``'s full budget, 2,320 steps at batch 60 with Adam, for both models; its time is
the measured time per step × 2,320. Training here evaluates on 60 images only, so the round time
counts (almost) no evaluation: a conservative denominator.
"""

from __future__ import annotations

import copy

from torch import nn

from ticketlab import prune
from ticketlab.data import Dataset, Split, mnist
from ticketlab.masks import Mask
from ticketlab.models import lenet_300_100, resnet
from ticketlab.recipes import get
from ticketlab.timing import interleave, ratios
from ticketlab.training import train

from .results import Context, Group, Row, Target, summary

__all__ = ["run"]

GROUP = "pruning"
SHARE = Target.below(1, "%")
FRACTION = 0.2


def _tiny_eval(data: Dataset, n: int = 60) -> Dataset:
    """``data`` with validation and test cut to ``n`` images, so timing sees training only."""
    X, y = data.train
    small = Split(X[:n], y[:n])
    return Dataset(data.name, data.train, small, small, data.num_classes)


def _measure(ctx: Context, name: str, model: nn.Module, layer_rates, data, steps: int) -> dict:
    recipe = get("lenet_mnist_paper", budget="full")
    round_steps = recipe.train.steps
    config = recipe.train.replace(steps=steps, eval_every=steps)
    mask = Mask.ones(model)
    calls = ctx.size(quick=5, full=20)

    def pruning(scope: str):
        def task() -> None:
            for _ in range(calls):
                prune.magnitude(model, mask, FRACTION, scope, layer_rates)

        return task

    def training() -> None:
        train(copy.deepcopy(model), data, config, progress=False)

    rounds = ctx.rounds(quick=3, full=5)
    ctx.log(f"pruning {name}: {rounds} rounds, {calls} calls per scope, {steps} training steps")
    samples = interleave(
        {"layerwise": pruning("layerwise"), "global": pruning("global"), "train": training},
        rounds,
        device=ctx.device,
    )
    round_seconds = [t / steps * round_steps for t in samples["train"]]
    out = {
        "round_steps": round_steps,
        "train_steps_timed": steps,
        "calls": calls,
        "rounds": rounds,
        "seconds": {k: summary(v) for k, v in samples.items()},
        "round_seconds": summary(round_seconds),
    }
    for scope in ("layerwise", "global"):
        per_call = [t / calls for t in samples[scope]]
        out[scope] = {
            "seconds_per_call": summary(per_call),
            "percent_of_round": summary([100 * r for r in ratios(per_call, round_seconds)]),
        }
    return out


def run(ctx: Context) -> Group:
    data = _tiny_eval(mnist(device=ctx.device))
    models = {
        "LeNet-300-100": (lenet_300_100(seed=0), {"out.weight": 0.1}, ctx.size(100, 300)),
        "ResNet-8 (width 16)": (resnet(seed=0), None, ctx.size(3, 10)),
    }
    rows, details = [], {}
    for name, (model, layer_rates, steps) in models.items():
        result = _measure(ctx, name, model.to(ctx.device), layer_rates, data, steps)
        details[name] = result
        round_s = result["round_seconds"]["median"]
        for scope in ("layerwise", "global"):
            ms = 1e3 * result[scope]["seconds_per_call"]["median"]
            rows.append(
                Row.judged(
                    GROUP,
                    f"Pruning {name}, {scope} magnitude, share of a round",
                    result[scope]["percent_of_round"]["median"],
                    "%",
                    SHARE,
                    f"{ms:.1f} ms per call; round = {result['round_steps']:,} steps ≈ "
                    f"{round_s:.0f} s here",
                )
            )
    details["config"] = {"fraction": FRACTION, "round": "lenet_mnist_paper full budget"}
    return Group(rows, details)
