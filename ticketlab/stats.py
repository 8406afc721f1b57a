"""The statistics behind every verdict, band and error bar in the workbook.

Seeds are the independent replicates. The effect of a claim is the mean over seeds, and its 95%
confidence interval the two-sided Student-t interval ``mean ± t((1 + c) / 2, n − 1) · s / √n``
with ``s`` the sample standard deviation (ddof = 1) and ``c`` the confidence (0.95). A claim is
supported when the whole interval lies beyond its margin in the claimed direction, refuted when
it lies entirely on the other side, inconclusive otherwise.

* ``t_quantile``: quantiles of Student's t, exact up to float rounding (no SciPy needed);
* ``t_half_width``: the interval's half-width from a standard deviation and a count;
* ``t_interval`` / ``t_intervals``: (mean, low, high) of one sample / of many at once;
* ``t_errorbar``: the interval as seaborn's ``errorbar=`` callable;
* ``outcome`` / ``outcomes``: the decision rule, for one interval / for arrays of them;
* ``OUTCOMES``, ``OUTCOME_COLORS``: the outcome names in display order, and their colors;
* ``seed_list``: a seed count or a collection of seeds as a list of distinct ints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Literal

import numpy as np

__all__ = [
    "OUTCOMES",
    "OUTCOME_COLORS",
    "Outcome",
    "outcome",
    "outcomes",
    "seed_list",
    "t_errorbar",
    "t_half_width",
    "t_interval",
    "t_intervals",
    "t_quantile",
]

Outcome = Literal["supported", "refuted", "inconclusive"]

OUTCOMES: tuple[Outcome, ...] = ("supported", "inconclusive", "refuted")
"""Verdict outcomes in the order tables and figures list them."""

OUTCOME_COLORS: dict[Outcome, str] = {
    "supported": "#029E73",
    "refuted": "#D55E00",
    "inconclusive": "#949494",
}
"""Green, vermillion and grey (seaborn's colorblind palette, entries 2, 3 and 7): the color of
each outcome, in figures and in a verdict's HTML badge."""


def _student_t_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer number of degrees of freedom ``df``.

    The closed form of Abramowitz & Stegun 26.7.3/26.7.4, with θ = atan(t / √df):
    odd df:  (2/π)·(θ + sinθ·(cosθ + ⅔cos³θ + (2·4)/(3·5)cos⁵θ + …)), df − 2 powers of cos
    even df: sinθ·(1 + ½cos²θ + (1·3)/(2·4)cos⁴θ + …), up to cos^(df−2)θ.
    """
    theta = math.atan(t / math.sqrt(df))
    sin, cos = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        term, total = cos, 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos * cos * (2 * k) / (2 * k + 1)
        return (2 / math.pi) * (theta + sin * total)
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= cos * cos * (2 * k - 1) / (2 * k)
    return sin * total


def t_quantile(p: float, df: int) -> float:
    """The ``p``-quantile of Student's t distribution with ``df`` (a positive int) degrees of
    freedom.

    Exact up to float rounding: the closed-form CDF (``_student_t_mass``) is inverted by bisection
    on θ = atan(t / √df), which lives in the bounded interval [0, π/2). For example
    ``t_quantile(0.975, 2) == 4.3027…`` and ``t_quantile(0.975, 29) == 2.0452…``.
    """
    if not isinstance(df, int) or isinstance(df, bool) or df < 1:
        raise ValueError(f"df must be a positive int (number of seeds − 1), got {df!r}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be a probability strictly between 0 and 1, got {p!r}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target = 2.0 * p - 1.0  # P(|T| <= t) at the quantile
    low, high = 0.0, math.pi / 2
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        if _student_t_mass(math.sqrt(df) * math.tan(mid), df) < target:
            low = mid
        else:
            high = mid
    return math.sqrt(df) * math.tan(0.5 * (low + high))


def t_half_width(std, n, confidence: float = 0.95):
    """Half-width ``t((1 + confidence) / 2, n − 1) · std / √n`` of the Student-t interval.

    ``std``: sample standard deviations (ddof = 1), a float, an array or a pandas Series, in the
    metric's units; ``n``: the number of values behind each, an int or an int array broadcastable
    with ``std``. Returns the half-widths in the same units and shape (a Series stays a Series);
    NaN where n < 2, since one value has no spread.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, e.g. 0.95, got {confidence!r}")
    counts = np.asarray(n)
    p = (1 + confidence) / 2
    quantile = np.array(
        [t_quantile(p, int(k) - 1) if k > 1 else math.nan for k in counts.flat], dtype=float
    ).reshape(counts.shape)
    return quantile * std / np.sqrt(counts)


def t_intervals(values, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) of the Student-t interval along the last axis of ``values``.

    ``values``: array of shape (..., n), the last axis the n >= 2 replicates (seeds) of each
    sample. Returns three float arrays of shape (...), in the units of ``values``; a sample with a
    NaN gets NaN for all three.
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[-1] if values.ndim else 0
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {n}")
    mean = values.mean(axis=-1)
    half = t_half_width(values.std(axis=-1, ddof=1), n, confidence)
    return mean, mean - half, mean + half


def t_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided Student-t confidence interval for the mean of ``values``.

    ``values`` are independent replicates (one number per seed, any iterable); at least two are
    needed. The interval is ``mean ± t((1 + confidence) / 2, n − 1) · s / √n``, ``s`` with
    ddof = 1, in the units of ``values``. A NaN among the values makes all three NaN.
    """
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1:
        raise ValueError(f"values must be one number per seed, got an array of shape {x.shape}")
    mean, low, high = t_intervals(x, confidence)
    return float(mean), float(low), float(high)


def t_errorbar(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of the 95% Student-t interval of the mean, for seaborn's ``errorbar=``.

    Seaborn calls it once per point with that point's values (NaN dropped), and only when there
    are at least two: it draws no bar for a single value itself.
    """
    _, low, high = t_interval(values)
    return low, high


def outcomes(direction: str, margin: float, low, high) -> np.ndarray:
    """The decision rule for intervals [``low``, ``high``] against ``margin`` (same units).

    For ``direction`` "greater": "supported" where ``low > margin``, "refuted" where
    ``high < margin``, otherwise "inconclusive" (also for NaN bounds); "less" is the mirror
    image. ``low`` and ``high`` are floats or arrays of one shape; returns a str array of it.
    """
    low, high = np.asarray(low), np.asarray(high)
    if direction == "greater":
        supported, refuted = low > margin, high < margin
    elif direction == "less":
        supported, refuted = high < margin, low > margin
    else:
        raise ValueError(f'direction must be "greater" or "less", got {direction!r}')
    return np.where(supported, "supported", np.where(refuted, "refuted", "inconclusive"))


def outcome(direction: str, margin: float, low: float, high: float) -> Outcome:
    """``outcomes`` for one interval: "supported", "refuted" or "inconclusive"."""
    return str(outcomes(direction, margin, low, high))


def seed_list(seeds) -> list[int]:
    """``seeds`` as a list of distinct ints: a count n (an int) means seeds 0 … n − 1.

    Otherwise ``seeds`` is a collection of integers (ints or NumPy integers, e.g. a list, a range
    or an array), kept in its order. Raises ValueError for a count below 1, an empty collection,
    repeated seeds, or anything that is not an integer (bools and floats included).
    """
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"a seed count must be at least 1, got {seeds!r}")
        return list(range(seeds))
    try:
        items = list(seeds)
    except TypeError:
        raise ValueError(
            f"seeds must be a count >= 1 or a collection of ints, got {seeds!r}"
        ) from None
    bad = [s for s in items if not isinstance(s, (int, np.integer)) or isinstance(s, bool)]
    if bad:
        raise ValueError(f"seeds must be ints, but {bad!r} in {seeds!r} are not")
    out = [int(s) for s in items]
    if not out:
        raise ValueError("seeds is empty; pass a count (e.g. 3) or a list of seeds")
    repeated = sorted(s for s, count in Counter(out).items() if count > 1)
    if repeated:
        raise ValueError(f"seeds must be distinct, but {repeated} appear more than once: {seeds!r}")
    return out
