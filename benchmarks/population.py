"""Population training: N networks as one batched computation vs the same N one after another.

Both sides run the package's own code with one configuration: ``train_population`` on all N
members, and ``train`` on members one by one (same initial weights, masks and data seeds). For
large N only ``subset`` members are trained sequentially, spread evenly over the population, and
their time is scaled by N / subset; the table says so. Each round times both sides back to back
(``ticketlab.timing.interleave``); the speed-up is the median over rounds of
``sequential time × N / subset ÷ population time``.

Correctness is checked in float64, in a separate untimed run: every member of a population is
trained, the subset's members also alone, and their weights must agree to ``ATOL + RTOL·|w|``.
Why not the float32 runs that were timed: there the two computations differ in the last bit
(another summation order), and once such a difference flips a ReLU for one example, it grows
like any chaotic trajectory (seen: one of 8 LeNets, 3e-8 apart at step 40, 3e-4 at step 50).
In float64 the same differences start near 1e-16, too small to flip anything, so a real mismatch
(a wrong batch, mask or optimizer state) stands out by many orders of magnitude. The float32
runs' differences are reported too, as a note.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from types import SimpleNamespace
from typing import NamedTuple

import torch
from torch import nn

from ticketlab import prune
from ticketlab.data import mnist, xor
from ticketlab.masks import Mask
from ticketlab.models import lenet_300_100, xor_mlp
from ticketlab.population import train_population
from ticketlab.timing import interleave, ratios
from ticketlab.training import TrainConfig, train

from .results import Context, Group, Row, Target, summary

__all__ = [
    "compare",
    "conv_and_resnet",
    "lenet",
    "lenet_gpu",
    "mlp_paths",
    "spread",
    "versus_train",
    "xor_population",
]

GROUP = "population"
ATOL, RTOL = 1e-9, 1e-9  # float64: observed differences are ~1e-15 after 200 LeNet steps
XOR_SPEEDUP = Target.minimum(50, "×")
LENET_SPEEDUP = Target.minimum(1.3, "×")
GPU_SPEEDUP = Target.minimum(20, "×")
# A one-member round must not be slower than train itself (5 % for timing noise).
VERSUS_TRAIN = Target.below(1.05, "×")


def spread(n: int, k: int) -> list[int]:
    """``k`` member indices spread evenly over ``range(n)``, starting at 0 (all when k ≥ n)."""
    if k >= n:
        return list(range(n))
    return [i * n // k for i in range(k)]


def compare(ours: nn.Module, theirs: nn.Module) -> dict[str, float]:
    """How far apart two same-architecture models are, parameter by parameter.

    Returns ``max_abs`` (largest |a − b|) and ``excess``: the largest |a − b| − (ATOL + RTOL·|b|),
    which is ≤ 0 exactly when every entry is within tolerance.
    """
    max_abs, excess = 0.0, -float("inf")
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        diff = (a.detach() - b.detach()).abs()
        max_abs = max(max_abs, float(diff.max()))
        excess = max(excess, float((diff - ATOL - RTOL * b.detach().abs()).max()))
    return {"max_abs": max_abs, "excess": excess}


class _Pair(NamedTuple):
    X: torch.Tensor
    y: torch.Tensor


def _float64(data, device: torch.device) -> SimpleNamespace:
    """``data``'s splits with float64 inputs on ``device`` (``Dataset`` itself holds float32)."""

    def convert(split) -> _Pair:
        return _Pair(split.X.to(device, torch.float64), split.y.to(device))

    return SimpleNamespace(
        train=convert(data.train), val=convert(data.val), test=convert(data.test)
    )


def _train_both(bases, masks, data, config, subset) -> tuple[list[nn.Module], list[nn.Module]]:
    """Trained copies of all ``bases`` as one population, and of the ``subset`` one by one."""
    population = [copy.deepcopy(b) for b in bases]
    train_population(
        population, data, config, masks=masks, data_seeds=range(len(bases)), progress=False
    )
    alone = []
    for i in subset:
        model = copy.deepcopy(bases[i])
        train(model, data, config, mask=masks[i], data_seed=i, progress=False)
        alone.append(model)
    return [population[i] for i in subset], alone


