"""Running the audit: one fresh process per (notebook, mode, variant), then the table.

``python -m ticketlab.audit --help`` (or ``./workbook audit``). Worker results are stored as JSON
under ``artifacts/audit/<mode>/<notebook>/`` and reused while the code that decides them is
unchanged (``code_fingerprint``); ``collect`` folds them into ``ticketlab/robustness.json`` and
``render_markdown`` into ``notebooks/ROBUSTNESS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..versions import PRESENTATION_ONLY, code_shape
from .checks import CHECKS, VARIANTS, Variant, required_variants
from .lookup import TABLE_JSON

PACKAGE = Path(__file__).resolve().parent.parent


_PRESENTATION_ONLY = {f"{name.rpartition('.')[2]}.py" for name in PRESENTATION_ONLY}
"""File names of the modules that draw and display but never compute an outcome
(``ticketlab.versions.PRESENTATION_ONLY``): editing them keeps results.

The audit package counts only through its checks' ``compute``, ``outcomes`` and ``select``, so that
editing the table's layout or the notes does not invalidate the stored runs either."""


def code_fingerprint(notebook: str) -> str:
    """Hash of the code that decides ``notebook``'s outcomes, and of the torch version.

    The package's modules (as syntax trees, so reformatting or a docstring edit keeps the stored
    runs) and the notebook's checks (``compute``, ``outcomes``, ``select``). Figures and widgets
    (``_PRESENTATION_ONLY``) are left out, so restyling a plot does not send the audit back to
    recompute hours of runs.
    """
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
    for entry in CHECKS:
        if entry.notebook != notebook:
            continue
        for function in (entry.compute, entry.outcomes, entry.select):
            if function is not None:
                digest.update(code_shape(inspect.getsource(function)).encode())
    audit = Path(__file__).resolve().parent
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in _PRESENTATION_ONLY or path.parent == audit:
            continue
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(code_shape(path.read_text()).encode())
    return digest.hexdigest()[:16]


def _result_path(out: Path, mode: str, notebook: str, variant: Variant) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in variant.name).strip("_")
    return out / mode / notebook / f"{slug}.json"


def _worker(notebook: str, variant: Variant, out_file: Path, only: Sequence[str] = ()) -> None:
    """Run the checks of ``notebook`` (all, or those in ``only``) under ``variant`` in this
    process and write their outcomes; with ``only``, into the stored record where its code is
    the same."""
    import torch

    from ..models import perturbed_init

    torch.set_num_threads(variant.threads)
    started = time.perf_counter()
    computed: dict[Callable, Any] = {}
    outcomes = {}
    with perturbed_init(variant.perturbation):
        for entry in CHECKS:
            if entry.notebook != notebook or (only and entry.id not in only):
                continue
            if entry.compute not in computed:
                computed[entry.compute] = entry.compute(variant.offset)
            part = computed[entry.compute]
            outcomes[entry.id] = entry.outcomes_of(entry.select(part) if entry.select else part)
    seconds = round(time.perf_counter() - started, 1)
    fingerprint = code_fingerprint(notebook)
    stored = _load(out_file) if only else None
    if stored and stored.get("fingerprint") == fingerprint:
        outcomes = {**stored["outcomes"], **outcomes}
        seconds += stored["seconds"]
    record = {
        "notebook": notebook,
        "variant": dataclasses.asdict(variant),
        "outcomes": outcomes,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "fingerprint": fingerprint,
        "torch": torch.__version__,
        "machine": _cpu_name(),
    }
    from ..atomic import write_atomic

    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_file, json.dumps(record, indent=1))


