"""Two jobs on two cores: one training job alone vs two at once, under each thread setting.

A learner runs a notebook while the tests run, or two notebooks, or two Dask workers share a
machine. Each job here is a fresh process training LeNet-300-100 (batch 60, Adam, a 10 % mask)
or the BatchNorm lab's ResNet-8 for a fixed number of steps; it reports the wall time of its
training loop. The settings are PyTorch's default threads (what every ticketlab process did before
its thread policy), the same with passive OpenMP waits, and the policy itself
(``ticketlab.config.threads``: half the cores, so one thread on two). Every setting is
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

from .results import Context, Group, Row, Target, summary

__all__ = ["JOBS", "SETTINGS", "run"]

GROUP = "contention"
ALONE = Target.below(1.1, "×")
PAIRED = Target.below(2.0, "×")

BEFORE = "PyTorch's default threads (TICKETLAB_THREADS=all)"
AFTER = "ticketlab's default (half the cores)"
SETTINGS = {
    BEFORE: {"TICKETLAB_THREADS": "all"},
    "PyTorch's default threads, OMP_WAIT_POLICY=PASSIVE": {
        "TICKETLAB_THREADS": "all",
        "OMP_WAIT_POLICY": "PASSIVE",
    },
    AFTER: {},
}
"""Environment changes per setting, on top of this process's environment without the thread
variables (so the parent's own settings cannot leak in). ``BEFORE`` is what every ticketlab
process did until the thread policy (``ticketlab.config.threads``); ``AFTER`` is that policy."""

JOBS = {
    "LeNet": (
        "model = tl.lenet_300_100(seed=0)\n"
        "mask = tl.prune.random(tl.Mask.ones(model), 0.9, seed=0)\n"
        "kw = dict(mask=mask, batch_size=60)"
    ),
    "ResNet-8": (
        "from ticketlab.experiments.batchnorm import downsample\n"
        "data = downsample(data, 2)\n"
        "model = tl.resnet(8, 16, seed=0)\n"
        "kw = dict(batch_size=128, lr=2e-2)"
    ),
}
"""Each job's network: LeNet-300-100 at 10 % density as in IMP, and the BatchNorm lab's ResNet-8
(width 16, 14×14 inputs, batch 128), the heaviest network the labs train on a CPU."""

_JOB = """
import json, time
import torch
import ticketlab as tl
data = tl.mnist(device="cpu")
{model}
tl.train(model, data, steps=5, eval_every=5, progress=False, **kw)  # warm up
started = time.perf_counter()
tl.train(model, data, steps={steps}, eval_every={steps}, progress=False, **kw)
print(json.dumps({{"seconds": time.perf_counter() - started, "threads": torch.get_num_threads()}}))
"""


def _env(changes: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "TICKETLAB_THREADS")}  # fmt: skip
    return env | {"TICKETLAB_DEVICE": "cpu"} | changes


def _jobs(n: int, job: str, steps: int, changes: dict[str, str]) -> list[dict]:
    """Start ``n`` identical jobs at once; each one's training-loop seconds and thread count."""
    code = _JOB.format(model=JOBS[job], steps=steps)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=_env(changes), stdout=subprocess.PIPE,
                         text=True)
        for _ in range(n)
    ]  # fmt: skip
    out = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"a contention job failed (exit {proc.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run(ctx: Context) -> Group:
    """Each job and setting alone and two at once, alternating, medians over rounds."""
    steps = {"LeNet": ctx.size(quick=100, full=400), "ResNet-8": ctx.size(quick=4, full=30)}
    rounds = ctx.rounds(quick=1, full=3)
    alone = {(job, name): [] for job in JOBS for name in SETTINGS}
    paired = {(job, name): [] for job in JOBS for name in SETTINGS}
    used: dict[tuple[str, str], int] = {}
    for r in range(rounds):
        for job in JOBS:
            for name, changes in SETTINGS.items():
                ctx.log(f"contention round {r + 1}/{rounds}: {job}, {name}")
                one = _jobs(1, job, steps[job], changes)
                two = _jobs(2, job, steps[job], changes)
                alone[job, name] += [j["seconds"] for j in one]
                paired[job, name] += [j["seconds"] for j in two]
                used[job, name] = one[0]["threads"]
    rows, details = [], {"steps": steps, "rounds": rounds}
    med = statistics.median
    for job in JOBS:
        for name in SETTINGS:
            one, two = med(alone[job, name]), med(paired[job, name])
            note = (f"{steps[job]} steps per job at {used[job, name]} thread(s); median of "
                    f"{rounds} rounds")  # fmt: skip
            rows.append(Row.info(GROUP, f"{job}, {name}: one job alone", one, "s", note))
            fair = "a job's time beside the other ÷ alone; 2× is fair sharing of busy cores"
            item = f"{job}, {name}: two jobs at once, slowdown"
            if name == AFTER:
                rows.append(Row.judged(GROUP, item, two / one, "×", PAIRED, fair))
            else:
                rows.append(Row.info(GROUP, item, two / one, "×", fair))
            details[f"{job}, {name}"] = {
                "threads": used[job, name],
                "alone": summary(alone[job, name]),
                "two": summary(paired[job, name]),
            }
        after_vs_before = med(alone[job, AFTER]) / med(alone[job, BEFORE])
        rows.append(Row.judged(
            GROUP, f"{job}, one job alone: ticketlab's default ÷ PyTorch's default",
            after_vs_before, "×", ALONE, "the policy must not slow the single-job case",
        ))  # fmt: skip
    return Group(rows, details)
