"""``python -m benchmarks``: run the suite, print the table, write the JSON file and RESULTS.md."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch

from ticketlab.config import device as pick_device

from .report import format_table, keep_partial_runs, load_average, markdown, to_json, write_atomic
from .results import Context, Row
from .suite import ALIASES, BENCHMARKS, QUICK_SKIPS, run, select

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE.parent / "artifacts" / "benchmarks.json"
DEFAULT_RESULTS = HERE / "RESULTS.md"


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def parser() -> argparse.ArgumentParser:
    names = ", ".join(BENCHMARKS)
    aliases = "; ".join(f"{a} = {', '.join(v)}" for a, v in ALIASES.items())
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="ticketlab's speed benchmarks: a table of measured vs target, plus JSON.",
        epilog=f"Benchmarks: {names}. Aliases: {aliases}.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"reduced sizes, a smoke run of a few minutes (leaves out "
        f"{', '.join(QUICK_SKIPS)} unless --only names it)",
    )
    p.add_argument("--only", type=_names, metavar="A,B", help="run only these benchmarks")
    p.add_argument(
        "--skip",
        type=_names,
        default=[],
        metavar="A,B",
        help="leave these out, e.g. --skip imp_full,notebooks",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"where the full numbers go (default {DEFAULT_JSON.relative_to(HERE.parent)})",
    )
    p.add_argument(
        "--results",
        type=Path,
        metavar="PATH",
        help="where the Markdown summary goes (default: benchmarks/RESULTS.md for a "
        "full run; a --quick run writes none unless given)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="timing rounds per comparison (default: 2-3 quick, 3-7 full)",
    )
    p.add_argument("--device", help="torch device (default: ticketlab.device())")
    p.add_argument(
        "--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser().error(f"--repeats must be >= 1, got {args.repeats}")
    try:
        chosen, skipped = select(args.only, args.skip, args.quick)
    except ValueError as exc:
        parser().error(str(exc))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        # The IMP and notebook subprocesses read it when their torch starts.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    ctx = Context(quick=args.quick, repeats=args.repeats, device=pick_device(args.device), log=log)
    load, cores = load_average(), os.cpu_count() or 1
    if load is not None and load[0] > cores and torch.get_num_threads() > 1:
        # Seen on a 2-core machine at load 12: LeNet steps ran 12× slower with 2 threads than 1.
        log(
            f"warning: the machine is busy (load {load[0]:g} on {cores} cores); torch's "
            f"{torch.get_num_threads()} threads then wait for each other on small ops and "
            "everything slows down many times. Consider --threads 1."
        )
    args_given = argv if argv is not None else sys.argv[1:]
    command = f"python -m benchmarks {shlex.join(args_given)}".strip()
    report = run(chosen, skipped, ctx, command)

    print(format_table([Row(**r) for r in report["rows"]]))
    write_atomic(args.json, to_json(report))
    print(f"\nfull numbers: {args.json}")
    results = args.results or (None if args.quick else DEFAULT_RESULTS)
    if results is not None:
        previous = Path(results).read_text() if Path(results).exists() else None
        write_atomic(results, keep_partial_runs(markdown(report), previous))
        print(f"table, machine and date: {results}")
    if report["errors"]:
        print(f"failed: {', '.join(report['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
