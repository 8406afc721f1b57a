"""If 90 % of the weights are zero, is the network 10× faster? Measured, not assumed.

Lottery-ticket papers report sparsity ("a ticket with 3.6 % of the weights"), and it is tempting to
read that as a 28× cheaper network. Every lottery-ticket codebase, though, prunes by multiplying
the weights with a 0/1 mask: the zeros stay in dense storage and dense kernels multiply them like
any other number. This experiment times LeNet-300-100 inference in each storage format of
``ticketlab.sparsity`` (dense, masked-dense, CSR, COO, and 2:4 on GPUs that support it) across
densities and batch sizes, against the ideal speedup 1/density.

What n means here. A *round* is an independent replicate of the whole measurement: a fresh
LeNet-300-100 initialization (seed), its own magnitude masks and inputs, and its own interleaved
timing session. The table's ``seed`` column numbers the rounds; verdicts average each round's
speedups over the selected rows (densities, batch sizes) and put a 95 % Student-t interval over
rounds. Within a round, each number is already the median of several interleaved repeats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pandas as pd

from ..config import budget
from ..config import device as pick_device
from ..sparsity import inference_benchmark
from ..verdict import Claim
from ._result import ExperimentResult

__all__ = ["CLAIMS", "VARIANT_COLORS", "memory_table", "sparsity_speed", "speedup_table"]

_TUTORIAL_905 = (
    "pytorch/tutorials#905 (2020), the torch.nn.utils.prune author: inference time "
    '"is not expected to go down" without a sparse matrix library'
)
_UNSTRUCTURED = {"structure": "unstructured"}

CLAIMS = (
    Claim(
        name="masking is not acceleration",
        statement="Zeroing weights with a mask, the way lottery-ticket code prunes, leaves the "
        "network as slow as the dense one: masked-dense is at most 10 % faster than dense, "
        "averaged over every pruned density and batch size.",
        citation=_TUTORIAL_905,
        metric="speedup_vs_dense",
        treatment={**_UNSTRUCTURED, "variant": "masked-dense"},
        where="density < 1",
        direction="less",
        margin=1.1,
        min_seeds=3,
        unit="×",
    ),
    Claim(
        name="10 % of the weights is not 10× faster",
        statement="Stored as a sparse CSR matrix, a network with 10 % of its weights runs less "
        "than 10 times faster than the dense network, averaged over batch sizes.",
        citation="this lab (the question of notebook 06); cf. " + _TUTORIAL_905,
        metric="speedup_vs_dense",
        treatment={**_UNSTRUCTURED, "variant": "csr"},
        where="density == 0.1",
        direction="less",
        margin=10.0,
        min_seeds=3,
        unit="×",
    ),
    Claim(
        name="CSR loses at 50 %",
        statement="At 50 % density the CSR network is slower than the dense one: index overhead "
        "and irregular memory access cost more than the skipped multiplications save.",
        citation="this lab (our guess before measuring)",
        metric="speedup_vs_dense",
        treatment={**_UNSTRUCTURED, "variant": "csr"},
        where="density == 0.5",
        direction="less",
        margin=1.0,
        min_seeds=3,
        unit="×",
    ),
    Claim(
        name="CSR wins at 1 %",
        statement="At 1 % density the CSR network is faster than the dense one, averaged over "
        "batch sizes: at extreme sparsity, skipping work finally pays for the overhead.",
        citation="this lab (our guess before measuring)",
        metric="speedup_vs_dense",
        treatment={**_UNSTRUCTURED, "variant": "csr"},
        where="density == 0.01",
        direction="greater",
        margin=1.0,
        min_seeds=3,
        unit="×",
    ),
)

VARIANT_COLORS = {
    "dense": "#949494",
    "masked-dense": "#DE8F05",
    "csr": "#0173B2",
    "coo": "#029E73",
    "dense-fp16": "#CA9161",
    "2:4": "#CC78BC",
    "ideal": "black",
}
"""The color of each variant in every figure (seaborn's colorblind palette)."""

_CLAIM_DENSITIES = (0.5, 0.1, 0.01)


def sparsity_speed(
    densities: Sequence[float] | None = None,
    batch_sizes: Sequence[int] | None = None,
    device=None,
    repeats: int | None = None,
    rounds: int | None = None,
    threads: int | None = 1,
    seed: int = 0,
    progress: bool = True,
) -> ExperimentResult:
    """Time LeNet-300-100 inference in every storage format; verdicts on ``CLAIMS``.

    Args:
        densities: fractions of weights kept (default quick: 50, 10, 1 %, the densities the
            claims need; full: 100, 50, 20, 10, 5, 2, 1 %).
        batch_sizes: default (1, 60, 1000) in both modes: one example, the paper's training
            batch, and a large batch.
        repeats: interleaved timing repeats per measurement (default 5 quick, 7 full).
        rounds: independent rounds, the "seeds" of the verdicts (default 8 quick, 10 full).
        threads: CPU threads (default 1; see ``sparsity.inference_benchmark``).
        seed: round r uses seed + r for its network's weights and inputs.
    Returns an ``ExperimentResult`` whose ``table`` is ``inference_benchmark``'s (one row per
    round, structure, batch, density and variant, including the theoretical "ideal" rows) and
    whose ``extras["notes"]`` says which variants could not run on this device and why.
    """
    started = time.perf_counter()
    densities = tuple(budget(quick=_CLAIM_DENSITIES, full=(1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01))
                      if densities is None else densities)  # fmt: skip
    batch_sizes = (1, 60, 1000) if batch_sizes is None else tuple(batch_sizes)
    repeats = budget(quick=5, full=7) if repeats is None else repeats
    rounds = budget(quick=8, full=10) if rounds is None else rounds
    dev = pick_device(device)
    table = inference_benchmark(
        densities, batch_sizes, device=dev, repeats=repeats, rounds=rounds, threads=threads,
        seed=seed, progress=progress,
    )  # fmt: skip
    # A claim about a density that was not measured (custom ``densities``) is left out.
    claims = tuple(c for c in CLAIMS if not table.query(c.where).empty)
    return ExperimentResult(
        name="sparsity_speed",
        table=table,
        claims=claims,
        extras={"notes": dict(table.attrs.get("notes", {})), "device": str(dev)},
        plotter=_plot,
        wall_time=time.perf_counter() - started,
    )


def speedup_table(table: pd.DataFrame, density: float) -> pd.DataFrame:
    """Median speedup over rounds at one density: a row per variant, a column per batch size."""
    rows = table[(table["density"] == density) & (table["structure"] == "unstructured")]
    if rows.empty:
        raise ValueError(
            f"no unstructured rows at density {density}; densities measured: "
            f"{sorted(set(table['density']))}"
        )
    wide = rows.pivot_table(
        index="variant", columns="batch", values="speedup_vs_dense", aggfunc="median"
    )
    wide.columns = [f"batch {b}" for b in wide.columns]
    wide.columns.name = f"speedup at {density:.0%} density"
    return wide.reindex([v for v in VARIANT_COLORS if v in wide.index])


def memory_table(table: pd.DataFrame) -> pd.DataFrame:
    """Weight storage in KiB: a row per density, a column per variant (unstructured rows)."""
    rows = table[table["structure"] == "unstructured"]
    wide = rows.pivot_table(index="density", columns="variant", values="memory_bytes",
                            aggfunc="median") / 1024  # fmt: skip
    wide = wide[[v for v in VARIANT_COLORS if v in wide.columns]]
    wide.columns.name = "weight storage (KiB)"
    return wide.sort_index(ascending=False)


def _plot(result: ExperimentResult):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator

    table = result.table
    batches = sorted(set(table["batch"]))
    percents = sorted({100 * d for d in table["density"]})
    fig, axes = plt.subplots(1, len(batches), figsize=(3.6 * len(batches), 3.6), sharey=True,
                             layout="constrained", squeeze=False)  # fmt: skip
    lines = (
        table.groupby(["structure", "batch", "variant", "density"])["speedup_vs_dense"]
        .agg(["median", "min", "max"])
        .reset_index()
    )
    for ax, batch in zip(axes[0], batches, strict=True):
        for variant, color in VARIANT_COLORS.items():
            for structure, marker in (("unstructured", "o"), ("2:4", "*")):
                rows = lines[(lines["batch"] == batch) & (lines["variant"] == variant)
                             & (lines["structure"] == structure)]  # fmt: skip
                if rows.empty or (structure == "2:4" and variant not in ("2:4", "dense-fp16")):
                    continue
                x = rows["density"] * 100
                style = {"linestyle": "--", "marker": None} if variant == "ideal" else {
                    "marker": marker, "markersize": 12 if marker == "*" else 5}  # fmt: skip
                ax.plot(x, rows["median"], color=color, label=variant, **style)
                if variant != "ideal" and len(rows) > 1:
                    ax.fill_between(x, rows["min"], rows["max"], color=color, alpha=0.15, lw=0)
        ax.axhline(1.0, color="#949494", linewidth=0.8, linestyle=":")
        ax.set(xscale="log", yscale="log", title=f"batch {batch}", xlabel="density (% kept)")
        ax.set_xticks(percents, [f"{p:g}" for p in percents])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.invert_xaxis()  # densest (100 %) on the left, as in the lottery-ticket plots
    axes[0][0].set_ylabel("speedup over dense (×)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="outside right center", frameon=False)
    device = result.extras.get("device", "")
    fig.suptitle(f"LeNet-300-100 inference on {device}: median over rounds (band: min–max)")
    plt.close(fig)
    return fig
