"""Iterative magnitude pruning (IMP) with controls, cached cell by cell and resumable.

``run`` follows Frankle & Carbin (2019), "Strategy 1" (Appendix B): train the dense network, prune
a fraction of the surviving weights by magnitude, reset the survivors to the rewind point
(initialization, or step k), and repeat. Each round's mask is also given to the controls of
``ticketlab.rewind`` (random reinitialization, random pruning, ...), trained for exactly as long.

* ``mode="iterative"``: round r prunes the weights that round r − 1's ticket learned.
* ``mode="one_shot"``: every round prunes the dense network's trained weights to round r's density
  (so round r of both modes has the same density; only the weights ranked differ).

Every (seed, round, kind) cell is cached under ``cache_dir()/imp/<recipe key>-<mode>/`` as soon as
it finishes: rerunning a finished experiment only reads files, and a run killed mid-way resumes at
the first missing cell. All cells of a round (every seed and every kind) train together as one
population when the model allows it (``ticketlab.population``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import prune
from .cache import ResultCache
from .config import budget
from .config import cache_dir as default_cache_dir
from .config import device as pick_device
from .masks import Mask
from .population import supports, train_population
from .recipes import Recipe, get
from .rewind import CONTROLS, control, rewind
from .train import train

__all__ = ["ImpResult", "derive_seed", "run"]

KINDS = ("dense", "ticket", *CONTROLS)


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed derived from ``parts`` (e.g. seed, round, kind)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class ImpResult:
    """The outcome of ``run``.

    ``table``: one row per (seed, round, kind) with seed, round, density (fraction of prunable
    weights kept), kind ("dense" for round 0, "ticket", and the controls), test_acc, val_acc,
    train_loss, early_stop_step, early_stop_test_acc, diverged.
    ``history``: the training curves, tidy (seed, round, kind, step, train_loss, val_loss, ...).
    ``masks``: the ticket's mask for each (seed, round).
    """

    recipe: Recipe
    mode: str
    table: pd.DataFrame
    history: pd.DataFrame = field(repr=False)
    masks: dict[tuple[int, int], Mask] = field(repr=False)
    wall_time: float = 0.0
    cached_cells: int = 0

    def plot(self, metric: str = "test_acc"):
        """Accuracy vs density (``ticketlab.plots.accuracy_vs_density``); returns the Figure."""
        from .plots import accuracy_vs_density

        return accuracy_vs_density(self.table, metric=metric)

    def summary(self) -> pd.DataFrame:
        """Mean test accuracy (%) per round and kind, seeds averaged: the table to read first."""
        pivot = self.table.pivot_table(
            index=["round", "density"], columns="kind", values="test_acc", aggfunc="mean"
        )
        return (pivot * 100).round(2)

    def __repr__(self) -> str:
        seeds = sorted(int(s) for s in self.table["seed"].unique())
        kinds = [k for k in KINDS if k in set(self.table["kind"])]
        return (
            f"ImpResult({self.recipe.name or self.recipe.key}, mode={self.mode}, seeds={seeds}, "
            f"rounds={int(self.table['round'].max())}, kinds={kinds}, "
            f"min density={self.table['density'].min():.1%}, {len(self.table)} cells "
            f"({self.cached_cells} from cache), {self.wall_time:.1f}s)"
        )

    def _repr_html_(self) -> str:
        return f"<p><code>{self!r}</code></p>" + self.summary().to_html()


def _cell(seed: int, round_: int, kind: str) -> str:
    return f"seed{seed}/round{round_:02d}_{kind}"


def _payload(result, mask: Mask, keep_weights: bool, rewind_point=None) -> dict:
    """A cell's stored record: metrics, curve, mask; weights only where later rounds need them."""
    out = {
        "row": result.summary(),
        "history": {c: torch.tensor(result.history[c].to_numpy()) for c in result.history},
        "mask": dict(mask.items()),
    }
    if keep_weights:
        out["weights"] = result.model.state_dict()
    if rewind_point is not None:
        out["rewind_point"] = rewind_point
    return out


def _unpack(entry: dict) -> tuple[dict, pd.DataFrame]:
    history = pd.DataFrame({c: v.numpy() for c, v in entry["history"].items()})
    history["step"] = history["step"].astype(int)
    return dict(entry["row"]), history


