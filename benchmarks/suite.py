"""The benchmarks, how to choose among them, and the loop that runs them into one report."""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from .report import SCHEMA, code_version, load_average, machine_info
from .results import Context, Group, Row

__all__ = ["ALIASES", "BENCHMARKS", "QUICK_SKIPS", "Benchmark", "run", "select"]


@dataclass(frozen=True)
class Benchmark:
    """A selectable benchmark. ``function`` returns its Group: a callable, or "module:name" of
    this package, imported only when the benchmark runs (so --help and tests stay light)."""

    name: str
    title: str
    function: str | Callable[[Context], Group]

    def __call__(self, ctx: Context) -> Group:
        if callable(self.function):
            return self.function(ctx)
        module, name = self.function.split(":")
        return getattr(importlib.import_module(f"benchmarks.{module}"), name)(ctx)


BENCHMARKS = {
    b.name: b
    for b in [
        Benchmark(
            "startup", "Start-up: import, first and later mnist(), first step", "startup:run"
        ),
        Benchmark("trainer", "Trainer throughput vs naive loop and matmul peak", "trainer:run"),
        Benchmark(
            "compiled",
            "A torch.compile'd step vs the eager trainer, compile included",
            "compiled:run",
        ),
        Benchmark(
            "population_xor", "Population training, XOR N = 1,000", "population:xor_population"
        ),
        Benchmark(
            "population_lenet", "Population training, LeNet N = 8 and 32", "population:lenet"
        ),
        Benchmark(
            "population_gpu", "Population training, LeNet N = 64 (GPU)", "population:lenet_gpu"
        ),
        Benchmark(
            "population_conv",
            "Population training through torch.func, conv4 and ResNet-8, N = 4 and 8",
            "population:conv_and_resnet",
        ),
        Benchmark(
            "population_mlp_paths",
            "Population training, LeNet: batched matmuls vs torch.func",
            "population:mlp_paths",
        ),
        Benchmark(
            "population_vs_train",
            "Population vs tl.train per step, LeNet-300-100, N = 1, 2, 4, 8, 32",
            "population:versus_train",
        ),
        Benchmark("pruning", "Pruning cost, share of a round", "pruning:run"),
        Benchmark(
            "contention", "Two training jobs on two cores, per thread setting", "contention:run"
        ),
        Benchmark("imp_quick", "IMP lenet_mnist_paper, quick budget", "imp:quick"),
        Benchmark("imp_full", "IMP lenet_mnist_paper, full budget", "imp:full"),
        Benchmark("paper_figure", "Paper-scale LeNet figure (GPU)", "imp:paper_figure"),
        Benchmark(
            "paper_scale",
            "Paper-scale LeNet figure on this machine: measured per-cell costs, "
            "projected wall time",
            "paper_scale:run",
        ),
        Benchmark(
            "cluster",
            "One IMP sweep: one process vs a Dask LocalCluster of 2 workers",
            "cluster:run",
        ),
        Benchmark("notebooks", "Notebook execution, quick mode", "notebooks:run"),
    ]
}
ALIASES = {
    "population": (
        "population_xor",
        "population_lenet",
        "population_gpu",
        "population_conv",
        "population_mlp_paths",
        "population_vs_train",
    ),
    "imp": ("imp_quick", "imp_full", "paper_figure"),
    "gpu": ("population_gpu", "paper_figure"),
}
# Too long for a smoke run; --only names them to run them anyway.
QUICK_SKIPS = ("imp_full",)


def _expand(names: Sequence[str], flag: str) -> list[str]:
    out = []
    for name in names:
        if name in ALIASES:
            out += ALIASES[name]
        elif name in BENCHMARKS:
            out.append(name)
        else:
            valid = [*BENCHMARKS, *ALIASES]
            raise ValueError(f"{flag}: unknown benchmark {name!r}; choose from {', '.join(valid)}")
    return out


def select(
    only: Sequence[str] | None, skip: Sequence[str], quick: bool
) -> tuple[list[str], dict[str, str]]:
    """Which benchmarks run, in suite order, and why each other one does not.

    ``only`` (names or aliases; None = all) and ``skip`` come from --only and --skip. A --quick
    run also leaves out ``QUICK_SKIPS`` unless --only names them.
    """
    wanted = set(_expand(only, "--only")) if only is not None else set(BENCHMARKS)
    unwanted = set(_expand(skip, "--skip"))
    chosen, skipped = [], {}
    for name in BENCHMARKS:
        if name not in wanted:
            skipped[name] = "not in --only"
        elif name in unwanted:
            skipped[name] = "--skip"
        elif quick and only is None and name in QUICK_SKIPS:
            skipped[name] = "left out of --quick runs"
        else:
            chosen.append(name)
    return chosen, skipped


def run(
    names: Sequence[str],
    skipped: Mapping[str, str],
    ctx: Context,
    command: str,
    registry: Mapping[str, Benchmark] | None = None,
) -> dict:
    """Run the named benchmarks in suite order and return the report (``report``'s layout).

    Every benchmark of ``registry`` (default ``BENCHMARKS``) gets at least one row: its results,
    or why it did not run. One that raises is recorded (a FAILED row, its traceback under
    "errors") and the others still run.
    """
    registry = BENCHMARKS if registry is None else registry
    started = time.perf_counter()
    report = {
        "schema": SCHEMA,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if ctx.quick else "full",
        "command": command,
        "wall_seconds": 0.0,
        "machine": machine_info(ctx.device),
        "code": code_version(),
        "rows": [],
        "skipped": dict(skipped),
        "errors": {},
        "details": {},
    }
    for name, bench in registry.items():
        if name not in names:
            why = skipped.get(name, "not selected")
            report["rows"].append(Row.unmeasured(name, bench.title, f"not run: {why}").as_dict())
            continue
        t0 = time.perf_counter()
        ctx.log(f"== {name}: {bench.title}")
        try:
            group = bench(ctx)
        except Exception:
            report["errors"][name] = traceback.format_exc()
            ctx.log(report["errors"][name])
            report["rows"].append(Row.unmeasured(name, bench.title, "FAILED (see JSON)").as_dict())
            continue
        report["rows"] += [r.as_dict() for r in group.rows]
        report["details"][name] = {**group.details, "seconds": time.perf_counter() - t0}
        ctx.log(f"== {name}: done in {time.perf_counter() - t0:.0f} s")
    report["machine"]["load_average_end"] = load_average()
    report["wall_seconds"] = time.perf_counter() - started
    return report
