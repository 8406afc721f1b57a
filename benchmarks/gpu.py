"""``python -m benchmarks.gpu`` (``./workbook bench --gpu``): the GPU checks as one prepared script.

A GPU machine (H100/H200 class) is lent for minutes, so everything worth checking on one runs
here in one go, about 5 minutes in all, and ends in one table (measured vs target) and one JSON
file (``artifacts/gpu.json``, the suite's layout: ``benchmarks.report``). The parts, each with
its time budget on the GPU:

1. ``tests`` (≤ 2 minutes; killed at ``GPU_SHAPE.tests_timeout_s``): ``pytest -m "not e2e"`` on
   the tests whose CUDA runs matter: the ``device``-parametrized tests of training, pruning,
   masks, the optimizers, populations and IMP (their ``[cuda]`` cases), the sync-free tests
   (``test_sync.py``, ``test_pruning_never_synchronizes_with_the_gpu``: training steps and
   pruning under ``torch.cuda.set_sync_debug_mode("error")``) and 2:4 semi-structured sparsity.
   Reported as passed / failed / skipped counts (from pytest's JUnit XML).
2. ``population_gpu`` (about 30–60 s): the suite's benchmark of that name
   (``population.lenet_gpu``): a population of 64 LeNet-300-100s vs 8 of them trained one after
   another, 500 steps, goal ≥ 20×, and the float64 check that the members match ``train``.
3. ``paper_figure_gpu`` (about 1.5 minutes): the paper-scale LeNet figure (Frankle & Carbin 2019:
   5 seeds, dense + 15 pruning rounds, a ticket and 3 reinitializations per pruned round, 50,000
   steps of batch 60 each, evaluating every 100) on full-size synthetic data (55,000 × 1 × 28 ×
   28, ``paper_scale.synthetic_full``), goal < 10 minutes on one GPU for the whole figure. The
   whole figure does not fit the lease, so a fraction runs on the GPU and the rest is projected
   with ``paper_scale``'s own functions (``project_run``, ``project``, ``evaluations``):

   * per-unit costs, each the difference of a short and a long run, (T(b) − T(a)) / n, so set-up
     and the evaluations every run makes cancel (``_difference``): one training step of one
     network (dense and at round 15's 3.6 % mask), of a population of 4 (one seed's round), of 5
     (round 0 of all seeds, dense) and of 20 (a pruned round of all seeds); one evaluation
     (validation + test, 15,000 images) of 1, 4, 5 and 20 networks; a round's pruning and set-up
     for one seed (``paper_scale._round_setups``, on the host);
   * one real pruned round of all 5 seeds (a population of 20) at the paper's 50,000 steps, or
     fewer if its projection would not fit ``GPU_SHAPE.validation_budget_s``, measured against
     its projection (the check that the unit costs add up);
   * the projected figure as ``imp.run`` trains it on one device by default (all seeds in one
     population per round: ``project_grouped``; the judged row), and one seed at a time
     (``group_size=1``, populations of 4: ``paper_scale.project``, an information row);
   * the peak GPU memory of the part (``torch.cuda.max_memory_allocated``).

Timing. The device is synchronized only around timed regions (``ticketlab.timing.time_call``:
before the clock starts and before it stops), never inside them, so the measured code runs as it
does in ``imp.run``. PyTorch's precision settings are left at their defaults (TF32 matmuls
included; the header states them), so the numbers are what a user gets.

Without CUDA the script measures nothing: every GPU row reads "no GPU: not measured" (the tests
"no GPU: not run"), stderr says so, and the exit status is 0 so that this can be tested;
``--require-gpu`` makes it exit 2 instead. ``--cpu-shape`` runs the whole script on the CPU at
tiny sizes (two quick tests, a population of 4 for 5 steps, a few steps of the paper-scale
fraction on 600 / 100 / 100 synthetic images) to check its plumbing end to end in seconds; its
rows are not judged.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .report import format_table, to_json, write_atomic
from .results import Context, Group, Row, summary
from .suite import Benchmark, run

__all__ = [
    "CPU_SHAPE",
    "CUDA_TESTS",
    "GPU_SHAPE",
    "NO_GPU",
    "Shape",
    "gpu_info",
    "main",
    "project_grouped",
    "registry",
    "validation_steps",
]

GROUP = "gpu"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "artifacts" / "gpu.json"
DEFAULT_CPU_SHAPE_JSON = REPO / "artifacts" / "gpu-cpu-shape.json"
NO_GPU = "no CUDA device: this script has not met a GPU here; run it on a machine with one"
# The tests whose CUDA runs matter (module docstring), and the -k expression that picks their
# CUDA cases ("[cuda" parameter ids, "gpu"/"cuda" in a name), the sync-free tests and 2:4.
CUDA_TESTS = (
    "tests/test_sync.py",
    "tests/test_sparsity.py",
    "tests/test_population.py",
    "tests/test_train.py",
    "tests/test_prune.py",
    "tests/test_optim.py",
    "tests/test_masks.py",
    "tests/test_imp.py",
)
CUDA_TESTS_K = "cuda or gpu or sync or semi_structured"
# Round 0 of the figure trains the 5 seeds' dense networks, a pruned round their tickets and
# reinitializations: populations of 5 and 20 when all seeds share one (imp.run's default).
DENSE_MEMBERS = 5
ROUND_MEMBERS = 20


@dataclass(frozen=True)
class Shape:
    """The sizes of one run of this script: ``GPU_SHAPE`` on a GPU, ``CPU_SHAPE`` with
    --cpu-shape. Seconds are wall-clock budgets; steps are training steps of batch 60."""

    name: str
    pytest_args: tuple[str, ...]
    tests_timeout_s: float  # the pytest run is killed after this long
    pytest_env: tuple[tuple[str, str], ...]  # set for the pytest run
    population: tuple[int, int, int] | None  # (N, sequential, steps); None: population.lenet_gpu
    data_sizes: dict[str, int] | None  # images per split; None: the full 55,000 / 5,000 / 10,000
    step_short: int  # the short and the long run of a step cost's difference
    step_long: int
    eval_steps: int  # k: a run of k steps evaluating every step vs only at its two ends
    rounds: int  # rounds per unit cost (alternating order), unless --repeats says otherwise
    validation_max_steps: int  # the real round: at most this many steps ...
    validation_every: int  # ... evaluating this often ...
    validation_budget_s: float  # ... and as many as its projection fits in this budget

    @property
    def cpu(self) -> bool:
        return self.name == "cpu-shape"


GPU_SHAPE = Shape(
    name="gpu",
    pytest_args=(*CUDA_TESTS, "-k", CUDA_TESTS_K),
    tests_timeout_s=180,
    pytest_env=(),
    population=None,
    data_sizes=None,
    step_short=100,
    step_long=500,
    eval_steps=11,
    rounds=3,
    validation_max_steps=50_000,
    validation_every=100,
    validation_budget_s=45,
)
CPU_SHAPE = Shape(
    name="cpu-shape",
    pytest_args=(
        "tests/test_benchmarks.py::test_spread_picks_evenly_spaced_members",
        "tests/test_benchmarks.py::test_naive_net_computes_what_lenet_computes",
    ),
    tests_timeout_s=120,
    # Seconds saved on start-up: these two tests need none of the plugins (notebooks, browser).
    pytest_env=(("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1"),),
    population=(4, 2, 5),
    data_sizes={"train": 600, "val": 100, "test": 100},
    step_short=1,
    step_long=4,
    eval_steps=2,
    rounds=1,
    validation_max_steps=4,
    validation_every=2,
    validation_budget_s=5,
)


# -- the header -----------------------------------------------------------------------------------


def gpu_info(device: torch.device) -> dict:
    """The GPU (name, compute capability, memory in GiB; None without one), torch's and its CUDA
    and cuDNN builds, and the float32 precision settings, read and left as they are."""
    info = {
        "name": None,
        "capability": None,
        "memory_gib": None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    return info


def _header(info: dict, shape: Shape) -> str:
    if info["name"] is not None:
        gpu = f"{info['name']} (compute capability {info['capability']}, {info['memory_gib']} GiB)"
    else:
        gpu = "no CUDA device" + (", CPU shape: tiny sizes, plumbing only" if shape.cpu else "")
    return (
        f"GPU checks: {gpu}; torch {info['torch']}, CUDA {info['cuda'] or 'none'} (build), cuDNN "
        f"{info['cudnn'] or 'none'}; TF32 matmul {info['tf32_matmul']}, cuDNN TF32 "
        f"{info['tf32_cudnn']}, float32 matmul precision {info['float32_matmul_precision']!r} "
        "(PyTorch's defaults, left as they are)"
    )


# -- part 1: the CUDA tests -----------------------------------------------------------------------


def _junit_counts(path: Path) -> dict[str, int]:
    """tests, passed, failed, errors and skipped of a pytest JUnit XML file (all its suites)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))

    def total(key: str) -> int:
        return sum(int(suite.get(key, 0)) for suite in suites)

    tests, failed, errors, skipped = map(total, ("tests", "failures", "errors", "skipped"))
    passed = tests - failed - errors - skipped
    return {"tests": tests, "passed": passed, "failed": failed, "errors": errors,
            "skipped": skipped}  # fmt: skip


