"""The robustness audit: is an outcome a notebook checks the same on every machine?

Floats differ between machines (BLAS kernels, vector widths, thread counts) and training amplifies
last-digit differences, so an outcome that sits near its decision rule can flip from one CPU to
another. Before a notebook may check an outcome (``# NBVAL_CHECK_OUTPUT``), the audit reruns the
experiment behind it under the perturbations another machine would bring (``VARIANTS``):

* **threads**: 1 and 2 (``torch.set_num_threads``): a matrix product splits its sums over threads
  differently, which changes their rounding;
* **seeds**: three disjoint seed sets of the size the notebook uses (the notebook's own, then the
  same seeds shifted by 100,000 and by 200,000), at both thread counts;
* **rounding**: every initial weight multiplied by ``1 + 1e-6·ε`` (ε standard normal,
  ``models.perturbed_init``).

Why the last one is a fair proxy for "another CPU's rounding": another BLAS kernel or vector width
changes results by a few units in the last place of float32 (relative ~1e-7) in the very first
forward and backward pass, and training then amplifies that difference until two runs differ as
much as any two nearby starting points would. A relative perturbation of 1e-6 (about ten units in
the last place) injects a difference of that size at the start, where the amplification begins; it
is small enough to leave the experiment unchanged in every respect a person would name (same
seeds, same data order, same architecture) and large enough not to be rounded away. It cannot
reproduce another machine exactly, but it samples the same thing: the spread of outcomes that
last-digit noise alone produces. The thread variants add a second, real source of such noise.

An outcome is **robust** when every variant reaches it, **fragile** otherwise. Only robust outcomes
may be output-checked (``tests/test_robustness.py`` enforces it); fragile ones are shown and
discussed. Run it with ``./workbook audit`` (``python -m ticketlab.audit --help``): each
(notebook, mode, variant) runs in a fresh process with its own result cache and thread count, its
outcomes are stored under ``artifacts/audit/``, and finished ones are reused (resume) unless the
code changed. It then rewrites ``notebooks/ROBUSTNESS.md`` and ``ticketlab/robustness.json``,
which notebooks read through ``report`` and ``show_checked``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHECKS", "VARIANTS", "Check", "Variant", "report", "show_checked"]

ROOT = Path(__file__).resolve().parent
TABLE_JSON = ROOT / "robustness.json"
"""The audit's committed findings, read by ``report`` and ``show_checked``."""


# --------------------------------------------------------------------------------------------
# What is audited


@dataclass(frozen=True)
class Variant:
    """One perturbation another machine could bring: threads, a seed offset, an init jitter."""

    name: str
    threads: int
    offset: int = 0
    perturbation: float = 0.0


VARIANTS = (
    Variant("reference", threads=2),
    Variant("1 thread", threads=1),
    Variant("seeds +100000", threads=2, offset=100_000),
    Variant("seeds +100000, 1 thread", threads=1, offset=100_000),
    Variant("seeds +200000", threads=2, offset=200_000),
    Variant("seeds +200000, 1 thread", threads=1, offset=200_000),
    Variant("init × (1 + 1e-6·ε)", threads=2, perturbation=1e-6),
)
"""``reference`` is the configuration of the committed outputs and of ``./workbook test``."""


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
    from .config import budget
    from .data import mnist
    from .models import lenet_300_100
    from .train import train

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
    from .config import budget
    from .experiments.xor import xor_tickets

    return xor_tickets(seeds=_shift(range(budget(quick=200, full=1000)), offset), progress=False)


def _lottery(offset: int):
    from . import imp
    from .config import budget
    from .experiments.lottery import CLAIMS, combine

    rounds, seeds = budget(quick=7, full=12), _shift([0, 1, 2, 3], offset)
    recipe = "lenet_mnist_paper"
    iterative = imp.run(
        recipe, rounds=rounds, seeds=seeds, controls=["reinit", "random"], progress=False
    )
    one_shot = imp.run(recipe, rounds=rounds, seeds=seeds, mode="one_shot", progress=False)
    table = combine(iterative, one_shot)
    return [claim.evaluate(table) for claim in CLAIMS]


