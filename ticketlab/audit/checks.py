"""What the audit reruns: the variants another machine would bring, and each notebook's checks.

A ``Check`` names the outcomes of one experiment in one notebook, how to recompute them with every
seed shifted (``compute``), and which of them the notebook output-checks. ``NOTEBOOK_CALLS`` and
``DEFAULT_SEEDS`` tie each check to the code it repeats, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One perturbation another machine could bring: threads, a seed offset, an init jitter."""

    name: str
    threads: int
    offset: int = 0
    perturbation: float = 0.0
    core: bool = True
    """Core variants are what "robust" requires; extra ones (``--all-variants``), where run, must
    agree too."""


VARIANTS = (
    Variant("reference", threads=2),
    Variant("1 thread", threads=1),
    Variant("seeds +100000, 1 thread", threads=1, offset=100_000),
    Variant("seeds +200000, 1 thread", threads=1, offset=200_000),
    Variant("init × (1 + 1e-6·ε), 1 thread", threads=1, perturbation=1e-6),
    Variant("seeds +100000", threads=2, offset=100_000, core=False),
    Variant("seeds +200000", threads=2, offset=200_000, core=False),
    Variant("init × (1 + 1e-6·ε)", threads=2, perturbation=1e-6, core=False),
)
"""``reference`` is the configuration of ``./workbook test`` on a 2-core machine, ``1 thread``
that of the committed full-mode outputs (``OMP_NUM_THREADS=1 ./workbook notebooks``). The
core crosses the notebook's seeds with 1 and 2 threads, and adds two disjoint seed sets and the
rounding proxy at 1 thread, so that the four one-thread runs share two cores in pairs; the extras
repeat those three at 2 threads."""


def required_variants(mode: str = "quick") -> tuple[Variant, ...]:
    """What an outcome needs to be called robust (the same core in both modes)."""
    return tuple(v for v in VARIANTS if v.core)


def _verdict_outcomes(obj: Any) -> dict[str, str]:
    """``{claim name: outcome}`` of an ``ExperimentResult`` or of a sequence of ``Verdict``s."""
    verdicts = getattr(obj, "verdicts", obj)
    return {v.claim.name: v.outcome for v in verdicts}


@dataclass(frozen=True)
class Check:
    """Outcomes of one experiment in one notebook, and which of them the notebook checks.

    ``compute(offset)`` reruns what the notebook runs, with every seed shifted by ``offset``, and
    returns the object the notebook evaluates; ``outcomes`` turns that object into
    ``{name: outcome}``, and the notebook calls the very same function (through
    ``show_checked``), so the audit and the notebook cannot disagree on what an outcome is.
    ``checked`` names the outcomes the notebook output-checks; every one must be robust.
    """

    id: str
    notebook: str
    seeds: str
    compute: Callable[[int], Any]
    checked: tuple[str, ...]
    outcomes: Callable[[Any], dict[str, str]] = _verdict_outcomes
    select: Callable[[Any], Any] | None = None
    """Picks this check's part out of what ``compute`` returns (the notebook passes that part)."""

    def outcomes_of(self, obj: Any) -> dict[str, str]:
        return {name: str(value) for name, value in self.outcomes(obj).items()}


def _shift(seeds: Iterable[int], offset: int) -> list[int]:
    return [int(s) + offset for s in seeds]


# Each compute function repeats its notebook's call at the notebook's settings (budget() picks
# the quick or the full one). tests/test_robustness.py checks that each notebook still makes it.


def _setup_training(offset: int):
    from ..config import budget
    from ..data import mnist
    from ..models import lenet_300_100
    from ..training import train

    steps = budget(quick=200, full=1000)
    model = lenet_300_100(seed=offset)
    return train(
        model, mnist(), steps=steps, eval_every=steps // 10, data_seed=offset, progress=False
    )


def setup_outcomes(result) -> dict[str, bool]:
    """Notebook 00's installation check on a ``TrainResult``."""
    return {
        "training finished without diverging": not result.diverged,
        "test accuracy above 80 %": result.test_acc > 0.80,
    }


