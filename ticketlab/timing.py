"""Timing on a shared, busy machine: interleaved repeats, the right clock, ratios and medians.

One harness for the labs (``experiments.hardware``, notebook 06) and the speed benchmarks
(``python -m benchmarks``).

Why interleave. A loaded machine runs slower at some moments than at others. Timing contestant A
for a while and then contestant B lets that drift masquerade as a speed difference. Instead,
every *repeat* runs all contestants back to back (``interleave``), so within a repeat they see
nearly the same machine, and a ratio taken within each repeat (``ratios``, ``summarize``) is
stable even when the absolute seconds are not; the reported number is the median over repeats,
which one disturbed repeat cannot move much. The order changes from repeat to repeat (A B C,
C B A, B C A, A C B, ...: rotated every second repeat, reversed every other one, ``run_order``),
so each contestant runs equally often early and late and after each of its neighbours (caches
remember who ran last).

Short calls. One call of a small layer takes microseconds, near the clock's resolution, so a
measurement can call the function ``number`` times in a loop and divide (``time_variants``
calibrates ``number`` so one measurement lasts at least ``min_time``). Before each measurement it
can also make ``settle`` untimed calls: the contestant before may have evicted this one's data
from the caches, and that reload would otherwise count against it.

Which clock (``default_timer``). On a CPU with one PyTorch thread, the thread's own CPU time
(``time.thread_time``): it stops while the operating system runs other programs, so the numbers
stay meaningful on a shared, busy machine, where wall-clock ratios can be off by several times.
Otherwise (several threads, whose CPU time one thread's clock would miss, or a GPU) the wall
clock (``time.perf_counter``). On a GPU, kernels run asynchronously: ``time_call`` synchronizes
the device before starting and after stopping the clock, so the time covers the work, not just
its launch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import torch

__all__ = [
    "Clock",
    "calibrate",
    "default_timer",
    "interleave",
    "num_threads",
    "ratios",
    "run_order",
    "summarize",
    "time_call",
    "time_variants",
]

Clock = Callable[[], float]
"""A clock: seconds as a float, read twice around a measurement (tests pass a fake one)."""


def _device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None means the CPU."""
    return torch.device(device) if device is not None else torch.device("cpu")


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits until ``device`` has finished its queued work (no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def default_timer(device: str | torch.device | None = "cpu") -> Clock:
    """The clock ``time_call`` uses: thread CPU time on a CPU running one PyTorch thread, else
    the wall clock (module docstring)."""
    if _device(device).type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def time_call(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    number: int = 1,
    device: str | torch.device | None = "cpu",
    timer: Clock | None = None,
) -> list[float]:
    """Seconds per call of ``fn()``, one value per repeat (a list of ``repeats`` floats).

    ``fn`` is first called ``warmup`` times untimed (first calls pay for allocation, kernel
    selection and caches). Each repeat then calls it ``number`` times in a row and reports the
    elapsed time divided by ``number``. On CUDA/MPS the device is synchronized before the clock
    starts and before it stops. ``timer`` is the clock in seconds (default ``default_timer``).
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1, number >= 1 and warmup >= 0; got repeats={repeats}, "
            f"number={number}, warmup={warmup}"
        )
    dev = _device(device)
    sync = _synchronizer(dev)
    timer = default_timer(dev) if timer is None else timer
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        sync()
        start = timer()
        for _ in range(number):
            fn()
        sync()
        seconds.append((timer() - start) / number)
    return seconds


def calibrate(
    fn: Callable[[], Any],
    min_time: float,
    *,
    warmup: int = 0,
    max_number: int | None = None,
    device: str | torch.device | None = "cpu",
    timer: Clock | None = None,
) -> int:
    """How many calls of ``fn`` one measurement needs to last at least ``min_time`` seconds.

    From one timed call (after ``warmup`` untimed ones); at least 1, at most ``max_number``
    (None: no cap).
    """
    (once,) = time_call(fn, repeats=1, warmup=warmup, device=device, timer=timer)
    # A call faster than the clock can see reads 0 s; 1 ns stands in to avoid dividing by 0.
    count = max(1, math.ceil(min_time / max(once, 1e-9)))
    return count if max_number is None else min(max_number, count)


def run_order(names: Sequence[str], repeat: int) -> list[str]:
    """The order in which ``interleave`` runs ``names`` in repeat number ``repeat``.

    Rotated by one every second repeat and reversed on odd repeats: over 2·len(names) repeats,
    every name runs in every position equally often, and after each of its neighbours.
    """
    names = list(names)
    shift = (repeat // 2) % len(names)
    rotated = names[shift:] + names[:shift]
    return rotated[::-1] if repeat % 2 else rotated


def interleave(
    calls: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: int = 1,
    settle: int = 0,
    number: int | Mapping[str, int] = 1,
    device: str | torch.device | None = "cpu",
    timer: Clock | None = None,
) -> dict[str, list[float]]:
    """Time every function of ``calls`` in ``repeats`` interleaved repeats; seconds per call.

    First each function runs ``warmup`` times untimed (one-time costs: lazy imports, allocator
    growth, thread-pool start-up), one function after the other. Then every repeat runs each
    function once in the order ``run_order`` gives: ``settle`` untimed calls, then one
    measurement of ``number`` calls (an int, or one per name) with ``time_call``. ``settle`` = 1
    suits calls of microseconds, whose cache state the previous function decides; functions that
    run for seconds need 0, which keeps the run half as long.

    Returns name → a list of ``repeats`` floats (seconds per call); sample r of every list comes
    from repeat r, so ``ratios`` of two lists pair timings of the same moment.
    """
    if not calls:
        raise ValueError("interleave needs at least one function to time")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0 or settle < 0:
        raise ValueError(f"warmup and settle must be >= 0, got {warmup} and {settle}")
    names = list(calls)
    if isinstance(number, Mapping):
        counts = {name: int(number[name]) for name in names}
    else:
        counts = dict.fromkeys(names, int(number))
    for name in names:
        for _ in range(warmup):
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in run_order(names, rep):
            (seconds,) = time_call(calls[name], repeats=1, warmup=settle, number=counts[name],
                                   device=device, timer=timer)  # fmt: skip
            samples[name].append(seconds)
    return samples


def ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Repeat-by-repeat ratios ``numerator[r] / denominator[r]`` of two lists of samples."""
    if len(numerator) != len(denominator):
        raise ValueError(
            f"ratios need samples from the same rounds; got {len(numerator)} and "
            f"{len(denominator)} samples"
        )
    return [n / d for n, d in zip(numerator, denominator, strict=True)]


def time_variants(
    calls: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    number: int | Mapping[str, int] | None = None,
    min_time: float = 5e-3,
    max_number: int = 1000,
    device: str | torch.device | None = "cpu",
    timer: Clock | None = None,
) -> pd.DataFrame:
    """Time several short functions interleaved; a tidy table, one row per (repeat, variant).

    ``interleave`` with one settling call before each measurement (module docstring), after
    ``warmup`` untimed calls of each function. ``number`` is per variant: given, or calibrated
    (``calibrate``) so a measurement lasts at least ``min_time`` seconds (at most ``max_number``
    calls).

    Returns columns repeat (0…repeats−1), position (its place in that repeat's order), variant,
    seconds (per call), number.
    """
    if not calls:
        raise ValueError("time_variants needs at least one function to time")
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    if number is None:
        number = {name: calibrate(calls[name], min_time, max_number=max_number, device=device,
                                  timer=timer) for name in names}  # fmt: skip
    counts = number if isinstance(number, Mapping) else dict.fromkeys(names, int(number))
    samples = interleave(
        calls, repeats, warmup=0, settle=1, number=counts, device=device, timer=timer
    )
    rows = [
        {"repeat": rep, "position": position, "variant": name,
         "seconds": samples[name][rep], "number": int(counts[name])}
        for rep in range(repeats)
        for position, name in enumerate(run_order(names, rep))
    ]  # fmt: skip
    return pd.DataFrame(rows)


def summarize(timings: pd.DataFrame, baseline: str = "dense") -> pd.DataFrame:
    """Per variant: seconds_median, seconds_iqr and speedup_vs_dense (one row per variant).

    ``timings`` is ``time_variants``' table. ``speedup_vs_dense`` is the median over repeats of
    ``seconds(baseline) / seconds(variant)`` taken *within* each repeat (> 1: faster than the
    baseline). The IQR is the 75th minus the 25th percentile of the seconds.
    """
    if baseline not in set(timings["variant"]):
        raise ValueError(
            f"the baseline {baseline!r} was not timed; variants: {sorted(set(timings['variant']))}"
        )
    wide = timings.pivot(index="repeat", columns="variant", values="seconds")
    per_repeat = wide.rdiv(wide[baseline], axis=0)
    order = list(dict.fromkeys(timings["variant"]))
    return pd.DataFrame(
        {
            "variant": order,
            "seconds_median": [wide[v].median() for v in order],
            "seconds_iqr": [wide[v].quantile(0.75) - wide[v].quantile(0.25) for v in order],
            "speedup_vs_dense": [per_repeat[v].median() for v in order],
        }
    )


@contextlib.contextmanager
def num_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` PyTorch CPU threads (None: unchanged); restored afterwards.

    >>> with num_threads(1):   # one thread: timings use the thread's CPU clock
    ...     timings = time_variants(calls)
    """
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