def _instability(offset: int):
    from .config import budget
    from .experiments import instability

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
    from .config import budget
    from .experiments.batchnorm import batchnorm_only

    return batchnorm_only(seeds=_shift(range(budget(quick=3, full=4)), offset), progress=False)


def _supermask(offset: int):
    from .config import budget
    from .experiments import supermask

    return supermask(seeds=_shift(range(budget(quick=3, full=5)), offset), progress=False)


def _pruning_at_init(offset: int):
    from .config import budget
    from .experiments import pruning_at_init

    return pruning_at_init(seeds=_shift(range(budget(quick=4, full=6)), offset), progress=False)


def _retraining(offset: int):
    from .config import budget
    from .experiments import rewinding_vs_finetuning

    return rewinding_vs_finetuning(
        seeds=_shift(range(budget(quick=4, full=5)), offset), progress=False
    )


def _hardware(offset: int):
    from .experiments.hardware import sparsity_speed

    return sparsity_speed(device="cpu", seed=offset, progress=False)


def _seeds_lab(offset: int) -> dict[str, Any]:
    """Everything notebook 07 decides: its three claims, the LeNet specimen, the demonstrations."""
    from . import imp, seeds
    from .experiments import xor

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
        checked=("tickets beat reinit", "tickets beat random pruning", "tickets learn faster"),
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
        checked=(
            "BN-only far above chance",
            "BN-only beats random params",
            "BN-only grows with depth",
        ),
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


def check(check_id: str) -> Check:
    """The registered ``Check`` called ``check_id`` (e.g. ``"02.lottery"``)."""
    try:
        return _BY_ID[check_id]
    except KeyError:
        raise KeyError(f"no audited check {check_id!r}; known: {sorted(_BY_ID)}") from None


# --------------------------------------------------------------------------------------------
# What notebooks call


@functools.cache
def findings() -> dict[str, Any]:
    """The committed audit table (``ticketlab/robustness.json``); empty if there is none yet."""
    if not TABLE_JSON.exists():
        return {"checks": {}}
    return json.loads(TABLE_JSON.read_text())


def _mode() -> str:
    from .config import quick

    return "quick" if quick() else "full"


def show_checked(check_id: str, obj: Any) -> None:
    """Print ``name: outcome`` for each outcome the notebook checks, in the registered order.

    Notebooks call this in their ``# NBVAL_CHECK_OUTPUT`` cells: what it prints is compared with
    the committed output when the notebook runs as a test, so it prints only outcomes that the
    audit found robust (``Check.checked``), never a number.
    """
    entry = check(check_id)
    outcomes = entry.outcomes_of(obj)
    for name in entry.checked:
        print(f"{name}: {outcomes.get(name, 'not evaluated in this run')}")


def _finding(check_id: str, name: str) -> dict[str, Any] | None:
    by_mode = findings()["checks"].get(check_id, {})
    found = by_mode.get(_mode(), {}).get(name)
    return found if found is not None else by_mode.get("quick", {}).get(name)


def explanation(check_id: str, name: str, outcome: str) -> str | None:
    """A plain note on ``outcome`` next to what the audit found at the notebook's settings.

    None when there is nothing to say (the outcome is the robust one). Otherwise the note says
    whether the outcome is fragile (and what the audit saw), or how this run differs from a
    robust finding, and why that is a result rather than an error.
    """
    found = _finding(check_id, name)
    if found is None:
        return None
    seen = ", ".join(f"{o} in {n}" for o, n in sorted(found["seen"].items()))
    if found["verdict"] == "fragile":
        return (
            f"  Fragile: across seed sets, thread counts and rounding the audit saw {seen} of "
            f"{sum(found['seen'].values())} runs, so this outcome is shown, not checked "
            "(notebooks/ROBUSTNESS.md)."
        )
    if outcome == found["outcome"]:
        return None
    return (
        f"  Your run says {outcome!r}; at this notebook's settings the audit found "
        f"{found['outcome']!r} in every run it tried ({seen}). If you changed seeds, rounds, "
        "steps or a margin, this is your result: the claim, at your settings, came out "
        "differently. If you changed nothing, your machine found an outcome the audit did not; "
        "please report it with your CPU and thread count."
    )


