"""An optional compiled step: ``torch.compile`` against the eager trainer, compile time included.

Issue 15 (item 3) asks whether a compiled step wins on a *whole run*. Each measurement is a fresh
interpreter, so nothing compiled earlier in this process helps:

* ``eager``: ``train()``'s own step (``ticketlab.training.TrainStep``: by-hand MLP gradients,
  masked gradients, one fused Adam) on LeNet-300-100 with a 10 % layerwise magnitude mask,
  batch 60, over one data order's batches; no evaluation on either side.
* ``compiled, cold``: the same ``TrainStep`` (same batches, mask rules and fused Adam), its
  by-hand gradients off and its model's forward and backward compiled by ``torch.compile``
  (Inductor, the default mode) on an empty Inductor cache (``TORCHINDUCTOR_CACHE_DIR`` a new
  folder), as a learner's first run is; then ``compiled, warm``: a second process on that
  filled cache.

This is the fastest of the compiled variants tried: compiling the optimizer step as well
(``torch.compile`` around the mask multiply and ``torch.optim.Adam``) compiled for longer and
ran slower per step (RESULTS.md). Reported: the compile time (the first two steps less two
compiled steps), the time per step after it, the whole run, and how many steps a run would
need before compiling pays (never, when a compiled step is not faster).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from .results import Context, Group, Row, summary

__all__ = ["break_even", "run"]

GROUP = "compiled"

_CHILD = """
import copy, json, time
import torch
import ticketlab as tl
from ticketlab import prune
from ticketlab.training import TrainConfig, TrainStep, batch_indices
data = tl.mnist(device="cpu")
X, y = data.train
base = tl.lenet_300_100(seed=0)
mask = prune.one_shot(base, 0.1)
steps = {steps}
cfg = TrainConfig(steps=steps, batch_size=60, optimizer="adam", lr=1.2e-3, eval_every=steps)
model = copy.deepcopy(base)
step = TrainStep(model, cfg, mask=mask)  # train()'s own step: mask rules, fused Adam
if {compiled}:
    # The same step through autograd on a compiled forward (and the backward AOTAutograd makes).
    step.by_hand, step.model = None, torch.compile(model)
batches = list(batch_indices(len(y), cfg.batch_size, 0, 0, steps))
t0 = time.perf_counter()
for idx in batches[:2]:
    step(X.index_select(0, idx), y.index_select(0, idx), cfg.lr)
t1 = time.perf_counter()
for idx in batches[2:]:
    step(X.index_select(0, idx), y.index_select(0, idx), cfg.lr)
t2 = time.perf_counter()
print(json.dumps(dict(first_two=t1 - t0, per_step=(t2 - t1) / (steps - 2), run=t2 - t0)))
"""


def break_even(compile_seconds: float, eager_step: float, compiled_step: float) -> float | None:
    """Steps after which compiling has paid for itself; None if a compiled step is not faster."""
    gain = eager_step - compiled_step
    return compile_seconds / gain if gain > 0 else None


def _child(compiled: bool, steps: int, cache: str) -> dict:
    env = dict(os.environ, TICKETLAB_DEVICE="cpu", TORCHINDUCTOR_CACHE_DIR=cache)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(steps=steps, compiled=compiled)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ctx: Context) -> Group:
    steps = ctx.size(quick=150, full=600)
    rounds = ctx.rounds(quick=1, full=3)
    samples: dict[str, list[float]] = {
        k: [] for k in ("eager_run", "cold_compile", "cold_run", "warm_compile", "step", "eager")
    }
    for r in range(rounds):
        ctx.log(f"compiled: round {r + 1}/{rounds}, {steps} steps (a cold compile takes a while)")
        with tempfile.TemporaryDirectory() as cache:
            eager = _child(False, steps, cache)
            cold = _child(True, steps, cache)
            warm = _child(True, steps, cache)
        samples["eager_run"].append(eager["run"])
        samples["eager"].append(eager["per_step"])
        samples["cold_run"].append(cold["run"])
        samples["cold_compile"].append(cold["first_two"] - 2 * cold["per_step"])
        samples["warm_compile"].append(warm["first_two"] - 2 * warm["per_step"])
        samples["step"].append(statistics.median([cold["per_step"], warm["per_step"]]))
    med = {k: statistics.median(v) for k, v in samples.items()}
    steps_to_pay = break_even(med["cold_compile"], med["eager"], med["step"])
    pays = (
        f"compiling pays after about {steps_to_pay:,.0f} steps (cold cache)"
        if steps_to_pay is not None
        else "compiling never pays: a compiled step is not faster"
    )
    note = f"LeNet-300-100, mask 10 %, batch 60, Adam; fresh processes, median of {rounds}"
    rows = [
        Row.info(GROUP, f"Compiled ÷ eager, a whole run of {steps} steps (cold compile)",
                 med["cold_run"] / med["eager_run"], "×",
                 f"a default only if below 1× (ticketlab's default is eager); {note}"),
        Row.info(GROUP, "torch.compile time, empty Inductor cache", med["cold_compile"], "s",
                 "the first two compiled steps less two compiled steps"),
        Row.info(GROUP, "torch.compile time, warm Inductor cache", med["warm_compile"], "s",
                 "a second process on the same cache"),
        Row.info(GROUP, "Compiled step vs eager step", 1e3 * med["step"], "ms",
                 f"eager {1e3 * med['eager']:.2f} ms, both after their first two steps; {pays}"),
    ]  # fmt: skip
    details = {k: summary(v) for k, v in samples.items()} | {"steps": steps, "rounds": rounds}
    return Group(rows, details)
