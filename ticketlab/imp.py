"""Iterative magnitude pruning (IMP) with controls, cached cell by cell and resumable.

``run`` follows Frankle & Carbin (2019), "Strategy 1" (Appendix B): train the dense network, prune
a fraction of the surviving weights by magnitude, reset the survivors to the rewind point
(initialization, or step k), and repeat. Each round's mask is also given to the controls of
``ticketlab.rewinding`` (random reinitialization, random pruning, ...), trained for exactly as long.

* ``mode="iterative"``: round r prunes the weights that round r − 1's ticket learned.
* ``mode="one_shot"``: every round prunes the dense network's trained weights to round r's density
  (so round r of both modes has the same density; only the weights ranked differ).

Every (seed, round, kind) cell is cached under ``cache_dir()/imp/<recipe key>/`` as soon as it
finishes: rerunning a finished experiment only reads files, and a run killed mid-way resumes at
the first missing cell. Rounds 0 and 1 are the same computation in both modes (round 1 prunes the
dense network's weights either way), so their cells live in ``both_modes/`` and a one-shot run
after an iterative one (or the other way round) reads them instead of training them again; later
rounds live in ``iterative/`` or ``one_shot/``. Each round's cells of a seed group
(``group_size``; default all seeds) train together as one population where that is faster
(``ticketlab.population.train_many``); cells of rounds 0 and 1 are shared only between runs whose
populations there are made up alike (the same seeds, kinds and grouping).

**Bit-identical resumption.** A population's members round differently with other companions
(the last member of a stack sits in the tail of the vectorized kernels), so a cell's exact bits
depend on the population it was trained in. That make-up is a function of the experiment alone (a
round, a group of seeds, the kinds) and part of the cell's identity: cells of one population live
in one folder and are loaded, or trained again, together; cells trained alone live in
``sequential/`` and are independent. So a resumed run, a run that lost any cells, and runs in
several processes at once all give bit for bit the table of one uninterrupted run. Processes
sharing a cache lock the cells they work on (``ResultCache.lock``): each cell is computed once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import prune
from .cache import CacheError, ResultCache
from .config import budget
from .config import cache_dir as default_cache_dir
from .config import device as pick_device
from .distributed import check_executor, map_units, worker_device
from .masks import Mask, as_mask
from .population import prefers_population, supports, train_many
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
    train_loss, early_stop_step, early_stop_test_acc, diverged. A recipe that draws each control
    several times (``control_draws`` > 1; the paper reinitializes each ticket three times) adds a
    ``draw`` column (0, 1, ...): one row per (seed, round, kind, draw).
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


SUMMARY = ("test_acc", "val_acc", "train_loss", "early_stop_step", "early_stop_test_acc",
           "diverged")  # fmt: skip
"""The keys of a cell's row (``TrainResult.summary``)."""


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