def _check(ctx: Context, bases, masks, data, config: TrainConfig, subset: list[int]) -> dict:
    """The float64 correctness check (module docstring); on MPS, which lacks float64, on CPU."""
    dev = torch.device("cpu") if ctx.device.type == "mps" else ctx.device
    bases64 = [copy.deepcopy(b).to(dev, torch.float64) for b in bases]
    masks64 = [None if m is None else m.to(dev) for m in masks]
    ctx.log(f"  float64 check: N = {len(bases)}, {len(subset)} alone, {config.steps} steps")
    ours, theirs = _train_both(bases64, masks64, _float64(data, dev), config, subset)
    diffs = [compare(a, b) for a, b in zip(ours, theirs, strict=True)]
    return {
        "device": str(dev),
        "steps": config.steps,
        "max_abs_diff": max(d["max_abs"] for d in diffs),
        "within_tolerance": all(d["excess"] <= 0 for d in diffs),
        "tolerance": {"atol": ATOL, "rtol": RTOL},
        "per_member": diffs,
    }


def _measure(
    ctx: Context,
    label: str,
    bases: Sequence[nn.Module],
    masks: Sequence[Mask | None],
    data,
    config: TrainConfig,
    subset: list[int],
    rounds: int,
    check_steps: int,
) -> dict:
    """Time population vs sequential training of ``bases`` (copied each round) and compare."""
    n = len(bases)
    trained: dict[str, list[nn.Module]] = {}

    def population() -> None:
        models = [copy.deepcopy(b) for b in bases]
        train_population(models, data, config, masks=masks, data_seeds=range(n), progress=False)
        trained["population"] = [models[i] for i in subset]

    def sequential() -> None:
        models = []
        for i in subset:
            model = copy.deepcopy(bases[i])
            train(model, data, config, mask=masks[i], data_seed=i, progress=False)
            models.append(model)
        trained["sequential"] = models

    # Warm up on a tiny version of both, not a full extra round.
    short = config.replace(steps=2, eval_every=2)
    train_population([copy.deepcopy(b) for b in bases[:2]], data, short, progress=False)
    train(copy.deepcopy(bases[0]), data, short, progress=False)
    ctx.log(f"{label}: {rounds} rounds, N = {n}, {len(subset)} sequential, {config.steps} steps")
    samples = interleave(
        {"population": population, "sequential": sequential}, rounds, warmup=0, device=ctx.device
    )
    scale = n / len(subset)
    speedup = ratios([t * scale for t in samples["sequential"]], samples["population"])
    float32 = [
        compare(a, b) for a, b in zip(trained["population"], trained["sequential"], strict=True)
    ]
    check = config.replace(steps=check_steps, eval_every=check_steps)
    return {
        "n": n,
        "subset": subset,
        "extrapolation": scale,
        "steps": config.steps,
        "rounds": rounds,
        "seconds": {name: summary(s) for name, s in samples.items()},
        "speedup": summary(speedup),
        "float32_max_abs_diff": max(d["max_abs"] for d in float32),
        "float32_per_member": [d["max_abs"] for d in float32],
        "check": _check(ctx, bases, masks, data, check, subset),
    }


def _rows(label: str, result: dict, target: Target | None) -> list[Row]:
    n, k, check = result["n"], len(result["subset"]), result["check"]
    timed = f"all {n} timed" if k == n else f"{k} of {n:,} timed, ×{result['extrapolation']:g}"
    note = f"{result['steps']} steps; sequential: {timed}; median of {result['rounds']} rounds"
    match = Row(
        GROUP,
        f"{label}: members match sequential runs",
        f"max abs Δw = {check['max_abs_diff']:.1e} ({k} members)",
        check["max_abs_diff"],
        "",
        f"within {ATOL:g} + {RTOL:g}·abs(w)",
        check["within_tolerance"],
        f"float64, {check['steps']} steps; the timed float32 runs differ by up to "
        f"{result['float32_max_abs_diff']:.1e} (last-bit differences, amplified)",
    )
    item, speedup = f"{label}: speed-up over sequential", result["speedup"]["median"]
    if target is None:
        return [Row.info(GROUP, item, speedup, "×", note), match]
    return [Row.judged(GROUP, item, speedup, "×", target, note), match]


