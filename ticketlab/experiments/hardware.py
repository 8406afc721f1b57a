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

``inference_benchmark`` is the measurement (any MLP widths, densities and batch sizes, one tidy
table); ``sparsity_speed`` runs it at the lab's settings and judges ``CLAIMS``. The formats come
from ``ticketlab.sparsity``, the timing from ``ticketlab.timing``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from .. import prune
from ..config import budget, generator
from ..config import device as pick_device
from ..masks import Mask
from ..models import LENET_300_100_WIDTHS, mlp
from ..sparsity import (
    check_equal,
    layer_costs,
    network_variants,
    semi_structured_mask,
    semi_structured_support,
)
from ..timing import Clock, num_threads, summarize, time_variants
from ..verdict import Claim
from ._result import ExperimentResult

__all__ = [
    "CLAIMS",
    "VARIANT_COLORS",
    "inference_benchmark",
    "memory_table",
    "sparsity_speed",
    "speedup_table",
]

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


def inference_benchmark(
    densities: Sequence[float] = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01),
    batch_sizes: Sequence[int] = (1, 60, 1000),
    device: str | torch.device | None = None,
    repeats: int = 5,
    rounds: int = 3,
    seed: int = 0,
    *,
    widths: Sequence[int] = LENET_300_100_WIDTHS,
    threads: int | None = 1,
    semi_structured: bool | None = None,
    min_time: float = 5e-3,
    timer: Clock | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Time inference of a pruned MLP (``models.mlp(widths)``, default LeNet-300-100) in every
    storage format of ``sparsity``; a tidy table.

    For each round r (``seed`` = seed + r: the weights' init and the inputs), each density (the
    fraction of each layer's weights kept, by magnitude, ``prune.one_shot``) and each batch size,
    all variants are checked against each other (``check_equal``) and then timed interleaved
    (``time_variants``, ``repeats`` repeats). When 2:4 is supported (``semi_structured`` None:
    auto), each round adds a group ``structure="2:4"`` at density 0.5 with 2:4 magnitude masks.

    Args:
        threads: CPU threads for the run (restored afterwards); 1 by default, because on a busy
            machine multi-threaded kernels wait for each other and timings become erratic.
            None leaves PyTorch's setting.
        timer: the clock (default ``timing.default_timer``: CPU time of the thread on a
            one-thread CPU run, else wall time); tests pass a fake one.
    Returns one row per (seed, structure, batch, density, variant) with columns device,
    threads, widths, structure ("unstructured" or "2:4"), batch, density, variant, seed,
    seconds_median, seconds_iqr, speedup_vs_dense, memory_bytes (weight storage of all layers),
    flops (2 × multiply-adds the variant performs per batch), repeats. Rows with variant "ideal"
    are the theory: time × density, speedup 1/density, values only (no indices), useful FLOPs.
    ``.attrs["notes"]`` lists variants that could not run here, with the reason.
    """
    from tqdm.auto import tqdm

    densities = [float(d) for d in densities]
    if not densities or any(not 0.0 < d <= 1.0 for d in densities):
        raise ValueError(
            f"densities must be fractions in (0, 1], e.g. 0.1 for 10 %; got {densities}"
        )
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    if repeats < 2 or rounds < 1:
        raise ValueError(f"need repeats >= 2 and rounds >= 1, got {repeats} and {rounds}")
    dev = pick_device(device)
    support = semi_structured_support(dev)
    with_semi = support is None if semi_structured is None else semi_structured
    notes: dict[str, str] = {}
    if not with_semi:
        notes["2:4"] = support or "2:4 was switched off (semi_structured=False)"
    groups = [("unstructured", d) for d in densities] + ([("2:4", 0.5)] if with_semi else [])
    context = {"device": str(dev), "widths": "-".join(map(str, widths)), "repeats": repeats}
    rows: list[dict] = []
    bar = tqdm(total=rounds * len(groups), desc="timing", disable=not progress, leave=False)
    with num_threads(threads if dev.type == "cpu" else None), torch.no_grad():
        context["threads"] = torch.get_num_threads() if dev.type == "cpu" else None
        for r in range(rounds):
            model = mlp(widths, seed=seed + r).to(dev)
            gen = generator(seed + r, dev)
            inputs = {int(b): torch.randn(int(b), widths[0], generator=gen, device=dev)
                      for b in batch_sizes}  # fmt: skip
            for structure, density in groups:
                if structure == "2:4":
                    mask = Mask({name: semi_structured_mask(w) for name, w in _linears(model)})
                else:
                    mask = prune.one_shot(model, density)
                variants = network_variants(
                    model, mask, semi_structured=structure == "2:4", notes=notes
                )
                try:
                    check_equal(variants, inputs[min(inputs)])
                except (RuntimeError, NotImplementedError) as err:
                    if structure != "2:4":
                        raise
                    # 2:4 kernels are a prototype API: a kernel that cannot run is a note,
                    # not a failed benchmark (wrong results still raise AssertionError).
                    notes["2:4"] = f"2:4 kernels failed on {dev}: {err}"
                    bar.update()
                    continue
                static = _static_columns(model, mask, variants)
                for batch, x in inputs.items():
                    calls = {name: (lambda f=f, x=x: f(x)) for name, f in variants.items()}
                    timings = time_variants(
                        calls, repeats=repeats, min_time=min_time, device=dev, timer=timer
                    )
                    where = {**context, "structure": structure, "batch": batch,
                             "density": density, "seed": seed + r}  # fmt: skip
                    rows += _rows(summarize(timings), static, where)
                bar.update()
    bar.close()
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table.attrs["notes"] = notes
    return table


def _rows(summary: pd.DataFrame, static: dict, where: dict) -> list[dict]:
    """The table rows of one timed group: one per variant, plus the "ideal" row."""
    batch = where["batch"]
    rows = [
        {**where, **record, "memory_bytes": static[record["variant"]]["memory_bytes"],
         "flops": static[record["variant"]]["flops_per_example"] * batch}
        for record in summary.to_dict("records")
    ]  # fmt: skip
    ideal = static["ideal"]
    dense_seconds = summary.set_index("variant").loc["dense", "seconds_median"]
    rows.append({**where, "variant": "ideal", "seconds_median": dense_seconds * ideal["density"],
                 "seconds_iqr": float("nan"), "speedup_vs_dense": 1.0 / ideal["density"],
                 "memory_bytes": ideal["memory_bytes"],
                 "flops": ideal["flops_per_example"] * batch})  # fmt: skip
    return rows


_COLUMNS = ["device", "threads", "widths", "structure", "batch", "density", "variant", "seed",
            "seconds_median", "seconds_iqr", "speedup_vs_dense", "memory_bytes", "flops",
            "repeats"]  # fmt: skip


def _linears(model: nn.Sequential) -> list[tuple[str, Tensor]]:
    """(parameter name, detached weight) of each Linear child, in order."""
    return [(f"{name}.weight", module.weight.detach()) for name, module in model.named_children()
            if isinstance(module, nn.Linear)]  # fmt: skip


def _static_columns(model: nn.Sequential, mask: Mask, variants: Mapping[str, object]) -> dict:
    """Per variant: bytes of weight storage and 2 × multiply-adds per example, over all layers.

    Sparse variants are measured on the actual sparse tensors they would build
    (``sparsity.layer_costs``); "ideal" counts only the kept values (no indices) and the FLOPs of
    the kept weights.
    """
    linears = _linears(model)
    kept_of = {name: (mask[name] if name in mask else torch.ones_like(w, dtype=torch.bool))
               for name, w in linears}  # fmt: skip
    per_layer = [layer_costs(w, kept_of[name], variants) for name, w in linears]
    out: dict[str, dict[str, float]] = {
        name: {"memory_bytes": sum(costs[name][0] for costs in per_layer),
               "flops_per_example": sum(costs[name][1] for costs in per_layer)}
        for name in variants
    }  # fmt: skip
    total = sum(w.numel() for _, w in linears)
    kept = sum(int(k.sum()) for k in kept_of.values())
    itemsize = linears[0][1].element_size()
    out["ideal"] = {"memory_bytes": kept * itemsize, "flops_per_example": 2 * kept,
                    "density": kept / total}  # fmt: skip
    return out


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
        threads: CPU threads (default 1; see ``inference_benchmark``).
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
