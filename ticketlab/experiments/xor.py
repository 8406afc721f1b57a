"""XOR tickets: small networks fail, large ones succeed, and pruning finds the small one that works.

The first version of the lottery ticket paper (Frankle & Carbin, arXiv 1803.03635v1, 2018; abstract)
ran its experiments on XOR and MNIST. This experiment trains hundreds of seeds of four settings,
all as one batched population per setting:

* ``small``: ``small`` hidden units from scratch (2 is the fewest that can represent XOR);
* ``large``: ``large`` hidden units from scratch;
* ``ticket``: the large network pruned to ``small`` units by iterative structured pruning (train,
  drop the weakest units, reset the survivors to their original initialization, repeat), then
  trained from its original initialization;
* ``reinit``: the ticket's structure with a fresh random initialization.

A run is a success when all four corners are classified correctly after training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd

from .. import prune
from ..config import budget
from ..config import device as pick_device
from ..data import xor
from ..imp import derive_seed
from ..masks import Mask
from ..models import xor_mlp
from ..population import train_population
from ..stats import seed_list
from ..verdict import Claim
from ._result import ExperimentResult
from ._units import over_seed_groups

__all__ = ["CLAIMS", "success_rates", "unit_schedule", "xor_tickets"]

_CITATION = "Frankle & Carbin, arXiv 1803.03635v1 (2018), abstract: XOR experiments"

CLAIMS = (
    Claim(
        name="large beats small",
        statement="Large XOR networks learn XOR more reliably than the smallest network that can "
        "represent it.",
        citation=_CITATION,
        metric="success",
        treatment={"setting": "large"},
        control={"setting": "small"},
        direction="greater",
        margin=0.0,
        min_seeds=20,
        unit="pp",
        scale=100,
    ),
    Claim(
        name="ticket beats reinit",
        statement="The small subnetwork found by pruning a large network learns XOR more reliably "
        "from its original initialization than the same structure randomly reinitialized.",
        citation=_CITATION,
        metric="success",
        treatment={"setting": "ticket"},
        control={"setting": "reinit"},
        direction="greater",
        margin=0.0,
        min_seeds=20,
        unit="pp",
        scale=100,
    ),
)


def unit_schedule(large: int, small: int) -> list[int]:
    """Hidden units kept after each pruning round: halve (rounding up) until ``small``."""
    if not 1 <= small <= large:
        raise ValueError(f"need 1 <= small <= large, got small={small}, large={large}")
    keep, out = large, []
    while keep > small:
        keep = max(small, -(-keep // 2))
        out.append(keep)
    return out


@over_seed_groups(lambda: budget(quick=200, full=1000))
def xor_tickets(
    seeds: int | Sequence[int] | None = None,
    small: int = 2,
    large: int = 10,
    activation: str = "relu",
    steps: int | None = None,
    lr: float = 0.01,
    device=None,
    progress: bool = True,
) -> ExperimentResult:
    """Train every seed in four settings (see module docstring); one row per (seed, setting).

    Args:
        seeds: a count (seeds 0…n−1) or explicit seeds (default: 200 quick, 1,000 full).
        small, large: hidden units of the small network and of the large one pruned down to it.
        activation: ``"relu"`` or ``"tanh"``.
        steps, lr: full-batch Adam on the four corners (default steps: 1,000).
    Returns an ``ExperimentResult`` whose ``table`` has columns seed, setting, success (bool),
    final_loss, hidden (units alive); ``extras`` holds the trained models per setting.
    """
    started = time.perf_counter()
    seeds = seed_list(budget(quick=200, full=1000) if seeds is None else seeds)
    steps = 1000 if steps is None else steps
    dev = pick_device(device)
    data = xor(device=dev)

    def fit(models, masks=None):
        return train_population(
            models,
            data,
            masks=masks,
            data_seeds=seeds,
            steps=steps,
            batch_size=len(data.train),
            lr=lr,
            eval_every=steps,
            progress=progress,
        )

    def build(hidden: int, seed_of) -> list:
        return [xor_mlp(hidden, activation, seed=seed_of(s)) for s in seeds]

    results: dict[str, list] = {}
    results["small"] = fit(build(small, int))
    results["large"] = fit(build(large, int))

    masks = [Mask.ones(xor_mlp(large)) for _ in seeds]
    for keep in unit_schedule(large, small):
        trained = fit(build(large, int), masks)
        masks = [prune.units(r.model, m, keep) for r, m in zip(trained, masks, strict=True)]
    results["ticket"] = fit(build(large, int), masks)
    results["reinit"] = fit(build(large, lambda s: derive_seed(s, "xor-reinit")), masks)

    pruned_units = [int(prune.alive_units(m).sum()) for m in masks]
    units_of = {
        "small": [small] * len(seeds),
        "large": [large] * len(seeds),
        "ticket": pruned_units,
        "reinit": pruned_units,
    }
    rows = []
    for setting, runs in results.items():
        for seed, run, hidden in zip(seeds, runs, units_of[setting], strict=True):
            rows.append(
                {
                    "seed": seed,
                    "setting": setting,
                    "success": run.test_acc == 1.0,
                    "final_loss": run.train_loss,
                    "hidden": hidden,
                }
            )
    table = pd.DataFrame(rows)
    table["success"] = table["success"].astype(float)
    return ExperimentResult(
        name="xor_tickets",
        table=table,
        claims=CLAIMS,
        extras={"models": {k: [r.model for r in v] for k, v in results.items()}, "masks": masks},
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


def success_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Success rate per setting with a 95 % Wilson interval (tidy: setting, rate, low, high, n)."""
    z = 1.959963984540054
    out = []
    for setting, group in table.groupby("setting", sort=False):
        n, k = len(group), group["success"].sum()
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
        out.append(
            {"setting": setting, "rate": p, "low": centre - half, "high": centre + half, "n": n}
        )
    return pd.DataFrame(out)


def _plot(result: ExperimentResult):
    import matplotlib.pyplot as plt

    rates = success_rates(result.table)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.bar(rates["setting"], rates["rate"] * 100, color="#0173B2")
    ax.errorbar(
        rates["setting"],
        rates["rate"] * 100,
        yerr=[(rates["rate"] - rates["low"]) * 100, (rates["high"] - rates["rate"]) * 100],
        fmt="none",
        color="black",
        capsize=4,
    )
    ax.set_ylabel("runs that learn XOR (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"XOR success over {int(rates['n'].iloc[0])} seeds (95% Wilson intervals)")
    fig.tight_layout()
    plt.close(fig)
    return fig