def _tests(ctx: Context, shape: Shape) -> Group:
    """Run the test selection in a pytest subprocess; one row of counts."""
    item = "CUDA tests: sync-free training and pruning, 2:4, populations, device cases"
    if shape.cpu:
        item = "Tests (CPU shape: two quick tests)"
    target = "0 failed"
    if ctx.device.type != "cuda" and not shape.cpu:
        return Group([Row.unmeasured(GROUP, item, "no GPU: not run", target)])
    with tempfile.TemporaryDirectory(prefix="ticketlab-gpu-tests-") as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *shape.pytest_args, "-m", "not e2e", "-q",
                   "-p", "no:cacheprovider", "-o", "timeout=90", f"--junitxml={junit}"]  # fmt: skip
        ctx.log(f"tests: {shlex.join(command[2:])}")
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                command,
                cwd=REPO,
                env={**os.environ, **dict(shape.pytest_env)},
                capture_output=True,
                text=True,
                timeout=shape.tests_timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or ""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            details = {"command": command, "timeout_s": shape.tests_timeout_s, "ok": False,
                       "tail": out[-4000:]}  # fmt: skip
            why = f"timed out after {shape.tests_timeout_s:g} s"
            return Group([Row(GROUP, item, why, None, "", target, False)], details)
        wall = time.perf_counter() - started
        counts = _junit_counts(junit) if junit.exists() else None
    details = {"command": command, "returncode": proc.returncode, "seconds": wall,
               "counts": counts, "tail": proc.stdout[-4000:] + proc.stderr[-2000:]}  # fmt: skip
    if counts is None:
        why = f"pytest wrote no report (exit {proc.returncode})"
        return Group([Row(GROUP, item, why, None, "", target, False)], {**details, "ok": False})
    bad = counts["failed"] + counts["errors"]
    measured = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if counts["errors"]:
        measured += f", {counts['errors']} errors"
    ok = bad == 0 and counts["passed"] > 0 and proc.returncode == 0
    details["ok"] = ok
    note = f"{wall:.0f} s; pytest exit {proc.returncode}; -m 'not e2e'"
    return Group([Row(GROUP, item, measured, float(bad), "", target, ok, note)], details)


