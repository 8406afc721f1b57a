"""Timing on a shared machine: interleaved repeats, medians, and ratios taken round by round.

Absolute times drift on a shared machine (other jobs start and stop, clocks throttle), so every
comparison in the suite is a ratio of timings taken back to back. ``interleave`` runs the tasks
being compared in rounds, one timing of each per round, rotating the order every round (A B,
B A, A B, ... for two tasks) so that neither side always runs first. A ratio is formed within each
round (``ratios``), where both timings saw about the same machine, and the reported number is
the median over rounds, which one disturbed round cannot move much.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

__all__ = ["Clock", "interleave", "ratios", "summary"]

Clock = Callable[[], float]


def interleave(
    tasks: Mapping[str, Callable[[], object]],
    repeats: int,
    *,
    warmup: int = 1,
    clock: Clock = time.perf_counter,
) -> dict[str, list[float]]:
    """Time every task ``repeats`` times, in rounds that rotate the order of the tasks.

    Round r runs the tasks starting from the (r mod k)-th of the k tasks, in ``tasks`` order,
    wrapping around. Before timing, each task runs ``warmup`` times untimed (one-time costs such
    as lazy imports, allocator growth and thread-pool start-up). Returns seconds per call, one
    list per task name, of length ``repeats``; sample r of every list comes from round r.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(tasks)
    for _ in range(warmup):
        for name in names:
            tasks[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = clock()
            tasks[name]()
            samples[name].append(clock() - start)
    return samples


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Round-by-round ratios ``numerator[r] / denominator[r]`` of two sample lists."""
    if len(numerator) != len(denominator):
        raise ValueError(
            f"ratios need samples from the same rounds; got {len(numerator)} and "
            f"{len(denominator)} samples"
        )
    return [n / d for n, d in zip(numerator, denominator, strict=True)]


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
