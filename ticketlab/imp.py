"""Iterative magnitude pruning (IMP) with controls, cached cell by cell and resumable.

``run`` follows Frankle & Carbin (2019), "Strategy 1" (Appendix B): train the dense network, prune
a fraction of the surviving weights by magnitude, reset the survivors to the rewind point
(initialization, or step k), and repeat. Each round's mask is also given to the controls of
``ticketlab.rewinding`` (random reinitialization, random pruning, ...), trained for exactly as long.

* ``mode="iterative"``: round r prunes the weights that round r − 1's ticket learned.
* ``mode="one_shot"``: every round prunes the dense network's trained weights to round r's density
  (so round r of both modes has the same density; only the weights ranked differ).

Every (seed, round, kind) cell is cached under ``cache_dir()/imp/<recipe key>-<mode>/`` as soon as
it finishes: rerunning a finished experiment only reads files, and a run killed mid-way resumes at
the first missing cell. All cells of a round (every seed and every kind) train together as one
population where that is faster (``ticketlab.population.train_many``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
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
from .population import train_many
from .recipes import Recipe, get
from .rewinding import CONTROLS, control, rewind
from .stats import seed_list
from .versions import results_version

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
    population: bool | None = None,
    **overrides,
) -> ImpResult:
    """Run IMP for every seed and return an ``ImpResult``.

    Args:
        recipe: a preset name (``ticketlab.recipes.names()``) or a ``Recipe``.
        rounds: pruning rounds after the dense round 0 (default: 3 quick, 10 full).
        seeds: one IMP run per seed (initialization and data order both derive from it).
        controls: any of ``ticketlab.rewinding.CONTROLS``, trained at every round's mask.
        rewind_step: step the survivors are reset to (default: the recipe's, usually 0).
        mode: "iterative" or "one_shot".
        cache_dir: root of the result cache (default ``ticketlab.cache_dir() / "imp"``).
        device: where to compute (default ``ticketlab.device()``).
        population: train each round's cells as one batched population: None when that is
            faster (``population.prefers_population``), True whenever the model allows, False never.
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
    seeds = seed_list(seeds)
    k = rec.prune.rewind_step
    if k >= rec.train.steps:
        raise ValueError(f"rewind_step={k} must be smaller than steps={rec.train.steps}")
    dev = pick_device(device)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "imp"
    cache = ResultCache(
        root / f"{rec.key}-{mode}", f"{rec.canonical};mode={mode}", results_version("ticketlab.imp")
    )
    state = _Run(rec, mode, cache, rec.data.load(dev), dev)
    for round_ in tqdm(range(rounds + 1), desc=f"IMP {rec.name or rec.key}", disable=not progress):
        jobs = []
        for seed in seeds:
            state.prune(seed, round_)
            for kind in ["dense"] if round_ == 0 else ["ticket", *controls]:
                if not state.load(seed, round_, kind):
                    jobs.append(state.start(seed, round_, kind))
        state.train(round_, jobs, progress, population)
    return state.result(time.perf_counter() - started)


class _Run:
    """One ``run`` between its stages: prune a round, load its cached cells, start and train the
    missing ones. Holds, per seed, the rewind point and the weights pruning ranks next; the masks;
    and the table's rows and curves in the order the cells arrive."""

    def __init__(self, rec: Recipe, mode: str, cache: ResultCache, data, dev) -> None:
        self.rec, self.mode, self.cache, self.data, self.dev = rec, mode, cache, data, dev
        self.k = rec.prune.rewind_step
        self.layer_rates = dict(rec.prune.layer_rates) or None
        self.masks: dict[tuple[int, int], Mask] = {}
        self.rewind_points: dict[int, dict[str, torch.Tensor]] = {}
        self.ranked: dict[int, dict[str, torch.Tensor]] = {}
        self.rows: list[dict] = []
        self.histories: list[pd.DataFrame] = []
        self.cached = 0

    def prune(self, seed: int, round_: int) -> None:
        """Round r's mask: everything kept at round 0, else magnitude pruning of the weights
        ranked for this seed (the previous ticket's, or the dense network's in one-shot mode)."""
        if round_ == 0:
            mask = Mask.ones(self.rec.model.build(seed))
        else:
            trained = self.rec.model.build(seed).to(self.dev)
            trained.load_state_dict(self.ranked[seed])
            spec = self.rec.prune
            previous = self.masks[(seed, round_ - 1)]
            mask = prune.magnitude(
                trained, previous, spec.prune_fraction, spec.prune_scope, self.layer_rates
            )
        self.masks[(seed, round_)] = mask.to(self.dev)

    def load(self, seed: int, round_: int, kind: str) -> bool:
        """Take the cell from the cache if it is there; say whether it was."""
        entry = self.cache.load(
            _cell(seed, round_, kind), self.dev,
            coordinates=self._coordinates(seed, round_, kind), required=self._needs(kind),
        )  # fmt: skip
        if entry is None:
            return False
        self.cached += 1
        self._record(seed, round_, kind, Mask(entry["mask"]), *_unpack(entry))
        self._remember(seed, kind, entry.get("rewind_point"), entry.get("weights"))
        return True

    def start(self, seed: int, round_: int, kind: str) -> dict:
        """The cell's network at its starting point, with the mask it trains under (a job)."""
        build = self.rec.model.build
        if round_ == 0:
            return {"model": build(seed), "mask": None, "seed": seed, "kind": kind}
        mask = self.masks[(seed, round_)]
        # Controls get the unmasked rewind point: a random or shuffled mask keeps weights the
        # ticket pruned, and they start from their rewound values.
        ticket_mask = mask if kind == "ticket" else None
        model = rewind(build(seed).to(self.dev), self.rewind_points[seed], ticket_mask)
        cell_mask = mask
        if kind != "ticket":
            cell_seed = derive_seed(seed, round_, kind)
            model, cell_mask = control(kind, model, mask, cell_seed, self.rec.model.init)
        return {"model": model, "mask": cell_mask, "seed": seed, "kind": kind}

    def train(self, round_: int, jobs: list[dict], progress: bool, population) -> None:
        """Train a round's missing cells together; store each in the cache as soon as it exists.

        Round 0 trains from step 0 and keeps the rewind point (step k); later rounds resume at k.
        """
        k = self.k
        start, checkpoints = (0, [k] if k else []) if round_ == 0 else (k, [])
        results = train_many(
            [j["model"] for j in jobs], self.data, self.rec.train,
            masks=[j["mask"] for j in jobs], data_seeds=[j["seed"] for j in jobs],
            start_step=start, checkpoint_steps=checkpoints, progress=progress,
            population=population,
        )  # fmt: skip
        for job, result in zip(jobs, results, strict=True):
            seed, kind = job["seed"], job["kind"]
            cell_mask = job["mask"] if job["mask"] is not None else self.masks[(seed, 0)]
            point = None
            if kind == "dense":
                point = result.checkpoints[k] if k else self.rec.model.build(seed).state_dict()
            keep = kind == "dense" or (kind == "ticket" and self.mode == "iterative")
            weights = result.model.state_dict() if keep else None
            self._remember(seed, kind, point, weights)
            payload = _payload(result, cell_mask, keep, point)
            self.cache.save(
                _cell(seed, round_, kind), payload, self._coordinates(seed, round_, kind)
            )
            self._record(seed, round_, kind, cell_mask, result.summary(), result.history)

    def _coordinates(self, seed: int, round_: int, kind: str) -> dict:
        """Which cell an entry is: its manifest names them and a load checks them."""
        return {"recipe": self.rec.key, "mode": self.mode, "seed": seed, "round": round_,
                "kind": kind}  # fmt: skip

    def _needs(self, kind: str) -> list[str]:
        """The payload keys this run reads back from a cell of ``kind``."""
        keys = ["row", "history", "mask"]
        if kind == "dense":
            keys += ["rewind_point", "weights"]
        elif kind == "ticket" and self.mode == "iterative":
            keys.append("weights")
        return keys

    def _remember(self, seed: int, kind: str, point, weights) -> None:
        """Keep what later rounds need: the dense cell's rewind point, and the weights the next
        round ranks (the dense network's, and in iterative mode each ticket's)."""
        if kind == "dense":
            self.rewind_points[seed] = {n: t.to(self.dev) for n, t in point.items()}
        if kind == "dense" or (kind == "ticket" and self.mode == "iterative"):
            self.ranked[seed] = weights

    def _record(self, seed: int, round_: int, kind: str, mask: Mask, row: dict, history) -> None:
        self.rows.append(
            {"seed": seed, "round": round_, "density": mask.density, "kind": kind, **row}
        )
        self.histories.append(history.assign(seed=seed, round=round_, kind=kind))

    def result(self, wall_time: float) -> ImpResult:
        rank = {kind: i for i, kind in enumerate(KINDS)}
        table = pd.DataFrame(self.rows)
        table = (
            table.assign(_order=table["kind"].map(rank))
            .sort_values(["seed", "round", "_order"])
            .drop(columns="_order")
            .reset_index(drop=True)
        )
        return ImpResult(
            recipe=self.rec,
            mode=self.mode,
            table=table,
            history=pd.concat(self.histories, ignore_index=True),
            masks=self.masks,
            wall_time=wall_time,
            cached_cells=self.cached,
        )