# -- part 2: population of 64 ---------------------------------------------------------------------


def _unjudged(rows: Sequence[Row]) -> list[Row]:
    """``rows`` with no verdict, for --cpu-shape: tiny CPU runs say nothing about a GPU's goal."""
    return [
        dataclasses.replace(r, met=None, note=f"CPU shape, not judged; {r.note}".rstrip("; "))
        for r in rows
    ]


def _peak_row(item: str, device: torch.device) -> Row:
    if device.type != "cuda":
        return Row.unmeasured(GROUP, item, "no GPU: not measured")
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return Row.info(GROUP, item, peak, "MiB", "torch.cuda.max_memory_allocated over the part")


def _population(ctx: Context, shape: Shape) -> Group:
    """The suite's ``population_gpu`` (64 LeNets vs sequential); --cpu-shape: 4 for 5 steps."""
    from . import population

    memory = "Population training (GPU): CUDA peak memory"
    if ctx.device.type != "cuda" and not shape.cpu:
        group = population.lenet_gpu(ctx)  # its own "no GPU: not measured" row
        return Group([*group.rows, Row.unmeasured(GROUP, memory, "no GPU: not measured")])
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    if shape.population is None:
        group = population.lenet_gpu(ctx)
    else:
        n, k, steps = shape.population
        group = population._lenet(ctx, [(n, k, population.GPU_SPEEDUP)], steps)
    rows = [*group.rows, _peak_row(memory, ctx.device)]
    return Group(_unjudged(rows) if shape.cpu else rows, group.details)