def report(check_id: str, obj: Any) -> None:
    """Print every verdict of ``obj`` and, under each, what the robustness audit says of it."""
    verdicts = getattr(obj, "verdicts", obj)
    for verdict in verdicts:
        print(verdict)
        note = explanation(check_id, verdict.claim.name, verdict.outcome)
        if note:
            print(note)


# --------------------------------------------------------------------------------------------
# Running the audit


_PRESENTATION_ONLY = {"plots.py", "widgets.py"}
"""Modules that draw and display but never compute an outcome: editing them keeps results.

This module counts only through its checks' ``compute`` and ``outcomes`` functions, so that
editing the table's layout or the notes does not invalidate the stored runs either."""


def code_fingerprint(notebook: str) -> str:
    """Hash of the package's Python sources and the torch version: what decides an outcome.

    Figures and widgets (``_PRESENTATION_ONLY``) are left out, so restyling a plot does not send
    the audit back to recompute hours of runs.
    """
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for entry in CHECKS:  # this module's part: what the notebook's checks run and read
        if entry.notebook != notebook:
            continue
        for function in (entry.compute, entry.outcomes, entry.select):
            if function is not None:
                digest.update(inspect.getsource(function).encode())
    for path in sorted(ROOT.rglob("*.py")):
        if path.name in _PRESENTATION_ONLY or path == Path(__file__).resolve():
            continue
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _result_path(out: Path, mode: str, notebook: str, variant: Variant) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in variant.name).strip("_")
    return out / mode / notebook / f"{slug}.json"


def _worker(notebook: str, variant: Variant, out_file: Path) -> None:
    """Run every check of ``notebook`` under ``variant`` in this process; write its outcomes."""
    import torch

    from .models import perturbed_init

    torch.set_num_threads(variant.threads)
    started = time.perf_counter()
    computed: dict[Callable, Any] = {}
    outcomes = {}
    with perturbed_init(variant.perturbation):
        for entry in CHECKS:
            if entry.notebook != notebook:
                continue
            if entry.compute not in computed:
                computed[entry.compute] = entry.compute(variant.offset)
            part = computed[entry.compute]
            outcomes[entry.id] = entry.outcomes_of(entry.select(part) if entry.select else part)
    record = {
        "notebook": notebook,
        "variant": dataclasses.asdict(variant),
        "outcomes": outcomes,
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
        "fingerprint": code_fingerprint(notebook),
        "torch": torch.__version__,
        "machine": _cpu_name(),
    }
    from .atomic import write_atomic

    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_file, json.dumps(record, indent=1))