def _groups(seeds: list[int], group_size: int | None) -> list[tuple[int, ...]]:
    """The seeds that share a population in every round: consecutive runs of ``group_size`` of
    the sorted seeds (all of them for None). A function of the experiment alone, so every way of
    running it (resumed, in several processes, on a cluster) trains the same populations."""
    ordered = sorted(seeds)
    if group_size is None:
        return [tuple(ordered)]
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(
            f"group_size must be an int >= 1 (seeds per population) or None (all seeds), "
            f"got {group_size!r}"
        )
    return [tuple(ordered[i : i + group_size]) for i in range(0, len(ordered), group_size)]


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
    group_size: int | None = None,
    executor=None,
    **overrides,
) -> ImpResult:
    """Run IMP for every seed and return an ``ImpResult``.

    Args:
        recipe: a preset name (``ticketlab.recipes.names()``) or a ``Recipe``.
        rounds: pruning rounds after the dense round 0 (default: 3 quick, 10 full).
        seeds: one IMP run per seed (initialization and data order both derive from it).
        controls: any of ``ticketlab.rewinding.CONTROLS``, trained at every round's mask (in the
            order of ``CONTROLS``, whatever order they are given in).
        rewind_step: step the survivors are reset to (default: the recipe's, usually 0).
        mode: "iterative" or "one_shot".
        cache_dir: root of the result cache (default ``ticketlab.cache_dir() / "imp"``).
        device: where to compute (default ``ticketlab.device()``).
        population: train each round's cells as one batched population: None when that is
            faster (``population.prefers_population``; a one-member round trains alone), True
            whenever the model allows, False never.
        group_size: seeds trained together as one population in each round (default: all).
            Smaller groups are independent units of work; the results depend on the grouping
            (in the last bits: a population's floating-point rounding depends on its members),
            never on which cells were cached or how the work was split.
        executor: where the seed groups run (``ticketlab.distributed``): None for this process,
            a ``dask.distributed.Client`` or any ``concurrent.futures.Executor``. Each group's
            chain of rounds is one task (rounds of a seed are sequential; groups run in
            parallel); the workers store their cells in the cache, which must be a folder they
            and this process share, and this process then reads the table from it. The table
            and masks are bit-identical to ``executor=None`` at the same threads per process.
        overrides: recipe fields, e.g. ``steps=500`` or ``prune_scope="global"``.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    if rewind_step is not None:
        overrides["rewind_step"] = rewind_step
    rec = get(recipe, **overrides)
    rounds = budget(quick=3, full=10) if rounds is None else rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(
            f"rounds must be an int >= 0 (pruning rounds after round 0), got {rounds!r}"
        )
    if mode not in ("iterative", "one_shot"):
        raise ValueError(f"mode must be 'iterative' or 'one_shot', got {mode!r}")
    if isinstance(controls, str):
        raise ValueError(f"controls must be a list of names, got the string {controls!r}")
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"unknown controls {unknown}; choose from {CONTROLS}")
    if population not in (None, True, False):
        raise ValueError(f"population must be None, True or False, got {population!r}")
    check_executor(executor)
    groups = _groups(seed_list(seeds), group_size)
    k = rec.prune.rewind_step
    if k >= rec.train.steps:
        raise ValueError(f"rewind_step={k} must be smaller than steps={rec.train.steps}")
    dev = pick_device(device)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "imp"
    cache = ResultCache(root / rec.key, rec.canonical, results_version("ticketlab.imp"))
    draws = rec.prune.control_draws
    kinds = ("ticket", *(_draw_name(c, d) for c in CONTROLS if c in controls for d in range(draws)))
    state = _Run(rec, mode, cache, kinds, population, dev)
    cache.prepare(state.round_bytes(sum(len(g) for g in groups)))
    label = f"IMP {rec.name or rec.key}"
    if executor is None:
        state.data = rec.data.load(dev)
    else:
        units = [
            {"recipe": rec, "rounds": rounds, "seeds": list(group), "controls": list(controls),
             "mode": mode, "cache_dir": str(root.resolve()), "population": population}
            for group in groups
        ]  # fmt: skip
        used = set(map_units(executor, _run_group, units, desc=label, progress=progress))
        state.read_only(used)
    for round_ in tqdm(range(rounds + 1), desc=label, disable=not progress or executor is not None):
        for group in groups:
            state.unit(group, round_, progress)
    return state.result(time.perf_counter() - started)


def _run_group(**unit) -> str:
    """One task of ``run(..., executor=...)``: a seed group's rounds, in a worker, on the
    worker's device (``distributed.worker_device``), stored in the shared cache. Returns the
    device type it computed on: which cells exist depends on it (``_Run._population``)."""
    device = worker_device()
    run(**unit, device=device, progress=False)
    return device.type


def _draw_name(control_name: str, draw: int) -> str:
    """A control's cell kind for its ``draw``-th independent draw: the first draw keeps the
    control's name (so its cells and seeds are those of a one-draw run), later ones add ``#d``."""
    return control_name if draw == 0 else f"{control_name}#{draw + 1}"


