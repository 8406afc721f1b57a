"""What notebooks call: the committed findings, the checked outcomes, and notes on verdicts."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .checks import check

TABLE_JSON = Path(__file__).resolve().parent.parent / "robustness.json"
"""The audit's committed findings, read by ``report`` and ``show_checked``."""


@functools.cache
def findings() -> dict[str, Any]:
    """The committed audit table (``ticketlab/robustness.json``); empty if there is none yet."""
    if not TABLE_JSON.exists():
        return {"checks": {}}
    return json.loads(TABLE_JSON.read_text())


def _mode() -> str:
    from ..config import quick

    return "quick" if quick() else "full"


def show_checked(check_id: str, obj: Any) -> None:
    """Print ``name: outcome`` for each outcome the notebook checks, in the registered order.

    Notebooks call this in their ``# NBVAL_CHECK_OUTPUT`` cells: what it prints is compared with
    the committed output when the notebook runs as a test, so it prints only outcomes that the
    audit found robust (``Check.checked``), never a number.
    """
    entry = check(check_id)
    outcomes = entry.outcomes_of(obj)
    for name in entry.checked:
        print(f"{name}: {outcomes.get(name, 'not evaluated in this run')}")


def _finding(check_id: str, name: str) -> tuple[str, dict[str, Any]] | None:
    """(mode, finding) for this run's mode, else the quick-mode finding, else None."""
    by_mode = findings()["checks"].get(check_id, {})
    for mode in dict.fromkeys((_mode(), "quick")):
        found = by_mode.get(mode, {}).get(name)
        if found is not None and found["verdict"] in ("robust", "fragile"):
            return mode, found
    return None


def explanation(check_id: str, name: str, outcome: str) -> str | None:
    """A plain note on ``outcome`` next to what the audit found at the notebook's settings.

    None when there is nothing to say (the outcome is the robust one, or it was never audited).
    Otherwise the note says that the outcome is fragile and what the audit saw, or how this run
    differs from a robust finding and why that is a result rather than an error.
    """
    located = _finding(check_id, name)
    if located is None:
        return None
    mode, found = located
    runs = sum(found["seen"].values())
    seen = ", ".join(f"{o} in {n}" for o, n in sorted(found["seen"].items()))
    where = "at this notebook's settings" if mode == _mode() else f"in {mode} mode"
    if found["verdict"] == "fragile":
        return (
            f"  Fragile: {where}, across seed sets, thread counts and rounding, the audit saw "
            f"{seen} of {runs} runs; so this outcome is shown, not checked "
            "(notebooks/ROBUSTNESS.md)."
        )
    if outcome == found["outcome"]:
        return None
    return (
        f"  Your run says {outcome!r}; {where} the audit found {found['outcome']!r} in all "
        f"{runs} runs it tried. If you changed seeds, rounds, steps or a margin, this is your "
        "result: at your settings the claim came out differently. If you changed nothing, your "
        "machine found an outcome the audit did not; please report it with your CPU and thread "
        "count."
    )


def report(check_id: str, obj: Any) -> None:
    """Print every verdict of ``obj`` and, under each, what the robustness audit says of it."""
    verdicts = getattr(obj, "verdicts", obj)
    for verdict in verdicts:
        print(verdict)
        note = explanation(check_id, verdict.claim.name, verdict.outcome)
        if note:
            print(note)