def _cpu_name() -> str:
    """The CPU's model name where the OS says it (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.machine()} ({os.cpu_count()} cores)"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_jobs(jobs: Sequence[tuple[str, str, Variant, Path]], cores: int, log) -> list[str]:
    """Run audit workers as subprocesses, never more threads at once than ``cores``."""
    pending, running, failures = list(jobs), [], []
    while pending or running:
        used = sum(job[2].threads for job, _ in running)
        while pending and (not running or used + pending[0][2].threads <= cores):
            job = pending.pop(0)
            mode, notebook, variant, path = job
            env = dict(
                os.environ,
                TICKETLAB_QUICK="1" if mode == "quick" else "0",
                TICKETLAB_CACHE=str(path.parent / "cache" / path.stem),
                OMP_NUM_THREADS=str(variant.threads),
                MKL_NUM_THREADS=str(variant.threads),
            )
            cmd = [
                sys.executable,
                "-m",
                "ticketlab.audit",
                "_worker",
                notebook,
                variant.name,
                str(path),
            ]
            log(f"start  {mode:5s} {notebook} [{variant.name}]")
            running.append((job, (subprocess.Popen(cmd, env=env), time.perf_counter())))
            used += variant.threads
        time.sleep(0.5)
        for item in list(running):
            job, (proc, t0) = item
            if proc.poll() is None:
                continue
            running.remove(item)
            mode, notebook, variant, _ = job
            status = "done " if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            took = time.perf_counter() - t0
            log(f"{status} {mode:5s} {notebook} [{variant.name}] in {took:.0f} s")
            if proc.returncode != 0:
                failures.append(f"{mode} {notebook} [{variant.name}]")
    return failures


def collect(out: Path) -> dict[str, Any]:
    """Fold every stored worker result into the table: per check, mode and outcome name."""
    table: dict[str, Any] = {"checks": {}, "variants": [v.name for v in VARIANTS]}
    fingerprints, seconds, machines = set(), {}, set()
    for mode in ("quick", "full"):
        for entry in CHECKS:
            runs = {}
            for variant in VARIANTS:
                record = _load(_result_path(out, mode, entry.notebook, variant))
                if record is None or entry.id not in record["outcomes"]:
                    continue
                runs[variant.name] = record["outcomes"][entry.id]
                fingerprints.add(record["fingerprint"])
                machines.add(record.get("machine", ""))
                seconds[(mode, entry.notebook, variant.name)] = record["seconds"]
            if not runs:
                continue
            names = list(dict.fromkeys(n for outcomes in runs.values() for n in outcomes))
            by_name = {}
            for name in names:
                per_variant = {v: outcomes.get(name, "missing") for v, outcomes in runs.items()}
                seen: dict[str, int] = {}
                for value in per_variant.values():
                    seen[value] = seen.get(value, 0) + 1
                complete = len(per_variant) == len(VARIANTS)
                by_name[name] = {
                    "outcome": per_variant.get("reference"),
                    "per_variant": per_variant,
                    "seen": seen,
                    "verdict": "fragile"
                    if len(seen) > 1
                    else ("robust" if complete else "incomplete"),
                    "checked": name in entry.checked,
                }
            table["checks"].setdefault(entry.id, {})[mode] = by_name
    table["fingerprints"] = sorted(fingerprints)
    per_notebook: dict[str, float] = {}
    for (mode, notebook, _), value in seconds.items():
        per_notebook[f"{mode} {notebook}"] = per_notebook.get(f"{mode} {notebook}", 0) + value
    table["seconds"] = per_notebook
    table["machines"] = sorted(machines)
    return table


_MODE_TITLES = {
    "quick": "TICKETLAB_QUICK=1, what the tests run",
    "full": "what learners run and the committed outputs come from",
}


def render_markdown(table: Mapping[str, Any]) -> str:
    """``notebooks/ROBUSTNESS.md``: one section per mode, one row per (check, outcome)."""
    short = {v.name: f"v{i}" for i, v in enumerate(VARIANTS)}
    lines = [
        "# Robustness of the outcomes the notebooks decide",
        "",
        "Generated by `./workbook audit` (`python -m ticketlab.audit`); do not edit by hand. Each",
        "outcome was recomputed in a fresh process per variant (see `ticketlab/audit.py` for why",
        "these variants stand in for another machine). **robust**: every variant reached the same",
        "outcome; **fragile**: not. Only robust outcomes may be output-checked by a notebook",
        "(`tests/test_robustness.py`); fragile ones are shown and discussed.",
        "",
        "Variants:",
        "",
    ]
    for v in VARIANTS:
        lines.append(
            f"- `{short[v.name]}` {v.name}: {v.threads} thread(s), seeds + {v.offset}, "
            f"initial weights × (1 + {v.perturbation:g}·ε)"
        )
    for mode in ("quick", "full"):
        title = _MODE_TITLES[mode]
        lines += ["", f"## {mode} mode ({title})", ""]
        header = "| check | outcome | checked | " + " | ".join(short.values()) + " | verdict |"
        lines += [header, "|" + "---|" * (len(VARIANTS) + 4)]
        if not any(mode in table["checks"].get(entry.id, {}) for entry in CHECKS):
            lines = [*lines[:-2], "Nothing audited in this mode yet."]
        not_audited = []
        for entry in CHECKS:
            found = table["checks"].get(entry.id, {}).get(mode)
            if not found:
                not_audited.append(entry.id)
                continue
            for name, row in found.items():
                cells = [row["per_variant"].get(v.name, "—") for v in VARIANTS]
                lines.append(
                    f"| {entry.id} | {name} | {'yes' if row['checked'] else 'no'} | "
                    + " | ".join(cells)
                    + f" | **{row['verdict']}** |"
                )
        if not_audited:
            lines += [
                "",
                f"Not audited in {mode} mode: "
                + ", ".join(f"`{c}`" for c in not_audited)
                + (
                    ". Full mode costs about 18 minutes per variant on 2 cores; quick mode is "
                    "what the tests check, and a checked outcome must print the same in both "
                    "modes, so the committed full-mode run is its reference there."
                    if mode == "full"
                    else "."
                ),
            ]
    lines += ["", "## Cost", "", "| mode and notebook | seconds, all variants |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in sorted(table["seconds"].items())]
    lines += [
        "",
        f"Code fingerprint(s): {', '.join(table['fingerprints'])}; machine(s): "
        f"{', '.join(table['machines'])}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_worker"]:
        _, notebook, name, path = args
        _worker(notebook, next(v for v in VARIANTS if v.name == name), Path(path))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m ticketlab.audit",
        description="Rerun every outcome the notebooks check under the perturbations another "
        "machine would bring, and rewrite notebooks/ROBUSTNESS.md and ticketlab/robustness.json.",
    )
    notebooks = sorted({c.notebook for c in CHECKS})
    parser.add_argument(
        "--lab",
        action="append",
        default=[],
        help="audit only this notebook (a prefix such as 02; repeatable)",
    )
    parser.add_argument(
        "--mode",
        choices=("quick", "full", "both"),
        default="quick",
        help="budget to audit (default quick, what the tests run)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="only these variants (names as in the table; repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts/audit"),
        help="where worker results (and their caches) live; default artifacts/audit",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=os.cpu_count() or 1,
        help="threads to run at once across workers (default: all cores)",
    )
    parser.add_argument("--force", action="store_true", help="recompute stored results too")
    parser.add_argument(
        "--render-only", action="store_true", help="only rewrite the table from stored results"
    )
    opts = parser.parse_args(args)
    chosen = [n for n in notebooks if not opts.lab or any(n.startswith(p) for p in opts.lab)]
    if not chosen:
        parser.error(f"--lab {opts.lab} matches no notebook; choose from {notebooks}")
    names = {v.name for v in VARIANTS}
    unknown = sorted(set(opts.variant) - names)
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {sorted(names)}")
    variants = [v for v in VARIANTS if not opts.variant or v.name in opts.variant]
    modes = ("quick", "full") if opts.mode == "both" else (opts.mode,)
    if opts.cores < 1:
        parser.error("--cores must be >= 1")

    def log(message: str) -> None:
        print(f"[audit {time.strftime('%H:%M:%S')}] {message}", flush=True)

    if not opts.render_only:
        jobs = []
        for mode in modes:
            for notebook in chosen:
                fingerprint = code_fingerprint(notebook)
                for variant in variants:
                    path = _result_path(opts.out, mode, notebook, variant)
                    stored = _load(path)
                    if stored and stored.get("fingerprint") == fingerprint and not opts.force:
                        log(f"cached {mode:5s} {notebook} [{variant.name}]")
                        continue
                    jobs.append((mode, notebook, variant, path))
        # Two-thread jobs first, so one-thread jobs pair up at the end.
        jobs.sort(key=lambda job: -job[2].threads)
        failures = _run_jobs(jobs, opts.cores, log)
        if failures:
            log("failed: " + "; ".join(failures))
    table = collect(opts.out)
    from .atomic import write_atomic

    write_atomic(TABLE_JSON, json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    markdown = ROOT.parent / "notebooks" / "ROBUSTNESS.md"
    write_atomic(markdown, render_markdown(table))
    log(f"wrote {TABLE_JSON} and {markdown}")
    return 1 if not opts.render_only and failures else 0


if __name__ == "__main__":
    sys.exit(main())