def _xor(offset: int):
    from ..config import budget
    from ..experiments.xor import xor_tickets

    return xor_tickets(seeds=_shift(range(budget(quick=200, full=1000)), offset), progress=False)


def _lottery(offset: int):
    from .. import imp
    from ..config import budget
    from ..experiments.lottery import CLAIMS, combine

    rounds, seeds = budget(quick=7, full=12), _shift([0, 1, 2, 3], offset)
    recipe = "lenet_mnist_paper"
    iterative = imp.run(
        recipe, rounds=rounds, seeds=seeds, controls=["reinit", "random"], progress=False
    )
    one_shot = imp.run(recipe, rounds=rounds, seeds=seeds, mode="one_shot", progress=False)
    table = combine(iterative, one_shot)
    return [claim.evaluate(table) for claim in CLAIMS]


def _instability(offset: int):
    """Notebook 03's run. In the workbook its IMP tickets come from lab 02's cached runs, where
    each round trained as one population with the controls; here, run alone, the tickets train
    without them, a last-digit difference of the kind the variants probe."""
    from ..config import budget
    from ..experiments import instability

    return instability(
        rewind_steps=budget(quick=(0, 58), full=(0, 58, 290)),
        seeds=_shift(budget(quick=(0, 1, 2, 3), full=(0, 1, 2, 3, 4)), offset),
        sparse_round=3,
        progress=False,
    )


def barrier_outcomes(result) -> dict[str, bool]:
    """Notebook 03's connectivity check: the mean barrier of every (rewind step, kind)."""
    mean_barrier = result.table.groupby(["rewind_step", "kind"])["barrier"].mean()
    return {
        "mean barrier below 2 pp at every rewind step, for every kind": mean_barrier.max() < 0.02
    }


def _batchnorm(offset: int):
    from ..config import budget
    from ..experiments.batchnorm import batchnorm_only

    return batchnorm_only(seeds=_shift(range(budget(quick=3, full=4)), offset), progress=False)


def _supermask(offset: int):
    from ..config import budget
    from ..experiments import supermask

    return supermask(seeds=_shift(range(budget(quick=3, full=5)), offset), progress=False)


def _pruning_at_init(offset: int):
    from ..config import budget
    from ..experiments import pruning_at_init

    return pruning_at_init(seeds=_shift(range(budget(quick=4, full=6)), offset), progress=False)


def _retraining(offset: int):
    from ..config import budget
    from ..experiments import rewinding_vs_finetuning

    return rewinding_vs_finetuning(
        seeds=_shift(range(budget(quick=4, full=5)), offset), progress=False
    )


def _hardware(offset: int):
    from ..experiments.hardware import sparsity_speed

    return sparsity_speed(device="cpu", seed=offset, progress=False)


def _seeds_lab(offset: int) -> dict[str, Any]:
    """Everything notebook 07 decides: its three claims, the LeNet specimen, the demonstrations."""
    from .. import imp, seeds
    from ..experiments import xor

    lenet = imp.run(
        "lenet_mnist_paper",
        rounds=1,
        seeds=_shift(range(8), offset),
        controls=("reinit",),
        prune_fraction=0.6,
        progress=False,
    )
    xor_result = _xor(offset)
    xor_single = seeds.single_seed_conclusions(xor.CLAIMS[1], xor_result.table)
    simulation = seeds.cherry_picking_simulation(
        comparisons=(1, 2, 4, 8, 16), n_seeds=3, experiments=2000, seeds=_shift(range(10), offset)
    )
    verdicts = [
        seeds.CLAIMS[0].evaluate(xor_single),
        seeds.CLAIMS[1].evaluate(simulation),
        seeds.CLAIMS[2].evaluate(simulation),
    ]
    subsets = seeds.subsample_verdicts(seeds.SPECIMEN, lenet.table, sizes=range(3, 6), draws=100)
    return {
        "verdicts": verdicts,
        "specimen": [seeds.SPECIMEN.evaluate(lenet.table)],
        "lenet_subsets": subsets,
        "weak_effect": seeds.weak_effect_simulation(seed=offset),
    }


