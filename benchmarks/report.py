"""The suite's outputs: the printed table, the JSON file with every number, and RESULTS.md.

JSON layout (``SCHEMA``; ``validate`` checks it)::

    {"schema": "ticketlab-benchmarks/1", "date": ISO-8601 UTC, "mode": "quick" | "full",
     "command": str, "wall_seconds": float,
     "machine": {"cpu", "logical_cores", "torch_threads", "torch", "python", "platform",
                 "device", "cuda", "load_average_start", "load_average_end"},
     "code": {"commit", "dirty"},
     "rows": [{"group", "item", "measured", "value", "unit", "target", "met", "note"}, ...],
     "skipped": {benchmark: reason}, "errors": {benchmark: traceback},
     "details": {benchmark: {...raw samples and configuration...}}}
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import torch

from ticketlab.atomic import write_atomic

from .results import Row

__all__ = ["SCHEMA", "format_table", "machine_info", "markdown", "validate", "write_atomic"]

SCHEMA = "ticketlab-benchmarks/1"
REPO = Path(__file__).resolve().parents[1]
_TOP = {
    "schema": str,
    "date": str,
    "mode": str,
    "command": str,
    "wall_seconds": (int, float),
    "machine": dict,
    "code": dict,
    "rows": list,
    "skipped": dict,
    "errors": dict,
    "details": dict,
}
_MACHINE = (
    "cpu",
    "logical_cores",
    "torch_threads",
    "torch",
    "python",
    "platform",
    "device",
    "cuda",
    "load_average_start",
    "load_average_end",
)
_ROW = {
    "group": str,
    "item": str,
    "measured": str,
    "value": (int, float, type(None)),
    "unit": str,
    "target": str,
    "met": (bool, type(None)),
    "note": str,
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none): how busy the machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(device: torch.device) -> dict:
    """CPU model, cores, threads, versions and the compute device (its name on CUDA)."""
    cpu = _cpu_model()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu})"
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": name,
        "cuda": torch.cuda.is_available(),
        "load_average_start": load_average(),
        "load_average_end": None,
    }


def code_version() -> dict:
    """The checkout's commit and whether it has uncommitted changes (None when git can't tell)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        except OSError:
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def validate(report: dict) -> None:
    """Raise ValueError naming the first key or type that breaks the JSON layout above."""
    for key, kind in _TOP.items():
        if key not in report:
            raise ValueError(f"benchmark report lacks {key!r}")
        if not isinstance(report[key], kind):
            raise ValueError(f"benchmark report {key!r} has type {type(report[key]).__name__}")
    if report["schema"] != SCHEMA:
        raise ValueError(f"schema is {report['schema']!r}, expected {SCHEMA!r}")
    if report["mode"] not in ("quick", "full"):
        raise ValueError(f"mode must be 'quick' or 'full', got {report['mode']!r}")
    missing = [k for k in _MACHINE if k not in report["machine"]]
    if missing:
        raise ValueError(f"benchmark report machine info lacks {missing}")
    for i, row in enumerate(report["rows"]):
        if set(row) != set(_ROW):
            raise ValueError(f"row {i} has keys {sorted(row)}, expected {sorted(_ROW)}")
        for key, kind in _ROW.items():
            if not isinstance(row[key], kind):
                raise ValueError(f"row {i} ({row['item']!r}): {key!r} has the wrong type")


def _met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "–"}[met]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the Markdown cell


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (item, measured, target, met?, notes), padded to line up in a terminal."""
    header = ("Item", "Measured", "Target", "Met?", "Notes")
    cells = [header] + [
        tuple(_cell(c) for c in (r.item, r.measured, r.target or "–", _met(r.met), r.note))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *map(line, cells[1:])])


def _machine_line(machine: dict) -> str:
    load = machine["load_average_start"]
    end = machine["load_average_end"]
    busy = ""
    if load is not None:
        busy = f"; load average (1 min) {load[0]:g} at the start"
        busy += f", {end[0]:g} at the end" if end else ""
    return (
        f"{machine['device']}, {machine['logical_cores']} logical cores, torch "
        f"{machine['torch']} (threads: {machine['torch_threads']}), Python "
        f"{machine['python']}, {machine['platform']}{busy}"
    )


def markdown(report: dict) -> str:
    """RESULTS.md: the latest table with the machine, the date and how to regenerate it."""
    code = report["code"]
    commit = code["commit"] or "unknown"
    if code["dirty"]:
        commit += " (with uncommitted changes)"
    rows = [Row(**r) for r in report["rows"]]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks` (`./workbook bench`); each full run rewrites this table",
        "and keeps the sections below it (partial runs, each under its own `##` heading).",
        "Timings are ratios within one run (interleaved rounds, median), because absolute times",
        "drift on shared machines; absolute numbers below are from this run only.",
        "",
        f"- Date: {report['date']}",
        f"- Command: `{report['command']}` ({report['mode']} mode, "
        f"{report['wall_seconds'] / 60:.1f} minutes)",
        f"- Machine: {_machine_line(report['machine'])}",
        f"- Code: commit {commit}",
        "",
        format_table(rows),
        "",
        "Met? – means the row has no target, or was not judged (the note says why).",
    ]
    if report["skipped"]:
        lines += ["", "Not run: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
    if report["errors"]:
        lines += ["", "Failed: " + ", ".join(report["errors"]) + " (tracebacks in the JSON file)"]
    lines += ["", "Every raw sample is in the JSON file the command writes (`--json`)."]
    return "\n".join(lines) + "\n"


def keep_partial_runs(table: str, previous: str | None) -> str:
    """RESULTS.md after a full run: its new ``table`` (``markdown(report)``, which has no ``##``
    heading) followed by every ``##`` section of the ``previous`` file, which hold the partial
    runs and their discussion; those are written by hand and would be lost otherwise."""
    if previous is None:
        return table
    lines = previous.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), None)
    if first is None:
        return table
    return table + "\n" + "".join(lines[first:])


def to_json(report: dict) -> str:
    """The report as JSON (validated first); NaN and infinity are written as null."""
    validate(report)
    return json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n"


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
