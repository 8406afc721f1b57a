"""Two jobs on two cores: one training job alone vs two at once, under each thread setting.

A learner runs a notebook while the tests run, or two notebooks, or two Dask workers share a
machine. Each job here is a fresh process training LeNet-300-100 (batch 60, Adam, a 10 % mask)
for a fixed number of steps; it reports the wall time of its training loop. Every setting is
timed alone and as two identical jobs started together, and the slowdown is a job's time next to
the other divided by its time alone: 2× is fair sharing of two busy cores by two jobs that each
could use both, anything far above it is the threads of one job waiting for threads the other
job's are keeping off the cores.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from .results import Context, Group, Row, summary

__all__ = ["SETTINGS", "run"]

GROUP = "contention"

SETTINGS = {
    "default threads, default OpenMP waits": {},
    "default threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "TICKETLAB_THREADS=1": {"TICKETLAB_THREADS": "1"},
}
"""Environment changes per setting, on top of this process's environment without the thread
variables (so the parent's own settings cannot leak in)."""

_JOB = """
import json, time
import ticketlab as tl
data = tl.mnist(device="cpu")
model = tl.lenet_300_100(seed=0)
mask = tl.prune.random(tl.Mask.ones(model), 0.9, seed=0)
tl.train(model, data, steps=20, eval_every=20, mask=mask, progress=False)  # warm up
started = time.perf_counter()
tl.train(model, data, steps={steps}, eval_every={steps}, mask=mask, progress=False)
print(json.dumps({{"seconds": time.perf_counter() - started}}))
"""


def _env(changes: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "TICKETLAB_THREADS")}  # fmt: skip
    return env | {"TICKETLAB_DEVICE": "cpu"} | changes


def _jobs(n: int, steps: int, changes: dict[str, str]) -> list[float]:
    """Start ``n`` identical jobs at once; their training-loop seconds."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _JOB.format(steps=steps)], env=_env(changes),
                         stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]  # fmt: skip
    out = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"a contention job failed (exit {proc.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1])["seconds"])
    return out


def run(ctx: Context) -> Group:
    """Each setting alone and two at once, alternating, medians over rounds."""
    steps = ctx.size(quick=100, full=400)
    rounds = ctx.rounds(quick=1, full=3)
    alone: dict[str, list[float]] = {name: [] for name in SETTINGS}
    paired: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for r in range(rounds):
        for name, changes in SETTINGS.items():
            ctx.log(f"contention round {r + 1}/{rounds}: {name}")
            alone[name] += _jobs(1, steps, changes)
            paired[name] += _jobs(2, steps, changes)
    rows, details = [], {"steps": steps, "rounds": rounds}
    for name in SETTINGS:
        one, two = statistics.median(alone[name]), statistics.median(paired[name])
        note = f"{steps} LeNet steps per job; median of {rounds} rounds"
        rows.append(Row.info(GROUP, f"{name}: one job alone", one, "s", note))
        fair = "a job's time beside the other ÷ alone; 2× is fair sharing"
        rows.append(Row.info(GROUP, f"{name}: two jobs at once, slowdown", two / one, "×", fair))
        details[name] = {"alone": summary(alone[name]), "two": summary(paired[name])}
    return Group(rows, details)
