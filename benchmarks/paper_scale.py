"""Paper-scale LeNet figure on this CPU: measured per-cell costs, projected wall time.

Frankle & Carbin's (2019) LeNet-300-100 figure at the paper's own scale (``lenet_mnist_paper_full``:
55,000 training images, 50,000 iterations of batch 60, validation and test every 100 iterations)
is 16 levels (dense + 15 pruning rounds) × 5 seeds, and at every pruned level one ticket and three
random reinitializations of it. Per seed that is 1 dense cell + 15 × 4 cells: far too long to run
here, so this benchmark measures what one cell is made of and multiplies it out.

The data is synthetic but of exactly the real shape: train 55,000 × 1 × 28 × 28, validation 5,000,
test 10,000, float32 pixels drawn uniformly from 0…255 and normalized like MNIST's, labels 0–9
(``synthetic_full``). Costs do not depend on the values: every layer is a dense matmul, masks
included (a pruned weight is a multiplied-in zero).

Each measurement runs in a fresh ``python -m benchmarks.paper_scale SPEC`` process with one
PyTorch thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``), so none sees another's
caches or allocator state, and prints one JSON line. Times are CPU time of the one thread
(``time.thread_time``, ``ticketlab.timing.default_timer`` at one thread), which does not count
the moments the OS gives the core to other programs: on this shared machine it estimates the
wall time on a free core. The wall clock is recorded next to it (``wall``) to show the load.

Measured (``_child``, one process each):

* ``step_dense`` / ``step_sparse``: one ``ticketlab.train`` step of one network at the dense mask
  and at the mask of round 15 (layerwise 20 %, output 10 %: 3.6 % of the weights). Taken as the
  difference of a short and a long run, (T(short + n) − T(short)) / n, so set-up and the two
  evaluations every run makes cancel; those runs evaluate on 60 images only.
* ``population_step``: one step of ``train_many(..., population=True)`` with 4 members (a ticket
  and its 3 reinitializations share a round, mask and data order, as ``imp.run`` trains them).
* ``evaluation`` / ``population_evaluation``: one evaluation (validation + test, 15,000 images)
  of one network and of the population of 4, through the same trainers: the difference between
  evaluating every step and only at the ends of a run of k steps, divided by the k − 1 extra
  evaluations.
* ``round_setup``: what ``imp.run`` does between rounds for one seed: rank the trained weights and
  prune (``prune.magnitude``), rewind the ticket and draw 3 reinitializations. Measured once per
  round over 15 rounds.
* ``validation``: one real round at reduced length: a 4-member population, trained
  ``VALIDATION_STEPS`` steps with an evaluation every 100 on the full-size data, in one
  ``train_many`` call; compared with the projection of the same work (``project_run``).

Projected (``project``), with E = steps / eval_every + 1 = 501 evaluations per cell (``train``
also evaluates at step 0):

* cell = 50,000 × step + E × evaluation (the dense cell at the dense step, pruned at the sparse);
* a pruned round of one seed: 4 cells trained as a population (50,000 × population step +
  E × population evaluation) or one by one (4 × cell), whichever ``imp.run`` picks: for MLPs it
  picks the population (``ticketlab.population.prefers_population``), and that is the headline;
  the other way is reported next to it; plus ``round_setup``;
* one seed's chain = dense cell + 15 × round (a seed's rounds are sequential);
* N workers of one thread each, a seed's chain the unit of work: wall = ceil(5 / N) × chain; the
  critical path is one chain. N = 1, 2 and 5; each worker is assumed to have a core of its own.
  That is ``imp.run(..., group_size=1)``: one seed per population. Its default, all seeds in one
  group, would train a round of the 5 seeds as one population of 20, which is not measured here.

``--quick`` keeps the full-size data and cuts the steps and rounds (about a minute, for a test);
the full run takes about a minute and a half on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable

from .child import run_module
from .report import load_average
from .results import Context, Group, Row, summary

__all__ = [
    "FIGURE",
    "VALIDATION_STEPS",
    "WORKERS",
    "evaluations",
    "project",
    "project_run",
    "run",
    "run_child",
    "synthetic_full",
]

GROUP = "paper_scale"
RECIPE = "lenet_mnist_paper_full"
SIZES = {"train": 55_000, "val": 5_000, "test": 10_000}
MEMBERS = 4  # a round's cells of one seed: the ticket and its 3 reinitializations
FIGURE = {"seeds": 5, "pruned_rounds": 15, "cells_per_round": MEMBERS}
WORKERS = (1, 2, 5)
VALIDATION_STEPS = 1_000
SECONDS_PER_HOUR = 3600.0


# -- the data -------------------------------------------------------------------------------------


def synthetic_full(seed: int = 0):
    """A ``Dataset`` shaped like ``mnist(subset="full")``: 55,000 / 5,000 / 10,000 examples.

    ``X`` float32 (N, 1, 28, 28): pixels drawn uniformly from {0, …, 255} and normalized as
    ``mnist`` does, (x / 255 − MNIST_MEAN) / MNIST_STD, so values span MNIST's [−0.42, 2.82].
    ``y`` int64 (N,), uniform over 0–9. On the CPU; about 220 MB.
    """
    import torch

    from ticketlab.data import MNIST_MEAN, MNIST_STD, Dataset, Split

    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> Split:
        pixels = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
        X = (pixels.float() / 255 - MNIST_MEAN) / MNIST_STD
        return Split(X, torch.randint(0, 10, (n,), generator=gen))

    return Dataset(
        "synthetic-mnist-full", num_classes=10, **{k: split(n) for k, n in SIZES.items()}
    )


# -- the projection -------------------------------------------------------------------------------


def evaluations(steps: int, eval_every: int) -> int:
    """Evaluations of one ``train`` run from step 0: at 0, every ``eval_every`` steps, and at the
    end (once, when ``steps`` is a multiple of ``eval_every``)."""
    return steps // eval_every + 1 + (1 if steps % eval_every else 0)


def project(costs: dict, steps: int, eval_every: int, population_first: bool) -> dict:
    """The figure's projected time from per-unit costs, all in seconds.

    Args:
        costs: seconds per unit: ``step_dense``, ``step_sparse``, ``population_step`` (one step of
            all 4 members), ``evaluation``, ``population_evaluation`` (val + test, 15,000 images)
            and ``round_setup`` (pruning and a round's starting networks, one seed).
        steps, eval_every: the recipe's training length and evaluation cadence.
        population_first: whether ``imp.run`` trains a round's 4 cells as one population
            (``prefers_population``); otherwise one by one.

    Returns cell, round, chain (one seed), serial figure and per-worker wall times; see the module
    docstring for the formulas.
    """
    e = evaluations(steps, eval_every)
    dense_cell = steps * costs["step_dense"] + e * costs["evaluation"]
    sparse_cell = steps * costs["step_sparse"] + e * costs["evaluation"]
    population_round = steps * costs["population_step"] + e * costs["population_evaluation"]
    one_by_one_round = MEMBERS * sparse_cell
    trained = population_round if population_first else one_by_one_round
    other = one_by_one_round if population_first else population_round

    def chain(round_training: float) -> float:
        return dense_cell + FIGURE["pruned_rounds"] * (round_training + costs["round_setup"])

    seeds = FIGURE["seeds"]
    return {
        "evaluations_per_cell": e,
        "dense_cell_s": dense_cell,
        "sparse_cell_s": sparse_cell,
        "population_round_s": population_round,
        "one_by_one_round_s": one_by_one_round,
        "round_choice": "population" if population_first else "one by one",
        "round_s": trained + costs["round_setup"],
        "chain_s": chain(trained),
        "serial_s": seeds * chain(trained),
        "other_choice_serial_s": seeds * chain(other),
        "critical_path_s": chain(trained),
        "workers_s": {str(n): math.ceil(seeds / n) * chain(trained) for n in WORKERS},
        "evaluation_share": e
        * (costs["population_evaluation"] if population_first else MEMBERS * costs["evaluation"])
        / trained,
    }


def project_run(costs: dict, steps: int, eval_every: int) -> float:
    """Projected seconds of one population-of-4 ``train_many`` run of ``steps`` steps."""
    e = evaluations(steps, eval_every)
    return steps * costs["population_step"] + e * costs["population_evaluation"]


# -- the child process ----------------------------------------------------------------------------


def _clocks() -> tuple[float, float]:
    """(CPU time of this thread, wall clock), in seconds."""
    return time.thread_time(), time.perf_counter()


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU, wall) seconds of one call of ``fn``."""
    cpu, wall = _clocks()
    fn()
    cpu_end, wall_end = _clocks()
    return cpu_end - cpu, wall_end - wall


def _round15_mask(rec, model):
    """The ticket mask of round 15 of the recipe's pruning (3.6 % of the weights). Magnitude
    pruning of the initial weights stands in for the trained ones: only the sizes matter here."""
    from ticketlab import prune
    from ticketlab.masks import Mask

    mask = Mask.ones(model)
    rates = dict(rec.prune.layer_rates)
    for _ in range(FIGURE["pruned_rounds"]):
        mask = prune.magnitude(model, mask, rec.prune.prune_fraction, rec.prune.prune_scope, rates)
    return mask


def _tiny_eval(data, n: int = 60):
    """``data`` with validation and test cut to ``n`` images, so a timed run is training only."""
    from ticketlab.data import Dataset, Split

    small = Split(data.val.X[:n], data.val.y[:n])
    return Dataset(data.name, data.train, small, small, data.num_classes)


def _trainer(rec, data, mask, members: int, config) -> Callable[[], object]:
    """A fresh call that trains ``members`` networks (1: ``train``; more: a population, all with
    the ticket's mask and data seed 0, as ``imp.run`` trains a round of one seed)."""
    from ticketlab.population import train_many
    from ticketlab.training import train

    if members == 1:
        model = rec.model.build(0)
        return lambda: train(model, data, config, mask=mask, data_seed=0, progress=False)
    models = [rec.model.build(i) for i in range(members)]
    return lambda: list(
        train_many(
            models, data, config, masks=[mask] * members, data_seeds=[0] * members,
            progress=False, population=True,
        )
    )  # fmt: skip


def _difference(make: Callable[[object], Callable[[], object]], a, b, per: int, rounds: int):
    """Per-unit (CPU, wall) samples of (T(b) − T(a)) / per over ``rounds`` rounds.

    ``make(config)`` returns a fresh call (networks built outside the clock). A warm-up call of
    ``a`` runs first; within a round the order of ``a`` and ``b`` alternates, so drift in the
    machine's speed falls on both sides.
    """
    make(a)()
    cpu, wall = [], []
    for r in range(rounds):
        if r % 2 == 0:
            t_a = _timed(make(a))
            t_b = _timed(make(b))
        else:
            t_b = _timed(make(b))
            t_a = _timed(make(a))
        cpu.append((t_b[0] - t_a[0]) / per)
        wall.append((t_b[1] - t_a[1]) / per)
    return cpu, wall


def _child(spec: dict) -> dict:
    """One measurement, as ``spec`` says; runs in its own process (module docstring)."""
    import torch

    torch.set_num_threads(1)
    from ticketlab.recipes import get

    rec = get(RECIPE, budget="full")
    what, rounds = spec["measure"], spec["rounds"]
    data = synthetic_full()
    probe = rec.model.build(0)
    sparse = _round15_mask(rec, probe)
    out: dict = {"measure": what, "threads": torch.get_num_threads(), "density": sparse.density}

    if what in ("step_dense", "step_sparse", "population_step"):
        short, long = spec["short"], spec["long"]
        members = MEMBERS if what == "population_step" else 1
        mask = None if what == "step_dense" else sparse
        small = _tiny_eval(data)
        configs = [rec.train.replace(steps=s, eval_every=s) for s in (short, short + long)]
        cpu, wall = _difference(
            lambda c: _trainer(rec, small, mask, members, c), *configs, long, rounds
        )
        out.update(steps=long, short=short, rounds=rounds)
    elif what in ("evaluation", "population_evaluation"):
        k = spec["steps"]
        members = MEMBERS if what == "population_evaluation" else 1
        configs = [rec.train.replace(steps=k, eval_every=e) for e in (k, 1)]
        cpu, wall = _difference(
            lambda c: _trainer(rec, data, sparse, members, c), *configs, k - 1, rounds
        )
        out.update(steps=k, extra_evaluations=k - 1, rounds=rounds, images=15_000)
    elif what == "round_setup":
        cpu, wall = _round_setups(rec)
        out.update(rounds=len(cpu))
    elif what == "validation":
        steps, every = spec["steps"], spec["eval_every"]
        config = rec.train.replace(steps=steps, eval_every=every)
        _trainer(rec, _tiny_eval(data), sparse, MEMBERS, config.replace(steps=2, eval_every=2))()
        t_cpu, t_wall = _timed(_trainer(rec, data, sparse, MEMBERS, config))
        cpu, wall = [t_cpu], [t_wall]
        out.update(steps=steps, eval_every=every, evaluations=evaluations(steps, every))
    else:
        raise ValueError(f"unknown measurement {what!r}")
    return {**out, "cpu": summary(cpu), "wall": summary(wall)}


def _round_setups(rec) -> tuple[list[float], list[float]]:
    """(CPU, wall) seconds of each of 15 rounds' set-up for one seed, as ``imp.run`` does it:
    load the weights to rank into a fresh network, prune them by magnitude, rewind the ticket to
    the initial weights under the new mask, and draw its 3 reinitializations."""
    from ticketlab import prune
    from ticketlab.masks import Mask
    from ticketlab.rewinding import control, rewind

    start = rec.model.build(0).state_dict()
    trained = rec.model.build(1).state_dict()  # stands in for the ticket's trained weights
    rates = dict(rec.prune.layer_rates)
    mask = Mask.ones(rec.model.build(0))
    cpu, wall = [], []
    for round_ in range(1, FIGURE["pruned_rounds"] + 1):
        c0, w0 = _clocks()
        ranked = rec.model.build(0)
        ranked.load_state_dict(trained)
        mask = prune.magnitude(ranked, mask, rec.prune.prune_fraction, rec.prune.prune_scope, rates)
        rewind(rec.model.build(0), start, mask)
        base = rewind(rec.model.build(0), start)
        for draw in range(MEMBERS - 1):
            control("reinit", base, mask, 1000 * round_ + draw, rec.model.init)
        c1, w1 = _clocks()
        cpu.append(c1 - c0)
        wall.append(w1 - w0)
    return cpu, wall


def run_child(spec: dict, timeout: float = 600) -> dict:
    """Run one measurement in a fresh one-thread process; returns its JSON result."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TICKETLAB_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("TICKETLAB_QUICK", None)
    return run_module("benchmarks.paper_scale", spec, env, timeout)


# -- the benchmark --------------------------------------------------------------------------------


def _specs(ctx: Context) -> dict[str, dict]:
    """What each child measures; --quick cuts steps and rounds (not the data: it stays full)."""
    return {
        "step_dense": {"short": ctx.size(5, 20), "long": ctx.size(20, 300),
                       "rounds": ctx.rounds(1, 5)},
        "step_sparse": {"short": ctx.size(5, 20), "long": ctx.size(20, 300),
                        "rounds": ctx.rounds(1, 5)},
        "population_step": {"short": ctx.size(2, 10), "long": ctx.size(10, 300),
                            "rounds": ctx.rounds(1, 5)},
        "evaluation": {"steps": ctx.size(2, 6), "rounds": ctx.rounds(1, 5)},
        "population_evaluation": {"steps": ctx.size(2, 4), "rounds": ctx.rounds(1, 3)},
        "round_setup": {"rounds": 1},
        "validation": {"steps": ctx.size(20, VALIDATION_STEPS), "eval_every": ctx.size(10, 100),
                       "rounds": 1},
    }  # fmt: skip


def _hours(seconds: float) -> float:
    return seconds / SECONDS_PER_HOUR


def run(ctx: Context) -> Group:
    """Measure the per-unit costs (one child each), project the figure, validate on one round."""
    import torch

    from ticketlab.population import prefers_population
    from ticketlab.recipes import get

    rec = get(RECIPE, budget="full")
    steps, every = rec.train.steps, rec.train.eval_every
    load_before = load_average()
    measured = {}
    for what, spec in _specs(ctx).items():
        ctx.log(f"paper_scale: {what} in a one-thread subprocess ({spec})")
        measured[what] = run_child({"measure": what, **spec})
    load_after = load_average()
    costs = {what: m["cpu"]["median"] for what, m in measured.items() if what != "validation"}
    population_first = prefers_population([rec.model.build(0)] * MEMBERS, torch.device("cpu"))
    projection = project(costs, steps, every, population_first)
    val = measured["validation"]
    projected_val = project_run(costs, val["steps"], val["eval_every"])
    validation = {
        "steps": val["steps"],
        "eval_every": val["eval_every"],
        "evaluations": val["evaluations"],
        "measured_s": val["cpu"]["median"],
        "measured_wall_s": val["wall"]["median"],
        "projected_s": projected_val,
        "ratio": val["cpu"]["median"] / projected_val,
    }
    details = {
        "recipe": {"name": RECIPE, "key": rec.key, "canonical": rec.canonical, "steps": steps,
                   "eval_every": every, "batch_size": rec.train.batch_size},
        "data": {"synthetic": True, **SIZES, "input_shape": [1, 28, 28]},
        "figure": {**FIGURE, "levels": FIGURE["pruned_rounds"] + 1, "workers": list(WORKERS)},
        "clock": "CPU time of the one PyTorch thread (time.thread_time); wall clock alongside",
        "costs_s": costs,
        "measured": measured,
        "population_first": population_first,
        "projection": projection,
        "validation": validation,
        "load_average": {"before": load_before, "after": load_after},
        "cores": os.cpu_count(),
    }  # fmt: skip
    return Group(_rows(measured, costs, projection, validation), details)


def _rows(measured: dict, costs: dict, p: dict, val: dict) -> list[Row]:
    """The table: measured unit costs first, then the projection and its validation."""
    label = "Paper-scale LeNet figure, this CPU"
    e = p["evaluations_per_cell"]
    pop_step, steps_sparse = costs["population_step"], costs["step_sparse"]
    rows = [
        Row.info(GROUP, f"{label}: one training step, dense (measured)",
                 1e3 * costs["step_dense"], "ms",
                 f"1 thread, ticketlab.train, batch 60, full-size synthetic data; (T(short + n) − "
                 f"T(short)) / n, n = {measured['step_dense']['steps']}, median of "
                 f"{measured['step_dense']['rounds']} rounds; CPU time of the thread"),
        Row.info(GROUP, f"{label}: one training step, {measured['step_sparse']['density']:.1%} "
                 "density (measured)", 1e3 * steps_sparse, "ms",
                 "round 15's layerwise mask; masks are dense multiplies, so about the dense cost"),
        Row.info(GROUP, f"{label}: one step of a population of {MEMBERS} (measured)",
                 1e3 * pop_step, "ms",
                 f"train_many(population=True): ticket + 3 reinits; "
                 f"{1e3 * pop_step / MEMBERS:.2f} ms per member; speed-up over {MEMBERS} single "
                 f"steps at 3.6 %: {MEMBERS * steps_sparse / pop_step:.2f}×"),
        Row.info(GROUP, f"{label}: one evaluation, val + test 15,000 images (measured)",
                 costs["evaluation"], "s",
                 f"one network, through train (eval every step vs only at the ends); {e} per "
                 "cell"),
        Row.info(GROUP, f"{label}: one evaluation of a population of {MEMBERS} (measured)",
                 costs["population_evaluation"], "s", "through train_population, 15,000 images"),
        Row.info(GROUP, f"{label}: pruning and a round's set-up, one seed (measured)",
                 1e3 * costs["round_setup"], "ms",
                 "prune.magnitude + rewind + 3 reinit draws; median of 15 rounds"),
        Row.info(GROUP, f"{label}: one round at {val['steps']:,} steps, population of {MEMBERS} "
                 "(measured)", val["measured_s"], "s",
                 f"one train_many call, eval every {val['eval_every']} ({val['evaluations']} "
                 f"evaluations); wall clock {val['measured_wall_s']:.1f} s"),
        Row.info(GROUP, f"{label}: that round, measured ÷ projected", val["ratio"], "×",
                 f"projected {val['projected_s']:.1f} s = {val['steps']:,} × population step + "
                 f"{val['evaluations']} × population evaluation (set-up not projected)"),
        Row.info(GROUP, f"{label}: one pruned cell (projected)", p["sparse_cell_s"] / 60, "min",
                 f"50,000 × step + {e} × evaluation (eval at step 0 and every 100)"),
        Row.info(GROUP, f"{label}: one pruned round of a seed, {MEMBERS} cells (projected)",
                 p["round_s"] / 60, "min",
                 f"as imp.run trains it ({p['round_choice']}); population "
                 f"{p['population_round_s'] / 60:.1f} min vs one by one "
                 f"{p['one_by_one_round_s'] / 60:.1f} min; evaluation "
                 f"{p['evaluation_share']:.0%} of it"),
        Row.info(GROUP, f"{label}: one seed's chain, dense + 15 rounds (projected)",
                 _hours(p["chain_s"]), "h",
                 "rounds of a seed are sequential: the critical path with enough workers"),
    ]  # fmt: skip
    for n in WORKERS:
        chains = math.ceil(FIGURE["seeds"] / n)
        note = (
            f"{chains} × one seed's chain; 5 seeds × (1 dense + 15 × {MEMBERS}) = 305 cells"
            + ("" if n > 1 else f"; {_hours(p['other_choice_serial_s']):.1f} h if rounds trained "
               f"{'one by one' if p['round_choice'] == 'population' else 'as populations'}")
            + (f"; assumes a free core per worker (this machine has {os.cpu_count()})"
               if n > 1 else "")
        )  # fmt: skip
        item = f"{label}, {n} worker{'s' if n > 1 else ''}: projected wall time"
        rows.append(Row.info(GROUP, item, _hours(p["workers_s"][str(n)]), "h", note))
    return rows


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