def _part(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def select(lab: Mapping[str, Any]) -> Any:
        return lab[name]

    select.__qualname__ = f"_part({name!r})"
    return select


def subsets_outcomes(subsets) -> dict[str, bool]:
    """Notebook 07's first look: do subsets of 3, 4 and 5 of the eight LeNet seeds disagree?"""
    mixed = subsets.query("3 <= size <= 5").groupby("size")["outcome"].nunique()
    return {"subsets of 3, 4 and 5 LeNet seeds reach different verdicts": bool((mixed > 1).all())}


def weak_effect_outcomes(frequencies) -> dict[str, bool]:
    """Notebook 07's demonstration: does every size reach more than one verdict?"""
    reached = frequencies[frequencies["count"] > 0].groupby("size")["outcome"].nunique()
    sizes = ", ".join(str(n) for n in reached.index)
    return {
        f"experiments of {sizes} seeds on one weak effect reach different verdicts": bool(
            (reached > 1).all()
        )
    }


CHECKS = (
    Check(
        "00.train",
        "00_setup_check",
        "model and data seed 0",
        _setup_training,
        checked=("training finished without diverging", "test accuracy above 80 %"),
        outcomes=setup_outcomes,
    ),
    Check(
        "01.xor",
        "01_xor_lottery",
        "0-199 quick, 0-999 full",
        _xor,
        checked=("large beats small", "ticket beats reinit"),
    ),
    Check(
        "02.lottery",
        "02_mnist_lottery_tickets",
        "0-3",
        _lottery,
        # "tickets beat reinit" is fragile at the quick budget (notebooks/ROBUSTNESS.md).
        checked=("tickets beat random pruning", "tickets learn faster"),
    ),
    Check(
        "03.barrier",
        "03_rewinding_and_stability",
        "0-3 quick, 0-4 full",
        _instability,
        checked=("mean barrier below 2 pp at every rewind step, for every kind",),
        outcomes=barrier_outcomes,
    ),
    Check(
        "03.instability",
        "03_rewinding_and_stability",
        "0-3 quick, 0-4 full",
        _instability,
        checked=(
            "stable at initialization",
            "ticket at least as stable as random",
            "ticket copies end closer",
        ),
    ),
    Check(
        "04.batchnorm",
        "04_batchnorm_only",
        "0-2 quick, 0-3 full",
        _batchnorm,
        # "BN-only grows with depth" is fragile at the quick budget (notebooks/ROBUSTNESS.md).
        checked=("BN-only far above chance", "BN-only beats random params"),
    ),
    Check(
        "05.supermask",
        "05_deconstructing_tickets",
        "0-2 quick, 0-4 full",
        _supermask,
        checked=("supermask far above chance", "supermask beats random mask"),
    ),
    Check(
        "05.pruning_at_init",
        "05_deconstructing_tickets",
        "0-3 quick, 0-5 full",
        _pruning_at_init,
        checked=(
            "SNIP beats random",
            "magnitude-at-init beats random",
            "after training beats magnitude-at-init",
            "shuffling hurts after-training mask",
        ),
    ),
    Check(
        "05.retraining",
        "05_deconstructing_tickets",
        "0-3 quick, 0-4 full",
        _retraining,
        checked=(
            "weight rewinding beats fine-tuning",
            "LR rewinding beats fine-tuning",
            "LR rewinding matches weight rewinding",
        ),
    ),
    Check(
        "06.hardware",
        "06_sparsity_and_hardware",
        "rounds 0-7 quick, 0-9 full",
        _hardware,
        checked=(
            "masking is not acceleration",
            "10 % of the weights is not 10× faster",
            "CSR loses at 50 %",
            "CSR wins at 1 %",
        ),
    ),
    Check(
        "07.seeds",
        "07_how_many_seeds",
        "XOR 0-199 quick / 0-999 full, simulations 0-9",
        _seeds_lab,
        checked=(
            "one seed can mislead",
            "cherry-picking inflates false positives",
            "pre-registration holds the error rate",
        ),
        select=_part("verdicts"),
    ),
    Check(
        "07.specimen",
        "07_how_many_seeds",
        "LeNet 0-7",
        _seeds_lab,
        checked=(),
        select=_part("specimen"),
    ),
    Check(
        "07.subsets",
        "07_how_many_seeds",
        "LeNet 0-7",
        _seeds_lab,
        checked=(),
        outcomes=subsets_outcomes,
        select=_part("lenet_subsets"),
    ),
    Check(
        "07.weak_effect",
        "07_how_many_seeds",
        "simulation seed 0",
        _seeds_lab,
        checked=("experiments of 3, 4, 5 seeds on one weak effect reach different verdicts",),
        outcomes=weak_effect_outcomes,
        select=_part("weak_effect"),
    ),
)

_BY_ID = {check.id: check for check in CHECKS}

NOTEBOOK_CALLS = {
    "00_setup_check": (
        "STEPS = tl.budget(quick=200, full=1000)",
        "model = tl.lenet_300_100(seed=0)",
        "tl.train(model, data, steps=STEPS, eval_every=STEPS // 10, progress=True)",
    ),
    "01_xor_lottery": ("result = xor_tickets()",),
    "02_mnist_lottery_tickets": (
        'recipe = tl.recipes.get("lenet_mnist_paper")',
        "ROUNDS = tl.budget(quick=7, full=12)",
        "SEEDS = [0, 1, 2, 3]",
        'tl.imp.run(recipe, rounds=ROUNDS, seeds=SEEDS, controls=["reinit", "random"])',
        'tl.imp.run(recipe, rounds=ROUNDS, seeds=SEEDS, mode="one_shot")',
        "table = combine(iterative, one_shot)",
    ),
    "03_rewinding_and_stability": (
        "SEEDS = tl.budget(quick=(0, 1, 2, 3), full=(0, 1, 2, 3, 4))",
        "REWIND_STEPS = tl.budget(quick=(0, 58), full=(0, 58, 290))",
        "instability(rewind_steps=REWIND_STEPS, seeds=SEEDS, sparse_round=3)",
    ),
    "04_batchnorm_only": ("result = batchnorm_only()",),
    "05_deconstructing_tickets": (
        "masks_result = supermask()",
        "init_result = pruning_at_init()",
        "retrain_result = rewinding_vs_finetuning()",
    ),
    "06_sparsity_and_hardware": ('result = sparsity_speed(device="cpu")',),
    "07_how_many_seeds": (
        'tl.imp.run("lenet_mnist_paper", rounds=1, seeds=range(8), controls=("reinit",), '
        "prune_fraction=0.6)",
        "xor_result = tl.experiments.xor_tickets()",
        "xor_single = seeds.single_seed_conclusions(xor_claim, xor_result.table)",
        "seeds.cherry_picking_simulation(comparisons=(1, 2, 4, 8, 16), n_seeds=3, "
        "experiments=2000, seeds=range(10))",
        "seeds.weak_effect_simulation(effect=0.5, sizes=(3, 4, 5), experiments=1000, seed=0)",
        "seeds.subsample_verdicts(TICKET_VS_REINIT, lenet.table, sizes=range(2, 9), draws=100)",
    ),
}
"""The calls of each notebook that its checks' ``compute`` repeats, at the notebook's settings.

``notebook_problems`` requires each to appear in the notebook's code (whitespace and line breaks
aside), so that a notebook edited away from its audit fails a test instead of silently drifting.
Where a notebook relies on an experiment's default seeds, ``DEFAULT_SEEDS`` holds the line of the
experiment that sets them, which ``compute`` repeats; a test checks each is still there."""

DEFAULT_SEEDS = {
    "experiments/xor.py": "budget(quick=200, full=1000) if seeds is None",
    "experiments/batchnorm.py": "budget(quick=3, full=4) if seeds is None",
    "experiments/supermask.py": "budget(quick=3, full=5) if seeds is None",
    "experiments/pruning_at_init.py": "budget(quick=4, full=6) if seeds is None",
    "experiments/rewinding.py": "budget(quick=4, full=5) if seeds is None",
}


def check(check_id: str) -> Check:
    """The registered ``Check`` called ``check_id`` (e.g. ``"02.lottery"``)."""
    try:
        return _BY_ID[check_id]
    except KeyError:
        raise KeyError(f"no audited check {check_id!r}; known: {sorted(_BY_ID)}") from None
