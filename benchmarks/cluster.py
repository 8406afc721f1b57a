"""One IMP sweep in one process vs on a Dask ``LocalCluster``: is there an overhead tax?

On a 2-core machine a cluster of two single-thread workers has the same cores as one process
with two threads, so it cannot be faster by much; the question is whether it is slower. Each
measurement is a fresh process timing ``imp.run`` on the same sweep in a fresh result cache:

* serial: one process, 2 threads, for each ``group_size`` (the best of them is "the best
  single-process run");
* cluster: ``distributed.connect(workers=2, threads=1)``; the sweep's time excludes the
  cluster's start, which is reported on its own row.

Variants alternate within each round; medians over rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from .results import Context, Group, Row, Target, summary

__all__ = ["run"]

GROUP = "cluster"
WITHIN = Target.below(1.10, "×")

_JOB = """
import json, sys, time
spec = json.loads(sys.argv[1])
import ticketlab as tl
from ticketlab import distributed
kwargs = dict(rounds=spec["rounds"], seeds=spec["seeds"], controls=["reinit"], progress=False,
              group_size=spec["group_size"], cache_dir=spec["cache"])
def warm():
    tl.mnist()

warm()  # the dataset's tensor file exists, and this process holds it, before any timing
if spec["workers"]:
    started = time.perf_counter()
    with distributed.connect(workers=spec["workers"], threads=1, dashboard=False) as client:
        client.wait_for_workers(spec["workers"])
        client.run(warm)  # the workers hold the data before timing, as this process does
        ready = time.perf_counter()
        tl.imp.run(spec["recipe"], executor=client, **kwargs)
        done = time.perf_counter()
    print(json.dumps({"seconds": done - ready, "start": ready - started}))
else:
    started = time.perf_counter()
    tl.imp.run(spec["recipe"], **kwargs)
    print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def _measure(spec: dict, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env |= {"TICKETLAB_THREADS": str(threads), "TICKETLAB_DEVICE": "cpu", "TICKETLAB_QUICK": "1"}
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(
            [sys.executable, "-c", _JOB, json.dumps({**spec, "cache": cache})],
            env=env, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"cluster benchmark job failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> Group:
    rounds_ = ctx.size(quick=1, full=3)
    seeds = list(range(ctx.size(quick=2, full=4)))
    repeats = ctx.rounds(quick=1, full=3)
    sweep = {"recipe": "lenet_mnist_paper", "rounds": rounds_, "seeds": seeds}
    variants = {
        "serial, 1 process × 2 threads, group_size=None": ({"group_size": None, "workers": 0}, 2),
        "serial, 1 process × 2 threads, group_size=2": ({"group_size": 2, "workers": 0}, 2),
        "LocalCluster, 2 workers × 1 thread, group_size=2": ({"group_size": 2, "workers": 2}, 1),
        "LocalCluster, 2 workers × 1 thread, group_size=1": ({"group_size": 1, "workers": 2}, 1),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    starts: list[float] = []
    for r in range(repeats):
        for name, (spec, threads) in variants.items():
            ctx.log(f"cluster round {r + 1}/{repeats}: {name}")
            out = _measure({**sweep, **spec}, threads)
            seconds[name].append(out["seconds"])
            if "start" in out:
                starts.append(out["start"])
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    serial = {n: m for n, m in medians.items() if n.startswith("serial")}
    cluster = {n: m for n, m in medians.items() if n.startswith("LocalCluster")}
    best_serial, best_cluster = min(serial, key=serial.get), min(cluster, key=cluster.get)
    sweep_note = (
        f"lenet_mnist_paper quick budget (580 steps), {rounds_} rounds, seeds {seeds}, "
        f"reinit; median of {repeats}"
    )
    rows = [Row.info(GROUP, name, m, "s", sweep_note) for name, m in medians.items()]
    ratio = cluster[best_cluster] / serial[best_serial]
    item = "LocalCluster (2 × 1 thread) vs best single process, time ratio"
    note = f"{best_cluster} ÷ {best_serial}"
    rows.append(Row.judged(GROUP, item, ratio, "×", WITHIN, note))
    item = "LocalCluster start (2 workers, until both hold the data)"
    rows.append(Row.info(GROUP, item, statistics.median(starts), "s", "not in the sweep times"))
    details = {"sweep": sweep, "sweep_seconds": {n: summary(s) for n, s in seconds.items()},
               "start": summary(starts), "ratio": ratio}  # fmt: skip
    return Group(rows, details)
