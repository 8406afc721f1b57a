"""What a benchmark hands back: rows of the results table, raw details, and the run's context.

Every benchmark is a function ``run(ctx: Context) -> Group``. A ``Group`` holds the ``Row``s it
adds to the printed table (item, measured, target, met?) and ``details``: everything needed to
check the numbers later (configuration, raw timing samples with their median, min and max:
``summary``), written to the JSON file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["Context", "Group", "Row", "Target", "number", "summary"]


def number(value: float) -> str:
    """A readable rendering with about three significant digits: 1.42, 12.3, 1,234."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 0.01 or size == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def summary(samples: Sequence[float]) -> dict[str, float | list[float]]:
    """Median, min and max of ``samples``, with the samples themselves (for the JSON file)."""
    if not samples:
        raise ValueError("summary of no samples")
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": list(samples),
    }


def _with_unit(text: str, unit: str) -> str:
    return f"{text}{unit}" if unit in ("×", "") else f"{text} {unit}"


@dataclass(frozen=True)
class Target:
    """A goal: ``value >= threshold`` when ``at_least``, else ``value < threshold``."""

    at_least: bool
    threshold: float
    unit: str

    @classmethod
    def minimum(cls, threshold: float, unit: str) -> Target:
        return cls(True, threshold, unit)

    @classmethod
    def below(cls, threshold: float, unit: str) -> Target:
        return cls(False, threshold, unit)

    def met(self, value: float) -> bool:
        return value >= self.threshold if self.at_least else value < self.threshold

    def __str__(self) -> str:
        return ("≥ " if self.at_least else "< ") + _with_unit(f"{self.threshold:g}", self.unit)


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    ``value`` (in ``unit``) is None when nothing was measured (no GPU, skipped, failed); then
    ``measured`` says why. ``met`` is None when there is no target or it was not judged.
    """

    group: str
    item: str
    measured: str
    value: float | None = None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @classmethod
    def judged(
        cls, group: str, item: str, value: float, unit: str, target: Target, note: str = ""
    ) -> Row:
        """A measurement checked against ``target``."""
        if unit != target.unit:
            raise ValueError(f"{item}: value in {unit!r} but target in {target.unit!r}")
        return cls(
            group,
            item,
            _with_unit(number(value), unit),
            value,
            unit,
            str(target),
            target.met(value),
            note,
        )

    @classmethod
    def info(cls, group: str, item: str, value: float, unit: str, note: str = "") -> Row:
        """A measurement without a target."""
        return cls(group, item, _with_unit(number(value), unit), value, unit, note=note)

    @classmethod
    def unmeasured(cls, group: str, item: str, why: str, target: Target | str = "") -> Row:
        """A line for something not measured in this run, saying why."""
        return cls(group, item, why, target=str(target))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Group:
    """The rows a benchmark adds to the table, and its raw details for the JSON file."""

    rows: list[Row]
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """How the suite runs: reduced sizes (``quick``), repeat override, device, progress log."""

    quick: bool = False
    repeats: int | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: Callable[[str], None] = print

    def size(self, quick, full):
        """``quick`` in a --quick run, else ``full``."""
        return quick if self.quick else full

    def rounds(self, quick: int, full: int) -> int:
        """Timing rounds: the --repeats override, else ``size(quick, full)``."""
        return self.repeats if self.repeats is not None else self.size(quick, full)
