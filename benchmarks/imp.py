"""IMP end to end: wall time and peak memory of ``ticketlab.imp.run``, one subprocess per run.

Each run happens in a fresh ``python -m benchmarks.imp SPEC`` process with an empty result cache
in a temporary folder, so nothing is read from earlier runs and the peak memory is that run's
own. The child prints one JSON line: the wall time of ``imp.run`` alone (imports and data
loading are timed separately), the resident memory when IMP starts, the peak resident memory
during IMP (``_max_rss_mib``, restarted after loading where Linux allows, because decoding
MNIST briefly needs more than IMP), and on CUDA ``max_memory_allocated``.

* ``quick``/``full``: ``lenet_mnist_paper`` at its quick and full budgets, exactly as
  ``imp.run("lenet_mnist_paper")`` runs with and without ``TICKETLAB_QUICK=1`` (one seed, no
  controls).
* ``paper_figure`` (GPU only): the paper-scale LeNet figure: full MNIST, 50,000 iterations per
  round, 15 rounds, tickets and the reinit control, 5 seeds (evaluating every 100 iterations).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from .child import run_module
from .results import Context, Group, Row, Target

__all__ = ["full", "paper_figure", "quick", "run_child"]

GROUP = "imp"
PAPER_FIGURE = Target.below(10, "min")


def _max_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the same high-water mark ``getrusage`` reads, but
    without what ``getrusage`` adds from before ``exec``: a child forked from a large parent
    would otherwise report the parent's size (the benchmark process is ~0.9 GiB by then).
    Elsewhere: ``getrusage``'s ``ru_maxrss`` (bytes on macOS, KiB on other systems).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS count at the current RSS (Linux ≥ 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _child(spec: dict) -> dict:
    """Run IMP as ``spec`` says (in this process) and measure it."""
    started = time.perf_counter()
    import torch

    from ticketlab import imp
    from ticketlab.config import device as pick_device
    from ticketlab.recipes import get

    dev = pick_device(spec.get("device"))
    rec = get(spec["recipe"], **spec.get("overrides", {}))
    rec.data.load(dev)  # loading (and any decoding) is not IMP's cost
    process_peak = _max_rss_mib()
    reset = _reset_peak_rss()
    before = _max_rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    run_started = time.perf_counter()
    result = imp.run(
        rec,
        rounds=spec.get("rounds"),
        seeds=spec.get("seeds", (0,)),
        controls=spec.get("controls", ()),
        cache_dir=spec["cache_dir"],
        device=dev,
        progress=False,
    )
    done = time.perf_counter()
    last = result.table[result.table["round"] == result.table["round"].max()]
    return {
        "imp_seconds": done - run_started,
        "process_seconds": done - started,
        "rss_mib_before": before,
        "max_rss_mib": _max_rss_mib(),
        "peak_reset": reset,
        "loading_peak_rss_mib": process_peak,
        "cuda_peak_mib": (
            torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
        ),
        "device": str(dev),
        "recipe": rec.canonical,
        "steps_per_round": rec.train.steps,
        "rounds": int(result.table["round"].max()),
        "cells": len(result.table),
        "cached_cells": result.cached_cells,
        "final_test_acc": last.groupby("kind")["test_acc"].mean().to_dict(),
        "final_density": float(last["density"].min()),
    }


def run_child(spec: dict, *, quick: bool, timeout: float) -> dict:
    """Run ``spec`` in a fresh process with an empty cache; returns the child's measurements."""
    env = dict(os.environ)
    env.pop("TICKETLAB_QUICK", None)
    if quick:
        env["TICKETLAB_QUICK"] = "1"
    with tempfile.TemporaryDirectory(prefix="ticketlab-bench-imp-") as cache:
        started = time.perf_counter()
        out = run_module("benchmarks.imp", {**spec, "cache_dir": cache}, env, timeout)
        wall = time.perf_counter() - started
    return {**out, "wall_seconds": wall}


def _rows(label: str, out: dict, target: Target | None = None) -> list[Row]:
    minutes = out["imp_seconds"] / 60
    budget = (
        f"{out['rounds'] + 1} rounds × {out['steps_per_round']:,} steps, {out['cells']} cells; "
        f"process {out['process_seconds']:.0f} s incl. imports and data"
    )
    rss_note = (
        f"{out['rss_mib_before']:.0f} MiB resident when IMP started (imports, data)"
        if out["peak_reset"]
        else "process peak, including loading the data (this OS can't reset the count)"
    )
    if target is None:
        time_row = Row.info(GROUP, f"{label}: wall time", out["imp_seconds"], "s", budget)
    else:
        time_row = Row.judged(GROUP, f"{label}: wall time", minutes, "min", target, budget)
    rows = [
        time_row,
        Row.info(GROUP, f"{label}: peak RSS", out["max_rss_mib"], "MiB", rss_note),
    ]
    if out["cuda_peak_mib"] is None:
        rows.append(Row.unmeasured(GROUP, f"{label}: CUDA peak memory", "no GPU: not measured"))
    else:
        rows.append(Row.info(GROUP, f"{label}: CUDA peak memory", out["cuda_peak_mib"], "MiB"))
    return rows


def _budget(ctx: Context, budget: str) -> Group:
    label = f"IMP lenet_mnist_paper, {budget} budget"
    ctx.log(f"{label}: in a subprocess")
    spec = {"recipe": "lenet_mnist_paper", "device": str(ctx.device)}
    out = run_child(spec, quick=budget == "quick", timeout=4 * 3600)
    return Group(_rows(label, out), {f"imp_{budget}": out})


def quick(ctx: Context) -> Group:
    return _budget(ctx, "quick")


def full(ctx: Context) -> Group:
    return _budget(ctx, "full")


def paper_figure(ctx: Context) -> Group:
    """GPU only: the paper-scale LeNet figure (target < 10 minutes)."""
    label = "Paper-scale LeNet figure (GPU)"
    if ctx.device.type != "cuda":
        return Group(
            [Row.unmeasured(GROUP, f"{label}: wall time", "no GPU: not measured", PAPER_FIGURE)]
        )
    if ctx.quick:
        why = "not measured in --quick runs"
        return Group([Row.unmeasured(GROUP, f"{label}: wall time", why, PAPER_FIGURE)])
    spec = {
        "recipe": "lenet_mnist_paper",
        "overrides": {"subset": "full", "steps": 50_000, "eval_every": 100},
        "rounds": 15,
        "seeds": [0, 1, 2, 3, 4],
        "controls": ["reinit"],
        "device": str(ctx.device),
    }
    ctx.log(f"{label}: in a subprocess")
    out = run_child(spec, quick=False, timeout=4 * 3600)
    return Group(_rows(label, out, PAPER_FIGURE), {"paper_figure": {**spec, **out}})


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
