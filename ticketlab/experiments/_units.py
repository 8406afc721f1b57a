"""An experiment over seeds, cut into groups of seeds: its units of work on an executor.

Every experiment that loops over seeds accepts ``group_size`` and ``executor``. With either given,
the seeds (sorted) are cut into consecutive groups of ``group_size`` (None: one group of all),
each group runs as the same experiment on its own seeds (a unit: ``distributed.map_units``), and
the groups' tables and extras are joined in group order. The claims are evaluated on the joined
table, so verdicts see every seed. The grouping is a function of the arguments alone, never of the
executor or its number of workers: ``executor=None`` and any cluster give identical results for
the same ``group_size`` (members of a population round differently with other companions, so
the grouping itself can change the last bits, as in ``imp.run``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Sequence

import pandas as pd

from ..config import budget_of, quick
from ..distributed import check_executor, map_units, worker_device
from ..stats import seed_list
from ._result import ExperimentResult, as_part

__all__ = ["over_seed_groups", "seed_groups"]


def seed_groups(seeds: Sequence[int], group_size: int | None) -> list[list[int]]:
    """Consecutive runs of ``group_size`` of the sorted ``seeds`` (all of them for None)."""
    ordered = sorted(seeds)
    if group_size is None:
        return [ordered]
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(
            f"group_size must be an int >= 1 (seeds per unit of work) or None (all seeds), "
            f"got {group_size!r}"
        )
    return [ordered[i : i + group_size] for i in range(0, len(ordered), group_size)]


def over_seed_groups(default_seeds: Callable[[], int | Sequence[int]]):
    """Decorate an experiment function with ``seeds`` and ``progress`` arguments so that it also
    takes ``group_size`` and ``executor`` (see the module docstring). ``default_seeds`` gives
    the seeds when the call gives none (a budget: quick or full)."""

    def decorate(experiment: Callable[..., ExperimentResult]):
        signature = inspect.signature(experiment)

        @functools.wraps(experiment)
        def wrapper(*args, group_size: int | None = None, executor=None, **kwargs):
            if group_size is None and executor is None:
                return experiment(*args, **kwargs)
            check_executor(executor)
            arguments = dict(signature.bind(*args, **kwargs).arguments)
            for name, parameter in signature.parameters.items():
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(arguments.pop(name, {}))
            seeds = arguments.pop("seeds", None)
            groups = seed_groups(seed_list(default_seeds() if seeds is None else seeds), group_size)
            progress = arguments.pop("progress", True)
            if executor is not None:
                arguments.pop("device", None)  # each worker computes on its own device
            units = [
                {"name": experiment.__name__, "quick": quick(),
                 "arguments": {**arguments, "seeds": group, "progress": False}}
                for group in groups
            ]  # fmt: skip
            return join(map_units(executor, _unit, units, desc=experiment.__name__,
                                  progress=progress))  # fmt: skip

        extra = [
            inspect.Parameter("group_size", inspect.Parameter.KEYWORD_ONLY, default=None),
            inspect.Parameter("executor", inspect.Parameter.KEYWORD_ONLY, default=None),
        ]
        parameters = list(signature.parameters.values())
        variadic = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
        named = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
        wrapper.__signature__ = signature.replace(parameters=[*named, *extra, *variadic])
        wrapper.__doc__ = (experiment.__doc__ or "") + _DOC
        return wrapper

    return decorate


_DOC = """
    Units of work (``ticketlab.experiments._units``): ``group_size`` seeds per unit (default:
    all in one) and ``executor`` (None: this process; a ``dask.distributed.Client`` or any
    ``concurrent.futures.Executor``) run the seed groups as separate tasks and join their tables;
    the results depend on ``group_size``, never on the executor or its number of workers.
"""


def _unit(name: str, quick: bool, arguments: dict) -> ExperimentResult:
    """One seed group of experiment ``name``: at the caller's budget (``quick``: a worker's own
    TICKETLAB_QUICK must not change the defaults), on this process's worker device unless the
    call gave one."""
    experiment = getattr(importlib.import_module("ticketlab.experiments"), name)
    if "device" in inspect.signature(experiment).parameters and "device" not in arguments:
        arguments = {**arguments, "device": worker_device()}
    with budget_of(quick), as_part():
        return experiment(**arguments)


def join(parts: Sequence[ExperimentResult]) -> ExperimentResult:
    """One result from the results of seed groups: tables concatenated in group order, extras
    merged (``_merge``), claims re-evaluated on the joined table, wall time summed."""
    first = parts[0]
    table = pd.concat([p.table for p in parts], ignore_index=True)
    extras = {k: _merge([p.extras[k] for p in parts if k in p.extras]) for k in first.extras}
    return dataclasses.replace(
        first, table=table, extras=extras, wall_time=sum(p.wall_time for p in parts)
    )


def _merge(values: list):
    """Join one extra across seed groups: frames are concatenated, lists joined, dicts merged key
    by key (per-seed entries are disjoint), and an equal value everywhere (a recipe, a
    threshold) kept once."""
    if len(values) == 1:
        return values[0]
    if all(isinstance(v, pd.DataFrame) for v in values):
        return pd.concat(values, ignore_index=True)
    if all(isinstance(v, list) for v in values):
        return [item for v in values for item in v]
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _merge([v[k] for v in values if k in v]) for k in keys}
    if all(_equal(v, values[0]) for v in values[1:]):
        return values[0]
    return list(values)


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # tensors and the like compare elementwise: not one value
        return False