def xor_population(ctx: Context) -> Group:
    """XOR, N = 1,000 (2 hidden units, full-batch Adam lr 0.01, as ``experiments.xor_tickets``)."""
    n = 1000
    steps = ctx.size(quick=200, full=1000)
    data = xor(device=ctx.device)
    config = TrainConfig(steps=steps, batch_size=len(data.train), lr=0.01, eval_every=steps)
    bases = [xor_mlp(seed=i).to(ctx.device) for i in range(n)]
    result = _measure(
        ctx,
        "XOR",
        bases,
        [None] * n,
        data,
        config,
        spread(n, ctx.size(quick=5, full=20)),
        ctx.rounds(quick=2, full=3),
        check_steps=ctx.size(quick=100, full=300),
    )
    return Group(_rows(f"XOR, N = {n:,}", result, XOR_SPEEDUP), {"xor": result})


def _lenet_members(n: int, device: torch.device) -> tuple[list[nn.Module], list[Mask]]:
    """LeNet-300-100 members 0…n−1, each with its own random mask at 10 % density."""
    bases = [lenet_300_100(seed=i).to(device) for i in range(n)]
    masks = [prune.random(Mask.ones(b), fraction=0.9, seed=i) for i, b in enumerate(bases)]
    return bases, masks


def _lenet(ctx: Context, sizes: Sequence[tuple[int, int, Target | None]], steps: int) -> Group:
    """For each (N, sequential subset, target): masked LeNet members, timed and compared."""
    data = mnist(device=ctx.device)
    config = TrainConfig(steps=steps, batch_size=60, lr=1.2e-3, eval_every=steps)
    rows, details = [], {}
    for n, k, target in sizes:
        bases, masks = _lenet_members(n, ctx.device)
        result = _measure(
            ctx,
            f"LeNet N = {n}",
            bases,
            masks,
            data,
            config,
            spread(n, k),
            ctx.rounds(quick=2, full=3),
            # Past the first epoch (58 batches), so the data order of epoch 2 is checked too.
            check_steps=ctx.size(quick=30, full=100),
        )
        rows += _rows(f"LeNet-300-100, N = {n}", result, target)
        details[f"lenet_{n}"] = result
    details["config"] = {"batch_size": 60, "lr": 1.2e-3, "mask": "random, 10 % density, own"}
    return Group(rows, details)


def lenet(ctx: Context) -> Group:
    """LeNet-300-100, N = 8 (target ≥ 1.3×) and N = 32 (no target), masked at 10 % density."""
    k = ctx.size(quick=4, full=8)
    return _lenet(ctx, [(8, k, LENET_SPEEDUP), (32, k, None)], ctx.size(quick=40, full=200))


def lenet_gpu(ctx: Context) -> Group:
    """GPU only: 64 LeNet-300-100s (target ≥ 20× sequential)."""
    item = "LeNet-300-100, N = 64 (GPU): speed-up over sequential"
    if ctx.device.type != "cuda":
        return Group([Row.unmeasured(GROUP, item, "no GPU: not measured", GPU_SPEEDUP)])
    return _lenet(ctx, [(64, 8, GPU_SPEEDUP)], ctx.size(quick=100, full=500))


def conv_and_resnet(ctx: Context) -> Group:
    """Any model through ``torch.func``: conv4 (width 8, 28×28 MNIST) and the BatchNorm lab's
    ResNet-8 (width 16, MNIST pooled to 14×14), N = 4 and 8, each vs sequential (no target: the
    numbers decide ``population.prefers_population``)."""
    from ticketlab.experiments.batchnorm import downsample
    from ticketlab.models import conv4, resnet

    full = mnist(device=ctx.device)
    cases = [
        ("conv4 (width 8)", lambda s: conv4(width=8, seed=s), full),
        ("ResNet-8 (width 16, BatchNorm)", lambda s: resnet(8, 16, seed=s), downsample(full, 2)),
    ]
    steps = ctx.size(quick=10, full=60)
    rows, details = [], {}
    for label, build, data in cases:
        config = TrainConfig(steps=steps, batch_size=60, lr=1e-3, eval_every=steps)
        for n in (4, 8):
            bases = [build(i).to(ctx.device) for i in range(n)]
            result = _measure(
                ctx, f"{label} N = {n}", bases, [None] * n, data, config,
                spread(n, ctx.size(quick=2, full=4)), ctx.rounds(quick=2, full=3),
                check_steps=ctx.size(quick=3, full=10),
            )  # fmt: skip
            rows += _rows(f"{label}, N = {n}", result, None)
            details[f"{label.split()[0].lower()}_{n}"] = result
    return Group(rows, details)


