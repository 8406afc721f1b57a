"""Pre-registered claims and their verdicts.

A notebook states a ``Claim`` *before* it runs an experiment: what is compared, in which direction,
by how much, with how many seeds, and which paper says so. After the run, ``evaluate`` reads the
results table and returns a ``Verdict``: supported, refuted or inconclusive. The decision rule is
fixed in advance, so a run cannot be reinterpreted after the fact.

    >>> claim = Claim(
    ...     name="tickets beat reinit",
    ...     statement="Winning tickets are more accurate than the same masks reinitialized.",
    ...     citation="Frankle & Carbin 2019, §2",
    ...     metric="test_acc",
    ...     treatment={"kind": "ticket"},
    ...     control={"kind": "reinit"},
    ...     where="density <= 0.07",
    ...     unit="pp",
    ...     scale=100,
    ... )
    >>> claim                     # in a notebook: the prediction and the decision rule
    >>> verdict = claim.evaluate(results)
    >>> print(verdict)
    Verdict: supported — supported: test_acc(kind=ticket) − test_acc(kind=reinit) = 1.8 pp (95% CI
    0.9 to 2.7 pp, n=3 seeds; needed > 0 pp)

The statistics: seeds are the independent replicates. Per seed, the metric is averaged over the
selected rows; for a paired claim the per-seed difference treatment − control is taken (pairing
removes what the two arms share, such as the data order of a seed). The effect is the mean over
seeds and its 95% confidence interval the two-sided Student-t interval
``mean ± t(0.975, n − 1) · s / √n`` with ``s`` the sample standard deviation (ddof = 1). The
interval and the decision rule below are computed by ``ticketlab.stats``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from .stats import OUTCOME_COLORS, Outcome, outcome, t_interval, t_quantile

# t_quantile is re-exported: notebook 07 imports it from here.
__all__ = ["Claim", "Verdict", "evaluate", "t_quantile", "verdicts_frame"]

SEED = "seed"
"""The column that identifies independent replicates in every results table."""

Direction = Literal["greater", "less"]

_MULTIPLE = (list, tuple, set, frozenset)


def _num(x: float) -> str:
    """A number for prose: three significant digits, thousands written out (12,345 iterations)."""
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 100:
        return f"{x:,.0f}"
    text = f"{x:.3g}"
    return "0" if text == "-0" else text


def _filters_text(filters: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in filters.items())


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A falsifiable prediction about a results table, stated before the experiment runs.

    Attributes:
        name: short identifier, shown in tables and plots.
        statement: the claim in plain English.
        citation: where it comes from (paper, year, section), or "this lab" for our own guess.
        metric: the table column compared, e.g. ``"test_acc"`` (in its own units, e.g. 0–1).
        treatment: column → value filters selecting the treatment rows, e.g. ``{"kind": "ticket"}``.
            A list/tuple/set value selects any of its values.
        control: the same for the control rows; ``None`` compares the treatment with the fixed
            threshold ``margin`` instead of with a control.
        where: optional ``DataFrame.query`` string applied before the filters, e.g.
            ``"density <= 0.07"`` (safer than filtering float columns for equality).
        direction: ``"greater"`` (treatment − control, or treatment, should be above ``margin``)
            or ``"less"`` (below).
        margin: in the metric's own units; the effect must clear it in ``direction``. For a
            threshold claim it is the threshold itself (e.g. error barrier < 0.02).
        min_seeds: fewest seeds accepted for a verdict (at least 2: a CI needs a spread).
        unit, scale: display only: numbers are shown as ``value * scale`` followed by ``unit``
            (``scale=100, unit="pp"`` shows accuracy differences as percentage points).
    """

    name: str
    statement: str
    citation: str
    metric: str
    treatment: Mapping[str, Any]
    control: Mapping[str, Any] | None = None
    where: str | None = None
    direction: Direction = "greater"
    margin: float = 0.0
    min_seeds: int = 3
    unit: str = ""
    scale: float = 1.0

    def __post_init__(self) -> None:
        for attr in ("name", "statement", "citation", "metric"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                raise ValueError(f"Claim.{attr} must be a non-empty string")
        for attr in ("treatment", "control"):
            filters = getattr(self, attr)
            if filters is None and attr == "control":
                continue
            if not isinstance(filters, Mapping) or not filters:
                raise ValueError(
                    f"Claim.{attr} must be a non-empty dict of column → value filters, e.g. "
                    f'{{"kind": "ticket"}}; got {filters!r}'
                    + ("; use control=None for a threshold claim" if attr == "control" else "")
                )
            # A private copy: changing the caller's dict later must not change a stated claim.
            object.__setattr__(self, attr, dict(filters))
        if self.where is not None and (not isinstance(self.where, str) or not self.where.strip()):
            raise ValueError(f"Claim.where must be a query string or None, got {self.where!r}")
        if self.direction not in ("greater", "less"):
            raise ValueError(f'Claim.direction must be "greater" or "less", got {self.direction!r}')
        if not math.isfinite(self.margin):
            raise ValueError(f"Claim.margin must be a finite number, got {self.margin!r}")
        if not isinstance(self.min_seeds, int) or self.min_seeds < 2:
            raise ValueError(
                f"Claim.min_seeds must be an int >= 2 (a confidence interval needs a spread over "
                f"seeds), got {self.min_seeds!r}"
            )
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Claim.scale must be a positive number, got {self.scale!r}")

    def __hash__(self) -> int:
        return hash((self.name, self.statement, self.citation, self.metric))

    def evaluate(self, table: pd.DataFrame) -> Verdict:
        """Same as ``evaluate(self, table)``."""
        return evaluate(self, table)

    def show(self, value: float, unit: bool = True) -> str:
        """A number in metric units, for display: 0.018 → "1.8 pp" (scale 100, unit "pp")."""
        number = _num(value * self.scale)
        if not (unit and self.unit):
            return number
        return f"{number}{self.unit}" if self.unit == "%" else f"{number} {self.unit}"

    @property
    def quantity(self) -> str:
        """What is measured, in symbols: ``test_acc(kind=ticket) − test_acc(kind=reinit)``."""
        treated = f"{self.metric}({_filters_text(self.treatment)})"
        if self.control is None:
            return treated
        return f"{treated} − {self.metric}({_filters_text(self.control)})"

    @property
    def _sign(self) -> str:
        return ">" if self.direction == "greater" else "<"

    def _sections(self) -> list[tuple[str, str]]:
        scope = f", over the rows where {self.where}" if self.where else ""
        paired = ", paired by seed" if self.control is not None else ""
        above, below = ("above", "below") if self.direction == "greater" else ("below", "above")
        bar = self.show(self.margin)
        return [
            ("Claim", f"{self.name} ({self.citation})"),
            ("Statement", self.statement),
            (
                "Prediction",
                f"{self.quantity}{paired}{scope}{',' if paired or scope else ''} is "
                f"{self.direction} than {bar}.",
            ),
            (
                "Decision rule",
                f"average {self.metric} per seed over the selected rows"
                + (", take the treatment − control difference per seed" if self.control else "")
                + ", and compute the mean with its two-sided 95% Student-t confidence interval "
                f"over n ≥ {self.min_seeds} seeds. Supported if the whole interval lies {above} "
                f"{bar}; refuted if it lies entirely {below} {bar}; inconclusive otherwise.",
            ),
        ]

    def describe(self) -> str:
        """The prediction and the decision rule in plain words, one section per line."""
        return "\n".join(f"{label}: {text}" for label, text in self._sections())

    def _repr_markdown_(self) -> str:
        return "  \n".join(f"**{label}:** {text}" for label, text in self._sections())

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<b>{html.escape(label)}:</b> {html.escape(text)}<br>"
            for label, text in self._sections()
        )
        return f'<div style="line-height:1.5">{rows}</div>'

    def __repr__(self) -> str:
        return (
            f"Claim({self.name!r}: {self.quantity} {self._sign} {self.show(self.margin)}, "
            f"n ≥ {self.min_seeds} seeds)"
        )


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim on one results table; numbers are in the metric's own units.

    Attributes:
        claim: the claim that was tested.
        outcome: ``"supported"``, ``"refuted"`` or ``"inconclusive"``.
        effect: mean over seeds of treatment − control (or of the treatment, for threshold claims).
        ci_low, ci_high: the two-sided 95% Student-t confidence interval of ``effect``.
        n: number of seeds used.
        per_seed: the per-seed values the interval was computed from, in the order of ``seeds``.
        seeds: the seed ids, sorted.
        unpaired: seeds that appear in only one of treatment and control (left out).
    """

    claim: Claim
    outcome: Outcome
    effect: float
    ci_low: float
    ci_high: float
    n: int
    per_seed: tuple[float, ...]
    seeds: tuple[Any, ...] = ()
    unpaired: tuple[Any, ...] = ()

    @property
    def reading(self) -> str:
        """One plain-English line: outcome, effect, CI, seeds and the bar it had to clear."""
        c = self.claim
        note = ""
        if self.unpaired:
            note = f"; seeds {', '.join(map(str, self.unpaired))} had no partner and were left out"
        return (
            f"{self.outcome}: {c.quantity} = {c.show(self.effect)} (95% CI "
            f"{c.show(self.ci_low, unit=False)} to {c.show(self.ci_high)}, n={self.n} seeds; "
            f"needed {c._sign} {c.show(c.margin)}{note})"
        )

    def __str__(self) -> str:
        return f"Verdict: {self.outcome} — {self.reading}"

    def __repr__(self) -> str:
        c = self.claim
        return (
            f"Verdict({self.outcome}, {c.name!r}: effect {c.show(self.effect)}, "
            f"95% CI [{c.show(self.ci_low)}, {c.show(self.ci_high)}], n={self.n})"
        )

    def _repr_html_(self) -> str:
        color = OUTCOME_COLORS[self.outcome]
        badge = (
            f'<span style="background:{color};color:white;padding:1px 8px;border-radius:4px;'
            f'font-weight:bold">{self.outcome.upper()}</span>'
        )
        c = self.claim
        return (
            f'<div style="line-height:1.5">{badge} <b>{html.escape(c.name)}</b>: '
            f"{html.escape(c.statement)}<br>{html.escape(self.reading)}<br>"
            f"<small>{html.escape(c.citation)}</small></div>"
        )


def _select(frame: pd.DataFrame, filters: Mapping[str, Any]) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    for column, value in filters.items():
        if isinstance(value, _MULTIPLE):
            keep &= frame[column].isin(list(value))
        else:
            keep &= frame[column] == value
    return frame[keep]


def _available(frame: pd.DataFrame, columns: Iterable[str]) -> str:
    parts = []
    for column in columns:
        values = sorted(frame[column].dropna().unique().tolist(), key=str)
        shown = ", ".join(map(repr, values[:12])) + (", …" if len(values) > 12 else "")
        parts.append(f"{column}: [{shown}]")
    return "; ".join(parts)


def _per_seed(claim: Claim, frame: pd.DataFrame, role: str) -> pd.Series:
    """Mean of the metric per seed over the rows that ``role`` ("treatment"/"control") selects."""
    filters = getattr(claim, role)
    rows = _select(frame, filters)
    if rows.empty:
        scope = f" after where={claim.where!r}" if claim.where else ""
        raise ValueError(
            f"claim {claim.name!r}: no rows match the {role} {dict(filters)!r}{scope}. "
            f"Available values: {_available(frame, filters)}. Fix the filter or the table."
        )
    means = rows.groupby(SEED, sort=True)[claim.metric].mean()
    broken = means.index[means.isna()].tolist()
    if broken:
        raise ValueError(
            f"claim {claim.name!r}: {claim.metric} is NaN for the {role} at seeds {broken} "
            "(a diverged run?); drop or repair those rows before evaluating"
        )
    return means


def evaluate(claim: Claim, table: pd.DataFrame) -> Verdict:
    """Test ``claim`` on ``table`` (one row per measurement, with a ``seed`` column) → ``Verdict``.

    Steps: apply ``claim.where``; select treatment (and control) rows; average the metric per seed;
    pair the seeds present in both arms and take treatment − control; the effect is the mean over
    seeds, with the two-sided 95% Student-t CI (module docstring). Decision, for "greater":
    supported if ``ci_low > margin``, refuted if ``ci_high < margin``, otherwise inconclusive;
    "less" is the mirror image.

    Raises ValueError when columns are missing, ``where`` fails or selects nothing, a selection is
    empty (naming the filters and the values available), the arms share no seed, or there are
    fewer than ``claim.min_seeds`` seeds.
    """
    if not isinstance(claim, Claim):
        raise TypeError(f"evaluate needs a Claim, got {type(claim).__name__}")
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"evaluate needs a pandas DataFrame, got {type(table).__name__}")
    needed = {SEED, claim.metric, *claim.treatment, *(claim.control or {})}
    missing = sorted(needed - set(table.columns))
    if missing:
        raise ValueError(
            f"claim {claim.name!r} needs columns {missing} that the table lacks; "
            f"it has {list(table.columns)}"
        )
    frame = table
    if claim.where:
        try:
            frame = table.query(claim.where)
        except Exception as err:  # pandas raises many types for a bad query; all mean the same
            raise ValueError(
                f"claim {claim.name!r}: where={claim.where!r} could not be applied ({err}); "
                f"the columns are {list(table.columns)}"
            ) from err
        if frame.empty:
            raise ValueError(
                f"claim {claim.name!r}: where={claim.where!r} selects none of the "
                f"{len(table)} rows; loosen it or check the table"
            )

    treated = _per_seed(claim, frame, "treatment")
    unpaired: tuple[Any, ...] = ()
    if claim.control is None:
        values = treated
    else:
        control = _per_seed(claim, frame, "control")
        shared = treated.index.intersection(control.index)
        if shared.empty:
            raise ValueError(
                f"claim {claim.name!r}: treatment and control share no seed (treatment seeds "
                f"{treated.index.tolist()}, control seeds {control.index.tolist()}); a paired "
                "comparison needs both arms run with the same seeds"
            )
        unpaired = tuple(sorted(treated.index.symmetric_difference(control.index).tolist()))
        values = treated[shared] - control[shared]

    n = len(values)
    if n < claim.min_seeds:
        raise ValueError(
            f"claim {claim.name!r} has {n} seed{'s' * (n != 1)} but needs at least "
            f"{claim.min_seeds}; run more seeds (or lower min_seeds before the run, not after)"
        )
    effect, low, high = t_interval(values.to_numpy())
    return Verdict(
        claim=claim,
        outcome=outcome(claim.direction, claim.margin, low, high),
        effect=effect,
        ci_low=low,
        ci_high=high,
        n=n,
        per_seed=tuple(float(v) for v in values.to_numpy()),
        seeds=tuple(values.index.tolist()),
        unpaired=unpaired,
    )


def verdicts_frame(verdicts: Iterable[Verdict]) -> pd.DataFrame:
    """One row per verdict: name, outcome, effect, ci_low, ci_high, n, margin, direction.

    Numbers are in each metric's own units (not scaled for display).
    """
    return pd.DataFrame(
        [
            {
                "name": v.claim.name,
                "outcome": v.outcome,
                "effect": v.effect,
                "ci_low": v.ci_low,
                "ci_high": v.ci_high,
                "n": v.n,
                "margin": v.claim.margin,
                "direction": v.claim.direction,
            }
            for v in verdicts
        ],
        columns=["name", "outcome", "effect", "ci_low", "ci_high", "n", "margin", "direction"],
    )
