"""The common shape of every experiment's answer: a tidy table and verdicts computed from it."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..verdict import Claim, Verdict, verdicts_frame

__all__ = ["ExperimentResult", "as_part"]

_PART: contextvars.ContextVar[bool] = contextvars.ContextVar("part", default=False)


@contextlib.contextmanager
def as_part():
    """Within the block, experiments return results without verdicts: the part a seed group
    contributes to a larger run (``_units``), whose claims are evaluated once, on all seeds."""
    token = _PART.set(True)
    try:
        yield
    finally:
        _PART.reset(token)


@dataclass
class ExperimentResult:
    """What an experiment in ``ticketlab.experiments`` returns.

    ``table`` is tidy (one row per measurement); ``claims`` were fixed in code before the run (with
    their citations); ``verdicts`` are those claims evaluated on ``table``, one per claim that the
    run had enough seeds for. ``extras`` holds what plots and widgets need (models, curves, masks).
    """

    name: str
    table: pd.DataFrame
    claims: Sequence[Claim]
    extras: dict[str, Any] = field(default_factory=dict, repr=False)
    plotter: Callable[[ExperimentResult], Any] | None = field(default=None, repr=False)
    wall_time: float = 0.0
    verdicts: tuple[Verdict, ...] = field(init=False)

    def __post_init__(self) -> None:
        if _PART.get():  # one seed group's share of a run: its claims are judged on the whole
            self.verdicts = ()
            return
        self.verdicts = tuple(claim.evaluate(self.table) for claim in self.claims)

    def verdict(self, name: str) -> Verdict:
        """The verdict of the claim called ``name``."""
        for v in self.verdicts:
            if v.claim.name == name:
                return v
        raise KeyError(f"no claim named {name!r}; claims: {[c.name for c in self.claims]}")

    def plot(self):
        """This experiment's main figure (a matplotlib Figure)."""
        if self.plotter is None:
            raise NotImplementedError(f"experiment {self.name!r} has no default plot")
        return self.plotter(self)

    def verdict_table(self) -> pd.DataFrame:
        """One row per claim: outcome, effect and its 95 % CI."""
        return verdicts_frame(self.verdicts)

    def __repr__(self) -> str:
        lines = [f"{self.name}: {len(self.table)} rows, {self.wall_time:.1f}s"]
        lines += [f"  {v}" for v in self.verdicts]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [f"<p><b>{self.name}</b>: {len(self.table)} rows, {self.wall_time:.1f}s</p>"]
        parts += [v._repr_html_() for v in self.verdicts]
        return "".join(parts)
