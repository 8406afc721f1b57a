"""Where experiments run, how long they run, and where their results live.

Everything that depends on the environment is read here, at call time, so a notebook can flip
``TICKETLAB_QUICK`` or ``TICKETLAB_DEVICE`` and the next call sees it:

* ``TICKETLAB_DEVICE``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; overrides auto-detection.
* ``TICKETLAB_QUICK=1``: every experiment uses its quick budget (fewer steps, rounds and seeds).
* ``TICKETLAB_CACHE``: the folder for datasets and cached experiment results.
* ``TICKETLAB_THREADS``: PyTorch's thread count for this process, set when ticketlab is imported
  (``threads``); unset, PyTorch's default (every core).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

__all__ = ["budget", "cache_dir", "device", "generator", "quick", "threads"]


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


def threads() -> int | None:
    """``$TICKETLAB_THREADS`` as a positive int, applied with ``torch.set_num_threads``; None (and
    nothing changed) when it is unset. ``import ticketlab`` calls this once.

    One thread per process is what two jobs on two cores want (README, "Threads"); the thread
    count can change results in the last bits, so it is a choice, never a silent default.
    """
    value = os.environ.get("TICKETLAB_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(
            f"TICKETLAB_THREADS={value!r} is not a thread count; set it to a positive integer "
            "such as 1, or unset it for PyTorch's default"
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