class _Wrapped(nn.Module):
    """An MLP behind a module that is not an ``nn.Sequential``, so that a population of them
    takes the general ``torch.func`` path instead of the hand-written batched matmuls."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def mlp_paths(ctx: Context) -> Group:
    """LeNet-300-100, N = 8 and 32 (10 % random masks): the hand-written batched-matmul population
    vs the same population through ``torch.func`` (why MLPs keep their own path)."""
    data = mnist(device=ctx.device)
    steps = ctx.size(quick=20, full=200)
    config = TrainConfig(steps=steps, batch_size=60, lr=1.2e-3, eval_every=steps)
    rows, details = [], {}
    for n in (8, 32):
        bases, masks = _lenet_members(n, ctx.device)
        wrapped_masks = [Mask({f"mlp.{k}": v for k, v in m.items()}) for m in masks]

        def fast(bases=bases, masks=masks, n=n) -> None:
            models = [copy.deepcopy(b) for b in bases]
            train_population(models, data, config, masks=masks, data_seeds=range(n),
                             progress=False)  # fmt: skip

        def general(bases=bases, masks=wrapped_masks, n=n) -> None:
            models = [_Wrapped(copy.deepcopy(b)) for b in bases]
            train_population(models, data, config, masks=masks, data_seeds=range(n),
                             progress=False)  # fmt: skip

        rounds = ctx.rounds(quick=2, full=3)
        ctx.log(f"LeNet N = {n}: batched matmuls vs torch.func, {rounds} rounds, {steps} steps")
        samples = interleave({"fast": fast, "general": general}, rounds, warmup=1,
                             device=ctx.device)  # fmt: skip
        speedup = ratios(samples["general"], samples["fast"])
        note = f"{steps} steps, masks at 10 %; median of {rounds} rounds"
        item = f"LeNet-300-100, N = {n}: batched-matmul population vs torch.func population"
        rows.append(Row.info(GROUP, item, summary(speedup)["median"], "×", note))
        details[f"lenet_{n}"] = {"seconds": {k: summary(v) for k, v in samples.items()},
                                 "speedup": summary(speedup)}  # fmt: skip
    return Group(rows, details)


def versus_train(ctx: Context) -> Group:
    """No slower path inside IMP: population training vs ``ticketlab.train``, per member-step.

    LeNet-300-100 on the 5k MNIST, trained as ``lenet_mnist_paper`` trains (its ``TrainConfig``:
    batch 60, Adam 1.2e-3, evaluating every 58 steps on the 500 + 1,000 validation and test
    images, so a member-step carries its share of evaluation as in an IMP round), each member
    under its own random mask at 10 % density (``_lenet_members``).

    * For N = 1, 2, 4, 8, 32 (N ≤ 8 in --quick runs): ms per member-step of
      ``train_many(models, ..., population=True)`` vs N ``train`` calls one after another (for
      N = 32 only 8 members, spread over the population, and their time scaled by 32 / 8). Info
      rows: the ratio population ÷ sequential per member-step (< 1: the population is faster).
    * N = 1 through ``train_many(..., population=None)``, the default choice (at N = 1 it is
      ``prefers_population``'s: it does not look at N), vs ``train`` on the same member: the
      judged row, goal ``VERSUS_TRAIN`` (a one-member round must take the fastest path).

    Each pair is timed in alternating rounds (``interleave``: A B, B A, ...), warm-ups first;
    reported numbers are medians over rounds of ratios taken within a round. The copies of the
    starting networks are made inside the clock, as in ``_measure`` (about 0.1 % of a run).
    """
    from ticketlab.population import prefers_population, train_many
    from ticketlab.recipes import get

    steps = ctx.size(quick=58, full=290)  # 1 and 5 epochs of the 3,500 training images
    config = get("lenet_mnist_paper", budget="full").train.replace(steps=steps)
    sizes = ctx.size(quick=(1, 2, 4, 8), full=(1, 2, 4, 8, 32))
    rounds = ctx.rounds(quick=3, full=5)
    data = mnist(device=ctx.device)
    bases, masks = _lenet_members(max(sizes), ctx.device)
    threads = torch.get_num_threads()

    def fresh(members: Sequence[int]) -> list[nn.Module]:
        return [copy.deepcopy(bases[i]) for i in members]

    def via_train_many(members: Sequence[int], population: bool | None) -> None:
        list(
            train_many(
                fresh(members),
                data,
                config,
                masks=[masks[i] for i in members],
                data_seeds=list(members),
                progress=False,
                population=population,
            )
        )

    def one_by_one(members: Sequence[int]) -> None:
        for i, model in zip(members, fresh(members), strict=True):
            train(model, data, config, mask=masks[i], data_seed=i, progress=False)

    # Warm up both paths on a tiny version (first calls pay allocation and kernel selection).
    short = config.replace(steps=2, eval_every=2)
    list(
        train_many(
            fresh([0, 1]),
            data,
            short,
            masks=masks[:2],
            data_seeds=[0, 1],
            progress=False,
            population=True,
        )
    )
    train(fresh([0])[0], data, short, mask=masks[0], progress=False)

    rows: list[Row] = []
    details: dict = {
        "steps": steps,
        "rounds": rounds,
        "threads": threads,
        "config": {
            "recipe": "lenet_mnist_paper",
            "batch_size": config.batch_size,
            "lr": config.lr,
            "eval_every": config.eval_every,
            "mask": "random, 10 % density, own",
        },
    }
    for n in sizes:
        members, subset = list(range(n)), spread(n, 8)
        ctx.log(
            f"LeNet N = {n}: population vs {len(subset)} train calls, {rounds} rounds, "
            f"{steps} steps"
        )
        samples = interleave(
            {
                "population": lambda m=members: via_train_many(m, True),
                "sequential": lambda s=subset: one_by_one(s),
            },
            rounds,
            warmup=0,
            device=ctx.device,
        )
        per_step = {
            "population": [1e3 * t / (n * steps) for t in samples["population"]],
            "sequential": [1e3 * t / (len(subset) * steps) for t in samples["sequential"]],
        }
        ratio = summary(ratios(per_step["population"], per_step["sequential"]))
        ms = {name: summary(s)["median"] for name, s in per_step.items()}
        timed = f"all {n}" if len(subset) == n else f"{len(subset)} of {n}, ×{n / len(subset):g}"
        note = (
            f"{ms['population']:.2f} vs {ms['sequential']:.2f} ms per member-step; "
            f"sequential: {timed}; {steps} steps; median of {rounds} rounds; "
            f"{threads} thread{'s' if threads > 1 else ''}"
        )
        item = f"LeNet-300-100, N = {n}: population ÷ sequential train, per member-step"
        rows.append(Row.info(GROUP, item, ratio["median"], "×", note))
        details[f"lenet_{n}"] = {
            "subset": subset,
            "ms_per_member_step": {k: summary(v) for k, v in per_step.items()},
            "ratio": ratio,
        }

    # The judged row: what train_many does by default with one member, against train itself.
    path = "population" if prefers_population([bases[0]], ctx.device) else "train"
    judged_rounds = ctx.rounds(quick=3, full=7)
    ctx.log(f"LeNet N = 1: train_many(population=None) vs train, {judged_rounds} rounds")
    samples = interleave(
        {"train_many": lambda: via_train_many([0], None), "train": lambda: one_by_one([0])},
        judged_rounds,
        warmup=0,
        device=ctx.device,
    )
    ratio = summary(ratios(samples["train_many"], samples["train"]))
    ms = {name: 1e3 * summary(s)["median"] / steps for name, s in samples.items()}
    note = (
        f"train_many took the {path} path; {ms['train_many']:.2f} vs {ms['train']:.2f} ms per "
        f"step; {steps} steps; median of {judged_rounds} rounds; {threads} "
        f"thread{'s' if threads > 1 else ''}"
    )
    item = "LeNet-300-100, N = 1: train_many(population=None) ÷ train"
    rows.append(Row.judged(GROUP, item, ratio["median"], "×", VERSUS_TRAIN, note))
    details["one_member"] = {
        "path": path,
        "rounds": judged_rounds,
        "ratio": ratio,
        "seconds": {k: summary(v) for k, v in samples.items()},
    }
    return Group(rows, details)