# -- part 3: the paper-scale figure ---------------------------------------------------------------


def project_grouped(costs: dict, steps: int, eval_every: int) -> dict:
    """The figure as ``imp.run`` trains it on one device by default, in seconds.

    All 5 seeds share one population per round (``group_size`` None): round 0 trains their dense
    networks as a population of ``DENSE_MEMBERS``, each of the 15 pruned rounds their tickets and
    3 reinitializations as one of ``ROUND_MEMBERS``, after the 5 seeds' pruning and set-up.
    Each population run is ``paper_scale.project_run`` (steps × step + evaluations × evaluation).

    Args:
        costs: seconds per unit: ``dense_step`` / ``dense_evaluation`` (the population of 5),
            ``pruned_step`` / ``pruned_evaluation`` (of 20), ``round_setup`` (one seed's).
        steps, eval_every: the recipe's training length and evaluation cadence.
    """
    from .paper_scale import FIGURE, evaluations, project_run

    def population(step: str, evaluation: str) -> float:
        unit = {"population_step": costs[step], "population_evaluation": costs[evaluation]}
        return project_run(unit, steps, eval_every)

    dense = population("dense_step", "dense_evaluation")
    pruned = population("pruned_step", "pruned_evaluation")
    setup = FIGURE["seeds"] * costs["round_setup"]
    return {
        "evaluations_per_run": evaluations(steps, eval_every),
        "dense_round_s": dense,
        "pruned_round_s": pruned,
        "round_setup_s": setup,
        "total_s": dense + FIGURE["pruned_rounds"] * (pruned + setup),
    }


def validation_steps(step: float, evaluation: float, every: int, most: int, budget_s: float) -> int:
    """Steps of the real round: the most (a multiple of ``every``, from ``every`` to ``most``)
    whose projected time, ``step`` and ``evaluation`` seconds each, fits in ``budget_s``."""
    evaluation = max(evaluation, 0.0)
    rate = step + evaluation / every  # seconds per step, its share of evaluations included
    if rate <= 0:
        return most
    # A run of s steps (a multiple of every) projects to s × rate + one evaluation at step 0.
    fit = int((budget_s - evaluation) / rate) // every * every
    return max(every, min(most, fit))


def _difference(make: Callable, a, b, per: int, rounds: int, device: torch.device) -> list[float]:
    """Seconds per unit, (T(b) − T(a)) / ``per``, one sample per round.

    ``make(config)`` returns a fresh call (networks built outside the clock). Each run is timed
    by ``time_call``: the wall clock on a GPU, synchronized before it starts and before it stops
    (nothing inside); one thread's CPU time on a one-thread CPU. A warm-up run of ``a`` comes
    first; the order of ``a`` and ``b`` alternates from round to round.
    """
    from ticketlab.timing import time_call

    def timed(config) -> float:
        return time_call(make(config), repeats=1, warmup=0, device=device)[0]

    timed(a)
    out = []
    for r in range(rounds):
        if r % 2 == 0:
            t_a, t_b = timed(a), timed(b)
        else:
            t_b, t_a = timed(b), timed(a)
        out.append((t_b - t_a) / per)
    return out


def _paper_data(shape: Shape, device: torch.device):
    """Synthetic data of the full MNIST shape (``synthetic_full``), cut to ``shape.data_sizes``
    images per split where given, on ``device``."""
    from ticketlab.data import Dataset, Split

    from .paper_scale import synthetic_full

    data = synthetic_full()
    if shape.data_sizes is not None:
        cut = {k: Split(s.X[: shape.data_sizes[k]], s.y[: shape.data_sizes[k]])
               for k, s in data.splits.items()}  # fmt: skip
        data = Dataset(data.name, num_classes=data.num_classes, **cut)
    return data.to(device)


