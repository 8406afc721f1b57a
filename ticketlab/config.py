"""Where experiments run, how long they run, and where their results live.

Everything that depends on the environment is read here, at call time, so a notebook can flip
``TICKETLAB_QUICK`` or ``TICKETLAB_DEVICE`` and the next call sees it:

* ``TICKETLAB_DEVICE``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; overrides auto-detection.
* ``TICKETLAB_QUICK=1``: every experiment uses its quick budget (fewer steps, rounds and seeds).
* ``TICKETLAB_CACHE``: the folder for datasets and cached experiment results.
* ``TICKETLAB_THREADS``: PyTorch's thread count for this process, set when ticketlab is imported
  (``threads``); ``all`` keeps PyTorch's default (every core); unset, half the cores this
  process may use (at least one), unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` chose.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

__all__ = [
    "budget",
    "cache_dir",
    "cores",
    "default_threads",
    "device",
    "generator",
    "quick",
    "threads",
]


def device(name: str | torch.device | None = None) -> torch.device:
    """Where to compute: ``name`` if given, else ``$TICKETLAB_DEVICE``, else cuda → mps → cpu."""
    chosen = name if name is not None else os.environ.get("TICKETLAB_DEVICE") or None
    if chosen is not None:
        dev = torch.device(chosen)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {str(dev)!r} was requested but CUDA is not available here; "
                "use device='cpu' or unset TICKETLAB_DEVICE"
            )
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(
                "device 'mps' was requested but MPS is not available here; "
                "use device='cpu' or unset TICKETLAB_DEVICE"
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


def default_threads(available: int | None = None) -> int:
    """ticketlab's thread count for a process when nobody chose one: half of ``available`` cores
    (default: ``cores()``), at least one.

    Two PyTorch jobs on one machine (a notebook beside the tests, two notebooks, two workers)
    each start a thread per core by default; their OpenMP threads then wait for each other's
    descheduled threads at every parallel region and both run many times slower (10–15× on two
    cores, ``benchmarks/contention.py``). Half the cores each fits two jobs side by side, and a
    lone job loses little: the labs' networks are small (README, "Threads", has the numbers).
    """
    available = cores() if available is None else available
    return max(1, available // 2)


_CHOSEN_ELSEWHERE = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads() -> int | None:
    """Apply ticketlab's thread policy to PyTorch; the thread count set, or None when it was left
    to PyTorch. ``import ticketlab`` calls this once.

    * ``TICKETLAB_THREADS=n`` (a positive int): n threads.
    * ``TICKETLAB_THREADS=all``: PyTorch's own default (a thread per core), nothing changed.
    * unset: nothing changed if ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set (PyTorch reads
      those itself), else ``default_threads()``: half the cores, at least one.

    The thread count can change results in the last bits (how a matrix product splits its sums),
    so a run is repeatable at a fixed count; README "Threads" says which count what ran at.
    """
    value = os.environ.get("TICKETLAB_THREADS", "").strip()
    if value.lower() == "all":
        return None
    if not value:
        if any(os.environ.get(name, "").strip() for name in _CHOSEN_ELSEWHERE):
            return None
        count = min(default_threads(), torch.get_num_threads())
        torch.set_num_threads(count)
        return count
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"TICKETLAB_THREADS={value!r} is not a thread count; set it to a positive integer "
            "such as 1, or to 'all' for PyTorch's default (a thread per core)"
        )
    torch.set_num_threads(int(value))
    return int(value)


def quick() -> bool:
    """True when ``TICKETLAB_QUICK=1``: experiments shrink to their quick budget."""
    value = os.environ.get("TICKETLAB_QUICK", "0").strip().lower()
    if value not in {"", "0", "1", "false", "true", "no", "yes"}:
        raise ValueError(
            f"TICKETLAB_QUICK={value!r} is not understood; set it to 1 (quick) or 0 (full)"
        )
    return value in {"1", "true", "yes"}


def budget(*, quick, full):
    """``quick`` in quick mode, otherwise ``full``: the one switch every experiment uses."""
    return quick if _quick_mode() else full


_quick_mode = quick  # ``budget`` names its keyword ``quick``, which shadows the function


@contextlib.contextmanager
def budget_of(quick_mode: bool):
    """Within the block, ``budget`` picks as ``quick_mode`` says (``TICKETLAB_QUICK`` set, then
    restored): a unit of work in a worker runs at the budget of the process that submitted it."""
    before = os.environ.get("TICKETLAB_QUICK")
    os.environ["TICKETLAB_QUICK"] = "1" if quick_mode else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TICKETLAB_QUICK"]
        else:
            os.environ["TICKETLAB_QUICK"] = before


def cache_dir() -> Path:
    """Folder for datasets and cached results: ``$TICKETLAB_CACHE`` or the user cache folder."""
    explicit = os.environ.get("TICKETLAB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ticketlab"


def generator(seed: int, device: str | torch.device | None = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (default: cpu) seeded with ``seed``.

    Every random draw in ticketlab takes one of these, so results depend only on explicit seeds,
    never on what ran before in the same process.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return torch.Generator(
        device=torch.device(device) if device is not None else "cpu"
    ).manual_seed(seed)