def _cpu_name() -> str:
    """The CPU's model name where the OS says it (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.machine()} ({os.cpu_count()} cores)"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


Job = tuple[str, str, Variant, Path, Sequence[str]]
"""(mode, notebook, variant, result file, check ids: empty for all of the notebook's)."""


def _run_jobs(jobs: Sequence[Job], cores: int, log) -> list[str]:
    """Run audit workers as subprocesses, never more threads at once than ``cores``."""
    pending, running, failures = list(jobs), [], []
    while pending or running:
        used = sum(job[2].threads for job, _ in running)
        while pending and (not running or used + pending[0][2].threads <= cores):
            job = pending.pop(0)
            mode, notebook, variant, path, only = job
            env = dict(
                os.environ,
                TICKETLAB_QUICK="1" if mode == "quick" else "0",
                TICKETLAB_CACHE=str(path.parent / "cache" / path.stem),
                OMP_NUM_THREADS=str(variant.threads),
                MKL_NUM_THREADS=str(variant.threads),
                # Idle OpenMP threads sleep instead of spinning, so that another job on the machine
                # does not slow a worker many times over; the results do not depend on it.
                OMP_WAIT_POLICY="PASSIVE",
            )
            cmd = [
                sys.executable,
                "-m",
                "ticketlab.audit",
                "_worker",
                notebook,
                variant.name,
                str(path),
                *only,
            ]
            log(f"start  {mode:5s} {notebook} [{variant.name}]")
            running.append((job, (subprocess.Popen(cmd, env=env), time.perf_counter())))
            used += variant.threads
        time.sleep(0.5)
        for item in list(running):
            job, (proc, t0) = item
            if proc.poll() is None:
                continue
            running.remove(item)
            mode, notebook, variant, _, _ = job
            status = "done " if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            took = time.perf_counter() - t0
            log(f"{status} {mode:5s} {notebook} [{variant.name}] in {took:.0f} s")
            if proc.returncode != 0:
                failures.append(f"{mode} {notebook} [{variant.name}]")
    return failures


def collect(out: Path) -> dict[str, Any]:
    """Fold every stored worker result into the table: per check, mode and outcome name."""
    table: dict[str, Any] = {"checks": {}, "variants": [v.name for v in VARIANTS]}
    fingerprints, seconds, machines = set(), {}, set()
    for mode in ("quick", "full"):
        for entry in CHECKS:
            runs = {}
            for variant in VARIANTS:
                record = _load(_result_path(out, mode, entry.notebook, variant))
                if record is None or entry.id not in record["outcomes"]:
                    continue
                runs[variant.name] = record["outcomes"][entry.id]
                fingerprints.add(record["fingerprint"])
                machines.add(record.get("machine", ""))
                seconds[(mode, entry.notebook, variant.name)] = record["seconds"]
            if not runs:
                continue
            names = list(dict.fromkeys(n for outcomes in runs.values() for n in outcomes))
            by_name = {}
            for name in names:
                per_variant = {v: outcomes.get(name, "missing") for v, outcomes in runs.items()}
                seen: dict[str, int] = {}
                for value in per_variant.values():
                    seen[value] = seen.get(value, 0) + 1
                complete = {v.name for v in required_variants(mode)} <= set(per_variant)
                by_name[name] = {
                    "outcome": per_variant.get("reference"),
                    "per_variant": per_variant,
                    "seen": seen,
                    "verdict": "fragile"
                    if len(seen) > 1
                    else ("robust" if complete else "incomplete"),
                    "checked": name in entry.checked,
                }
            table["checks"].setdefault(entry.id, {})[mode] = by_name
    table["fingerprints"] = sorted(fingerprints)
    per_notebook: dict[str, float] = {}
    for (mode, notebook, _), value in seconds.items():
        per_notebook[f"{mode} {notebook}"] = per_notebook.get(f"{mode} {notebook}", 0) + value
    table["seconds"] = per_notebook
    table["machines"] = sorted(machines)
    return table


_MODE_TITLES = {
    "quick": "TICKETLAB_QUICK=1, what the tests run",
    "full": "what learners run and the committed outputs come from",
}


def render_markdown(table: Mapping[str, Any]) -> str:
    """``notebooks/ROBUSTNESS.md``: one section per mode, one row per (check, outcome)."""
    short = {v.name: f"v{i}" for i, v in enumerate(VARIANTS)}
    lines = [
        "# Robustness of the outcomes the notebooks decide",
        "",
        "Generated by `./workbook audit` (`python -m ticketlab.audit`); do not edit by hand. Each",
        "outcome was recomputed in a fresh process per variant (`ticketlab/audit/__init__.py` says",
        "why these variants stand in for another machine). **robust**: every variant reached the",
        "same outcome; **fragile**: not. Only robust outcomes may be output-checked by a notebook",
        "(`tests/test_robustness.py`); fragile ones are shown and discussed.",
        "",
        "Variants:",
        "",
    ]
    for v in VARIANTS:
        lines.append(
            f"- `{short[v.name]}` {v.name}: {v.threads} thread(s), seeds + {v.offset}, "
            f"initial weights × (1 + {v.perturbation:g}·ε)"
            + ("" if v.core else " (extra: run with `--all-variants`; where run, it must agree)")
        )
    for mode in ("quick", "full"):
        title = _MODE_TITLES[mode]
        lines += ["", f"## {mode} mode ({title})", ""]
        header = "| check | outcome | checked | " + " | ".join(short.values()) + " | verdict |"
        lines += [header, "|" + "---|" * (len(VARIANTS) + 4)]
        if not any(mode in table["checks"].get(entry.id, {}) for entry in CHECKS):
            lines = [*lines[:-2], "Nothing audited in this mode yet."]
        not_audited = []
        for entry in CHECKS:
            found = table["checks"].get(entry.id, {}).get(mode)
            if not found:
                not_audited.append(entry.id)
                continue
            for name, row in found.items():
                cells = [row["per_variant"].get(v.name, "—") for v in VARIANTS]
                lines.append(
                    f"| {entry.id} | {name} | {'yes' if row['checked'] else 'no'} | "
                    + " | ".join(cells)
                    + f" | **{row['verdict']}** |"
                )
        if not_audited:
            lines += [
                "",
                f"Not audited in {mode} mode: "
                + ", ".join(f"`{c}`" for c in not_audited)
                + (
                    ". A full-mode variant of the whole workbook takes 18 minutes on an idle "
                    "2-core Intel Xeon and about three times that on a 2-core AMD EPYC; quick "
                    "mode is what the tests check, and a checked outcome must print the same in "
                    "both modes, so the committed full-mode run is its reference there. An "
                    "incomplete row lacks some core variants and decides nothing."
                    if mode == "full"
                    else "."
                ),
            ]
    lines += [
        "",
        "## Cost",
        "",
        "Compute seconds inside each worker, summed over the variants (two workers ran at once).",
        "",
        "| mode and notebook | seconds, all variants |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.0f} |" for k, v in sorted(table["seconds"].items())]
    lines += [
        "",
        f"Code fingerprints (one per notebook: the package and that notebook's checks): "
        f"{', '.join(table['fingerprints'])}; machine(s): "
        f"{', '.join(table['machines'])}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_worker"]:
        _, notebook, name, path, *only = args
        _worker(notebook, next(v for v in VARIANTS if v.name == name), Path(path), only)
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m ticketlab.audit",
        description="Rerun every outcome the notebooks check under the perturbations another "
        "machine would bring, and rewrite notebooks/ROBUSTNESS.md and ticketlab/robustness.json.",
    )
    notebooks = sorted({c.notebook for c in CHECKS})
    parser.add_argument(
        "--lab",
        action="append",
        default=[],
        help="audit only this notebook (a prefix such as 02; repeatable)",
    )
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        help="audit only this check, e.g. 02.lottery (its notebook's experiment; repeatable)",
    )
    parser.add_argument(
        "--mode",
        choices=("quick", "full", "both"),
        default="quick",
        help="budget to audit (default quick, what the tests run)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="only these variants (names as in the table; repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("artifacts/audit"),
        help="where worker results (and their caches) live; default artifacts/audit",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=os.cpu_count() or 1,
        help="threads to run at once across workers (default: all cores)",
    )
    parser.add_argument(
        "--all-variants", action="store_true", help="run the extra variants too (2-thread repeats)"
    )
    parser.add_argument("--force", action="store_true", help="recompute stored results too")
    parser.add_argument(
        "--render-only", action="store_true", help="only rewrite the table from stored results"
    )
    opts = parser.parse_args(args)
    known = {c.id: c.notebook for c in CHECKS}
    unknown_checks = sorted(set(opts.check) - set(known))
    if unknown_checks:
        parser.error(f"unknown check(s) {unknown_checks}; choose from {sorted(known)}")
    chosen = [n for n in notebooks if not opts.lab or any(n.startswith(p) for p in opts.lab)]
    if opts.check:
        chosen = [n for n in chosen if n in {known[c] for c in opts.check}]
    if not chosen:
        parser.error(f"--lab {opts.lab} matches no notebook; choose from {notebooks}")
    names = {v.name for v in VARIANTS}
    unknown = sorted(set(opts.variant) - names)
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {sorted(names)}")

    def variants_for(mode: str) -> list[Variant]:
        pool = VARIANTS if opts.all_variants else required_variants(mode)
        return [v for v in pool if not opts.variant or v.name in opts.variant]

    modes = ("quick", "full") if opts.mode == "both" else (opts.mode,)
    if opts.cores < 1:
        parser.error("--cores must be >= 1")

    def log(message: str) -> None:
        print(f"[audit {time.strftime('%H:%M:%S')}] {message}", flush=True)

    if not opts.render_only:
        jobs = []
        for mode in modes:
            for notebook in chosen:
                fingerprint = code_fingerprint(notebook)
                for variant in variants_for(mode):
                    path = _result_path(opts.out, mode, notebook, variant)
                    stored = _load(path)
                    wanted = [c for c in opts.check if known[c] == notebook]
                    fresh = stored and stored.get("fingerprint") == fingerprint
                    have = set(stored["outcomes"]) if fresh else set()
                    if fresh and not opts.force and (set(wanted) <= have if wanted else True):
                        log(f"cached {mode:5s} {notebook} [{variant.name}]")
                        continue
                    jobs.append((mode, notebook, variant, path, wanted))
        # Two-thread jobs first, so one-thread jobs pair up at the end.
        jobs.sort(key=lambda job: -job[2].threads)
        failures = _run_jobs(jobs, opts.cores, log)
        if failures:
            log("failed: " + "; ".join(failures))
    table = collect(opts.out)
    from ..atomic import write_atomic

    write_atomic(TABLE_JSON, json.dumps(table, indent=1, ensure_ascii=False) + "\n")
    markdown = PACKAGE.parent / "notebooks" / "ROBUSTNESS.md"
    write_atomic(markdown, render_markdown(table))
    log(f"wrote {TABLE_JSON} and {markdown}")
    return 1 if not opts.render_only and failures else 0