def _split_kind(kind: str) -> tuple[str, int]:
    """``"reinit#3"`` → ("reinit", 2): the control and the 0-based draw of a cell kind."""
    base, _, number = kind.partition("#")
    return base, int(number) - 1 if number else 0


class _Run:
    """One ``run`` between its stages. A round of a seed group is one unit of work: prune each
    seed's mask, then take the unit's cells from the cache or train them.

    Holds, per seed, the rewind point and the weights pruning ranks next; the masks; and the
    table's rows and curves in the order the cells arrive.
    """

    def __init__(self, rec: Recipe, mode: str, cache: ResultCache, kinds, population, dev):
        self.rec, self.mode, self.cache, self.kinds, self.dev = rec, mode, cache, kinds, dev
        self.population = population
        self.decide_on = dev  # the device type that decides populations (the workers', if any)
        self.reads_only = False
        self.data = None
        self.k = rec.prune.rewind_step
        self.layer_rates = dict(rec.prune.layer_rates) or None
        self.probe = rec.model.build(0)  # the architecture, for shapes and the trainer's choice
        self.masks: dict[tuple[int, int], Mask] = {}
        self.rewind_points: dict[int, dict[str, torch.Tensor]] = {}
        self.ranked: dict[int, dict[str, torch.Tensor]] = {}
        self.rows: list[dict] = []
        self.histories: list[pd.DataFrame] = []
        self.cached = 0

    # -- the unit of work -------------------------------------------------------------------

    def unit(self, group: tuple[int, ...], round_: int, progress: bool) -> None:
        """Round ``round_`` of the seeds ``group``: every cell from the cache, or trained.

        Cells trained one by one do not depend on each other, so each is locked, loaded or
        computed, and saved on its own. A population's members round differently with other
        companions, so a population is locked, loaded and, if any member is missing, trained
        again whole: the missing cells come out bit for bit as an uninterrupted run makes them.
        """
        kinds = self._kinds(round_)
        for seed in group:
            self.prune(seed, round_)
        cells = [(seed, kind) for seed in group for kind in kinds]
        unit = self._unit(group, round_)
        batches = [[cell] for cell in cells] if unit is None else [cells]
        for batch in batches:
            names = [self._name(unit, seed, round_, kind) for seed, kind in batch]
            with self.cache.lock(names):
                entries = [self._fetch(unit, seed, round_, kind) for seed, kind in batch]
                if all(entry is not None for entry in entries):
                    for (seed, kind), entry in zip(batch, entries, strict=True):
                        self._accept(seed, round_, kind, entry)
                elif self.reads_only:
                    raise CacheError(
                        f"the workers finished, but cells of seeds {list(group)} at round "
                        f"{round_} are not in {self.cache.root} as this process sees it: the "
                        "cache must be one folder that every worker and this process share (pass "
                        "cache_dir= a shared path, e.g. on the cluster's network filesystem)"
                    )
                else:
                    missing = [entry is None for entry in entries]
                    self._train(unit, round_, batch, missing, progress)

    def read_only(self, device_types: set[str]) -> None:
        """After the workers ran: take every cell from the cache, deciding populations as the
        workers did, on their ``device_types`` (one type: cells differ between devices)."""
        if len(device_types) > 1:
            raise CacheError(
                f"the workers computed on different kinds of device ({sorted(device_types)}), so "
                "their cells do not make one experiment; give every worker the same kind "
                "(TICKETLAB_DEVICE)"
            )
        self.reads_only = True
        if device_types:
            self.decide_on = torch.device(device_types.pop())

    def _kinds(self, round_: int) -> tuple[str, ...]:
        return ("dense",) if round_ == 0 else self.kinds

    def _population(self, n: int) -> bool:
        """Whether n cells train as one population (see ``run``'s ``population``)."""
        if self.population is False or not supports(self.probe):
            return False
        if self.population is True:
            return True
        return n > 1 and prefers_population([self.probe] * n, self.decide_on)

    def _unit(self, group: tuple[int, ...], round_: int) -> dict | None:
        """What a population of this group and round is made of, round 0's included (later
        rounds start from it); None when its cells train one by one, and so alone."""
        if not self._population(len(group) * len(self._kinds(round_))):
            return None
        dense = None if round_ == 0 else self._unit(group, 0)
        return {"seeds": list(group), "kinds": list(self._kinds(round_)), "dense": dense}

    def _mode_of(self, round_: int) -> str:
        """Whose cells round ``round_``'s are: "both_modes" for rounds 0 and 1, which iterative
        and one-shot pruning compute alike (the dense network, then its weights pruned once),
        else this run's mode."""
        return "both_modes" if round_ <= 1 else self.mode

    def _name(self, unit: dict | None, seed: int, round_: int, kind: str) -> str:
        """The cell's place: its mode's folder (``_mode_of``), then one folder per population
        make-up (``_unit``), "sequential" for cells trained alone."""
        if unit is None:
            folder = "sequential"
        else:
            digest = hashlib.sha256(json.dumps(unit, sort_keys=True).encode()).hexdigest()
            folder = f"population-{digest[:12]}"
        return f"{self._mode_of(round_)}/{folder}/seed{seed}/round{round_:02d}_{kind}"

    def _coordinates(self, unit: dict | None, seed: int, round_: int, kind: str) -> dict:
        """Which cell an entry is: its manifest names them and a load checks them."""
        return {"recipe": self.rec.key, "mode": self._mode_of(round_), "seed": seed,
                "round": round_, "kind": kind, "population": unit}  # fmt: skip

    # -- stages -----------------------------------------------------------------------------

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

    def _fetch(self, unit, seed: int, round_: int, kind: str) -> dict | None:
        """The cell's cache entry, or None if it is absent or unusable."""
        return self.cache.load(
            self._name(unit, seed, round_, kind), self.dev,
            coordinates=self._coordinates(unit, seed, round_, kind), required=self._needs(kind),
            check=lambda entry: self._check(entry, seed, round_, kind),
        )  # fmt: skip

    def _accept(self, seed: int, round_: int, kind: str, entry: dict) -> None:
        self.cached += 1
        self._record(seed, round_, kind, Mask(entry["mask"]), *_unpack(entry))
        self._remember(seed, kind, entry.get("rewind_point"), entry.get("weights"))

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
            name = _split_kind(kind)[0]
            model, cell_mask = control(name, model, mask, cell_seed, self.rec.model.init)
        return {"model": model, "mask": cell_mask, "seed": seed, "kind": kind}

    def _train(self, unit, round_: int, cells, missing: list[bool], progress: bool) -> None:
        """Train ``cells`` (one population when ``unit`` says so); store the ``missing`` ones in
        the cache as soon as they exist.

        Round 0 trains from step 0 and keeps the rewind point (step k); later rounds resume at k.
        """
        k = self.k
        start, checkpoints = (0, [k] if k else []) if round_ == 0 else (k, [])
        jobs = [self.start(seed, round_, kind) for seed, kind in cells]
        results = train_many(
            [j["model"] for j in jobs], self.data, self.rec.train,
            masks=[j["mask"] for j in jobs], data_seeds=[j["seed"] for j in jobs],
            start_step=start, checkpoint_steps=checkpoints, progress=progress,
            population=unit is not None,
        )  # fmt: skip
        for job, result, store in zip(jobs, results, missing, strict=True):
            seed, kind = job["seed"], job["kind"]
            cell_mask = job["mask"] if job["mask"] is not None else self.masks[(seed, 0)]
            point = None
            if kind == "dense":
                point = result.checkpoints[k] if k else self.rec.model.build(seed).state_dict()
            # Round 1's ticket keeps its weights in both modes: an iterative run ranks them next.
            keep = kind == "dense" or (
                kind == "ticket" and (self.mode == "iterative" or round_ == 1)
            )
            weights = result.model.state_dict() if keep else None
            self._remember(seed, kind, point, weights)
            if store:
                payload = _payload(result, cell_mask, keep, point)
                self.cache.save(
                    self._name(unit, seed, round_, kind), payload,
                    self._coordinates(unit, seed, round_, kind),
                )  # fmt: skip
            self._record(seed, round_, kind, cell_mask, result.summary(), result.history)

    # -- what a cell holds ------------------------------------------------------------------

    def _needs(self, kind: str) -> list[str]:
        """The payload keys this run reads back from a cell of ``kind``."""
        keys = ["row", "history", "mask"]
        if kind == "dense":
            keys += ["rewind_point", "weights"]
        elif kind == "ticket" and self.mode == "iterative":
            keys.append("weights")
        return keys

    def _check(self, entry: dict, seed: int, round_: int, kind: str) -> str | None:
        """What is wrong with a checksum-valid entry's structure, or None: a row with every
        summary key, a curve of equal-length 1-D columns with a step, a valid mask of this
        architecture (at this round's density for a ticket), and full state dicts."""
        row, history = entry["row"], entry["history"]
        if not isinstance(row, dict) or set(SUMMARY) - set(row):
            return "its row lacks summary metrics"
        if not isinstance(history, dict) or "step" not in history:
            return "its training curve has no step column"
        columns = list(history.values())
        one_d = all(isinstance(c, torch.Tensor) and c.dim() == 1 for c in columns)
        if not one_d or len({len(c) for c in columns}) != 1:
            return "its training curve's columns are not 1-D tensors of one length"
        try:
            mask = as_mask(entry["mask"], self.probe, "its mask")
        except (TypeError, ValueError) as error:
            return str(error)
        expected = self.masks[(seed, round_)]
        if kind in ("dense", "ticket") and mask != expected:
            return "its mask is not the one this round's pruning gives"
        if kind != "dense" and mask.density != expected.density:
            return "its mask's density is not this round's"
        shapes = {n: tuple(t.shape) for n, t in self.probe.state_dict().items()}
        for key in ("weights", "rewind_point"):
            if key in entry:
                state = entry[key]
                if (
                    not isinstance(state, dict)
                    or {n: tuple(getattr(t, "shape", ())) for n, t in state.items()} != shapes
                ):
                    return f"its {key} is not a state of this architecture"
        return None

    def round_bytes(self, seeds: int) -> int:
        """About what one round's cells take on disk: each holds its mask (1 byte per prunable
        weight), its curve, and for dense and ticket cells the weights (and a rewind point)."""
        state = sum(t.numel() * t.element_size() for t in self.probe.state_dict().values())
        per_cell = 2 * state + sum(p.numel() for p in self.probe.parameters()) + 64_000
        return seeds * max(1, len(self.kinds)) * per_cell

    def _remember(self, seed: int, kind: str, point, weights) -> None:
        """Keep what later rounds need: the dense cell's rewind point, and the weights the next
        round ranks (the dense network's, and in iterative mode each ticket's)."""
        if kind == "dense":
            self.rewind_points[seed] = {n: t.to(self.dev) for n, t in point.items()}
        if kind == "dense" or (kind == "ticket" and self.mode == "iterative"):
            self.ranked[seed] = weights

    def _record(self, seed: int, round_: int, kind: str, mask: Mask, row: dict, history) -> None:
        name, draw = _split_kind(kind)
        where = {"kind": name, "draw": draw} if self.rec.prune.control_draws > 1 else {"kind": name}
        self.rows.append({"seed": seed, "round": round_, "density": mask.density, **where, **row})
        self.histories.append(history.assign(seed=seed, round=round_, **where))

    def result(self, wall_time: float) -> ImpResult:
        rank = {kind: i for i, kind in enumerate(KINDS)}
        table = pd.DataFrame(self.rows)
        order = ["seed", "round", "_order", *(["draw"] if "draw" in table else [])]
        table = (
            table.assign(_order=table["kind"].map(rank))
            .sort_values(order)
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