def run(
    recipe: str | Recipe = "lenet_mnist_paper",
    rounds: int | None = None,
    seeds: Sequence[int] = (0,),
    controls: Sequence[str] = (),
    rewind_step: int | None = None,
    mode: str = "iterative",
    cache_dir: str | Path | None = None,
    device=None,
    progress: bool = True,
    population: bool = True,
    **overrides,
) -> ImpResult:
    """Run IMP for every seed and return an ``ImpResult``.

    Args:
        recipe: a preset name (``ticketlab.recipes.names()``) or a ``Recipe``.
        rounds: pruning rounds after the dense round 0 (default: 3 quick, 10 full).
        seeds: one IMP run per seed (initialization and data order both derive from it).
        controls: any of ``ticketlab.rewind.CONTROLS``, trained at every round's mask.
        rewind_step: step the survivors are reset to (default: the recipe's, usually 0).
        mode: "iterative" or "one_shot".
        cache_dir: root of the result cache (default ``ticketlab.cache_dir() / "imp"``).
        device: where to compute (default ``ticketlab.device()``).
        population: train each round's cells as one batched population when the model allows.
        overrides: recipe fields, e.g. ``steps=500`` or ``prune_scope="global"``.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    if rewind_step is not None:
        overrides["rewind_step"] = rewind_step
    rec = get(recipe, **overrides)
    rounds = budget(quick=3, full=10) if rounds is None else rounds
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(
            f"rounds must be an int >= 0 (pruning rounds after round 0), got {rounds!r}"
        )
    if mode not in ("iterative", "one_shot"):
        raise ValueError(f"mode must be 'iterative' or 'one_shot', got {mode!r}")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown controls {unknown}; choose from {CONTROLS}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {list(seeds)}")
    k = rec.prune.rewind_step
    if k >= rec.train.steps:
        raise ValueError(f"rewind_step={k} must be smaller than steps={rec.train.steps}")
    dev = pick_device(device)
    data = rec.data.load(dev)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "imp"
    cache = ResultCache(root / f"{rec.key}-{mode}", f"{rec.canonical};mode={mode}")
    layer_rates = dict(rec.prune.layer_rates) or None

    rows: list[dict] = []
    histories: list[pd.DataFrame] = []
    masks: dict[tuple[int, int], Mask] = {}
    cached = 0
    rewind_points: dict[int, dict[str, torch.Tensor]] = {}  # per seed
    ranked: dict[int, dict[str, torch.Tensor]] = {}  # per seed: the weights pruning ranks next

    def record(seed: int, round_: int, kind: str, mask: Mask, row: dict, history) -> None:
        rows.append({"seed": seed, "round": round_, "density": mask.density, "kind": kind, **row})
        histories.append(history.assign(seed=seed, round=round_, kind=kind))

    def train_round(jobs: list[dict], start: int, checkpoints: list[int]) -> Iterable:
        if population and jobs and all(supports(j["model"]) for j in jobs):
            return train_population(
                [j["model"] for j in jobs],
                data,
                rec.train,
                masks=[j["mask"] for j in jobs],
                data_seeds=[j["seed"] for j in jobs],
                start_step=start,
                checkpoint_steps=checkpoints,
                progress=progress,
            )
        # Lazily, so each cell is saved as soon as it finishes, not when its round does.
        return (
            train(
                j["model"],
                data,
                rec.train,
                mask=j["mask"],
                data_seed=j["seed"],
                start_step=start,
                checkpoint_steps=checkpoints,
                progress=progress,
            )
            for j in jobs
        )

    for round_ in tqdm(range(rounds + 1), desc=f"IMP {rec.name or rec.key}", disable=not progress):
        jobs: list[dict] = []
        for seed in seeds:
            if round_ == 0:
                mask = Mask.ones(rec.model.build(seed))
            else:
                trained = rec.model.build(seed).to(dev)
                trained.load_state_dict(ranked[seed])
                mask = prune.magnitude(
                    trained,
                    masks[(seed, round_ - 1)],
                    rec.prune.prune_fraction,
                    rec.prune.prune_scope,
                    layer_rates,
                )
            mask = mask.to(dev)
            masks[(seed, round_)] = mask
            for kind in ["dense"] if round_ == 0 else ["ticket", *controls]:
                entry = cache.load(_cell(seed, round_, kind), dev)
                if entry is not None:
                    cached += 1
                    record(seed, round_, kind, Mask(entry["mask"]), *_unpack(entry))
                    if kind == "dense":
                        rewind_points[seed] = entry["rewind_point"]
                        ranked[seed] = entry["weights"]
                    elif kind == "ticket" and mode == "iterative":
                        ranked[seed] = entry["weights"]
                    continue
                if round_ == 0:
                    model, cell_mask = rec.model.build(seed), None
                else:
                    # Controls get the unmasked rewind point: a random or shuffled mask keeps
                    # weights the ticket pruned, and they start from their rewound values.
                    ticket_mask = mask if kind == "ticket" else None
                    model = rewind(rec.model.build(seed).to(dev), rewind_points[seed], ticket_mask)
                    cell_mask = mask
                    if kind != "ticket":
                        cell_seed = derive_seed(seed, round_, kind)
                        model, cell_mask = control(kind, model, mask, cell_seed, rec.model.init)
                jobs.append({"model": model, "mask": cell_mask, "seed": seed, "kind": kind})
        start, checkpoints = (0, [k] if k else []) if round_ == 0 else (k, [])
        for job, result in zip(jobs, train_round(jobs, start, checkpoints), strict=True):
            seed, kind = job["seed"], job["kind"]
            cell_mask = job["mask"] if job["mask"] is not None else masks[(seed, 0)]
            point = None
            if kind == "dense":
                point = result.checkpoints[k] if k else rec.model.build(seed).state_dict()
                rewind_points[seed] = {n: t.to(dev) for n, t in point.items()}
            keep = kind == "dense" or (kind == "ticket" and mode == "iterative")
            if keep:
                ranked[seed] = result.model.state_dict()
            cache.save(_cell(seed, round_, kind), _payload(result, cell_mask, keep, point))
            record(seed, round_, kind, cell_mask, result.summary(), result.history)

    rank = {kind: i for i, kind in enumerate(KINDS)}
    table = pd.DataFrame(rows)
    table = (
        table.assign(_order=table["kind"].map(rank))
        .sort_values(["seed", "round", "_order"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    return ImpResult(
        recipe=rec,
        mode=mode,
        table=table,
        history=pd.concat(histories, ignore_index=True),
        masks=masks,
        wall_time=time.perf_counter() - started,
        cached_cells=cached,
    )