def _paper_figure(ctx: Context, shape: Shape) -> Group:
    """Measure the figure's unit costs and one real round on the GPU; project the figure."""
    from ticketlab.population import prefers_population
    from ticketlab.recipes import get
    from ticketlab.timing import time_call

    from .imp import PAPER_FIGURE
    from .paper_scale import (
        MEMBERS,
        RECIPE,
        _round15_mask,
        _round_setups,
        _tiny_eval,
        _trainer,
        evaluations,
        project,
        project_run,
    )

    label = "Paper-scale LeNet figure, one GPU" + (" (CPU shape)" if shape.cpu else "")
    whole = f"{label}: whole figure, imp.run's default grouping (projected)"
    memory = f"{label}: CUDA peak memory"
    dev = ctx.device
    if dev.type != "cuda" and not shape.cpu:
        return Group([Row.unmeasured(GROUP, whole, "no GPU: not measured", PAPER_FIGURE),
                      Row.unmeasured(GROUP, memory, "no GPU: not measured")])  # fmt: skip
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    started = time.perf_counter()
    rec = get(RECIPE, budget="full")
    steps, every = rec.train.steps, rec.train.eval_every  # always the paper's: 50,000 and 100
    data = _paper_data(shape, dev)
    small = _tiny_eval(data)  # step costs: training only
    sparse = _round15_mask(rec, rec.model.build(0)).to(dev)
    rounds = ctx.repeats or shape.rounds
    short, long, k = shape.step_short, shape.step_long, shape.eval_steps

    def step_cost(members: int, mask) -> list[float]:
        configs = [rec.train.replace(steps=s, eval_every=s) for s in (short, short + long)]
        return _difference(lambda c: _trainer(rec, small, mask, members, c), *configs, long,
                           rounds, dev)  # fmt: skip

    def evaluation_cost(members: int) -> list[float]:
        configs = [rec.train.replace(steps=k, eval_every=e) for e in (k, 1)]
        return _difference(lambda c: _trainer(rec, data, sparse, members, c), *configs, k - 1,
                           rounds, dev)  # fmt: skip

    units = {
        "step_dense": lambda: step_cost(1, None),
        "step_sparse": lambda: step_cost(1, sparse),
        "population_step": lambda: step_cost(MEMBERS, sparse),
        "dense_step": lambda: step_cost(DENSE_MEMBERS, None),
        "pruned_step": lambda: step_cost(ROUND_MEMBERS, sparse),
        "evaluation": lambda: evaluation_cost(1),
        "population_evaluation": lambda: evaluation_cost(MEMBERS),
        "dense_evaluation": lambda: evaluation_cost(DENSE_MEMBERS),
        "pruned_evaluation": lambda: evaluation_cost(ROUND_MEMBERS),
    }
    samples = {}
    for name, measure in units.items():
        ctx.log(f"paper figure: {name}, {rounds} round{'s' if rounds > 1 else ''}")
        samples[name] = measure()
    # Wall clock, on the host's CPU (imp.run prunes where the weights are: on the GPU).
    samples["round_setup"] = _round_setups(rec)[1]
    costs = {name: summary(s)["median"] for name, s in samples.items()}

    # One real pruned round of all seeds, as long as its projection fits the budget.
    v_every = min(every, shape.validation_every)
    v_steps = validation_steps(costs["pruned_step"], costs["pruned_evaluation"], v_every,
                               shape.validation_max_steps, shape.validation_budget_s)  # fmt: skip
    v_costs = {"population_step": costs["pruned_step"],
               "population_evaluation": costs["pruned_evaluation"]}  # fmt: skip
    v_projected = project_run(v_costs, v_steps, v_every)
    ctx.log(f"paper figure: one round of {ROUND_MEMBERS} at {v_steps:,} steps "
            f"(projected {v_projected:.0f} s)")  # fmt: skip
    v_config = rec.train.replace(steps=v_steps, eval_every=v_every)
    (v_measured,) = time_call(
        _trainer(rec, data, sparse, ROUND_MEMBERS, v_config), repeats=1, warmup=0, device=dev
    )

    grouped = project_grouped(costs, steps, every)
    round_cells = [rec.model.build(0)] * 4  # one seed's round: the ticket and 3 reinits
    by_seed = project(costs, steps, every, prefers_population(round_cells, dev))
    details = {
        "recipe": {"name": RECIPE, "steps": steps, "eval_every": every},
        "data": {"synthetic": True, **{k: len(s) for k, s in data.splits.items()},
                 "input_shape": list(data.input_shape)},
        "clock": "wall clock, device synchronized before and after each timed run",
        "rounds": rounds,
        "runs": {"step_short": short, "step_long": long, "eval_steps": k},
        "costs_s": costs,
        "samples_s": {name: summary(s) for name, s in samples.items()},
        "validation": {"steps": v_steps, "eval_every": v_every, "members": ROUND_MEMBERS,
                       "evaluations": evaluations(v_steps, v_every), "measured_s": v_measured,
                       "projected_s": v_projected, "ratio": v_measured / v_projected,
                       "budget_s": shape.validation_budget_s},
        "grouped": grouped,
        "by_seed": by_seed,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    rows = _paper_rows(label, whole, costs, details, memory, dev)
    return Group(_unjudged(rows) if shape.cpu else rows, details)


def _paper_rows(label: str, whole: str, costs: dict, d: dict, memory: str, dev) -> list[Row]:
    """The paper-scale rows: unit costs, the real round against its projection, the figure."""
    from .imp import PAPER_FIGURE
    from .paper_scale import MEMBERS

    v, grouped, by_seed = d["validation"], d["grouped"], d["by_seed"]
    n = d["runs"]["step_long"]
    how = f"(T(short + {n}) − T(short)) / {n}, median of {d['rounds']}"
    steps = [
        ("step_dense", "one network, dense"),
        ("step_sparse", "one network, 3.6 % density"),
        ("population_step", f"a population of {MEMBERS} (one seed's round)"),
        ("dense_step", f"a population of {DENSE_MEMBERS}, dense (round 0, all seeds)"),
        ("pruned_step", f"a population of {ROUND_MEMBERS} (a pruned round, all seeds)"),
    ]
    evaluations = [
        ("evaluation", "one network"),
        ("population_evaluation", f"a population of {MEMBERS}"),
        ("dense_evaluation", f"a population of {DENSE_MEMBERS}"),
        ("pruned_evaluation", f"a population of {ROUND_MEMBERS}"),
    ]
    rows = [Row.info(GROUP, f"{label}: one training step, {what} (measured)", 1e3 * costs[key],
                     "ms", f"batch 60; {how}") for key, what in steps]  # fmt: skip
    rows += [Row.info(GROUP, f"{label}: one evaluation, {what}, val + test (measured)",
                      1e3 * costs[key], "ms", f"{d['data']['val'] + d['data']['test']:,} images")
             for key, what in evaluations]  # fmt: skip
    rows += [
        Row.info(GROUP, f"{label}: pruning and a round's set-up, one seed (measured)",
                 1e3 * costs["round_setup"], "ms", "on the host; median of 15 rounds"),
        Row.info(GROUP, f"{label}: one pruned round, {ROUND_MEMBERS} networks, {v['steps']:,} "
                 "steps (measured)", v["measured_s"], "s",
                 f"one train_many call, eval every {v['eval_every']} ({v['evaluations']} "
                 f"evaluations); budget {v['budget_s']:g} s"),
        Row.info(GROUP, f"{label}: that round, measured ÷ projected", v["ratio"], "×",
                 f"projected {v['projected_s']:.1f} s from the unit costs"),
        Row.judged(GROUP, whole, grouped["total_s"] / 60, "min", PAPER_FIGURE,
                   f"5 seeds in one population per round: round 0 "
                   f"{grouped['dense_round_s']:.0f} s + 15 × ({grouped['pruned_round_s']:.0f} s "
                   f"+ {grouped['round_setup_s']:.2f} s set-up); "
                   f"{grouped['evaluations_per_run']} evaluations per run; data loading not "
                   "counted"),
        Row.info(GROUP, f"{label}: whole figure, one seed at a time (projected)",
                 by_seed["serial_s"] / 60, "min",
                 f"imp.run(group_size=1): 5 × (dense cell + 15 rounds as populations of "
                 f"{MEMBERS}); paper_scale.project"),
        _peak_row(memory, dev),
    ]  # fmt: skip
    return rows


# -- the script -----------------------------------------------------------------------------------


def registry(shape: Shape) -> dict[str, Benchmark]:
    """This script's parts as suite benchmarks (``suite.run`` runs them into one report)."""
    parts = [
        Benchmark("tests", "CUDA tests", lambda ctx: _tests(ctx, shape)),
        Benchmark("population_gpu", "Population training, LeNet N = 64 (GPU)",
                  lambda ctx: _population(ctx, shape)),
        Benchmark("paper_figure_gpu", "Paper-scale LeNet figure on one GPU: a measured fraction, "
                  "the whole projected", lambda ctx: _paper_figure(ctx, shape)),
    ]  # fmt: skip
    return {b.name: b for b in parts}


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description="The GPU checks in one run of about 5 minutes: the CUDA tests, population "
        "training of 64 LeNets, the paper-scale figure (a measured fraction, the whole "
        "projected); one table and a JSON file.",
    )
    p.add_argument(
        "--cpu-shape",
        action="store_true",
        help="run everything on the CPU at tiny sizes, to check the script's plumbing",
    )
    p.add_argument("--require-gpu", action="store_true", help="exit 2 when there is no CUDA device")
    p.add_argument(
        "--skip",
        type=_names,
        default=[],
        metavar="A,B",
        help="leave out parts: tests, population_gpu, paper_figure_gpu",
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="where the numbers go (default artifacts/gpu.json; artifacts/gpu-cpu-shape.json "
        "with --cpu-shape)",
    )
    p.add_argument(
        "--repeats", type=int, metavar="N", help="timing rounds per comparison and unit cost"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the GPU checks; 0 when done (also without a GPU), 1 when a part failed or a test did,
    2 with --require-gpu and no GPU."""
    args = parser().parse_args(argv)
    shape = CPU_SHAPE if args.cpu_shape else GPU_SHAPE
    parts = registry(shape)
    unknown = [name for name in args.skip if name not in parts]
    if unknown:
        parser().error(f"--skip: unknown part {unknown[0]!r}; choose from {', '.join(parts)}")
    if args.repeats is not None and args.repeats < 1:
        parser().error(f"--repeats must be >= 1, got {args.repeats}")
    has_gpu = torch.cuda.is_available()
    if not has_gpu and not shape.cpu:
        print(NO_GPU, file=sys.stderr, flush=True)
        if args.require_gpu:
            return 2
    device = torch.device("cuda") if has_gpu and not shape.cpu else torch.device("cpu")

    def log(message: str) -> None:
        print(f"[bench --gpu] {message}", file=sys.stderr, flush=True)

    ctx = Context(quick=shape.cpu, repeats=args.repeats, device=device, log=log)
    skipped = dict.fromkeys(args.skip, "--skip")
    chosen = [name for name in parts if name not in skipped]
    given = argv if argv is not None else sys.argv[1:]
    report = run(chosen, skipped, ctx, f"python -m benchmarks.gpu {shlex.join(given)}".strip(),
                 parts)  # fmt: skip
    info = gpu_info(device)
    report["machine"]["gpu"] = info
    report["shape"] = dataclasses.asdict(shape)

    header = _header(info, shape)
    print(header + "\n\n" + format_table([Row(**r) for r in report["rows"]]))
    path = args.json or (DEFAULT_CPU_SHAPE_JSON if shape.cpu else DEFAULT_JSON)
    write_atomic(path, to_json(report))
    print(f"\nfull numbers: {path} ({report['wall_seconds']:.0f} s)")
    failed_tests = report["details"].get("tests", {}).get("ok") is False
    if report["errors"]:
        print(f"failed: {', '.join(report['errors'])}", file=sys.stderr)
    return 1 if report["errors"] or failed_tests else 0


if __name__ == "__main__":
    sys.exit(main())
