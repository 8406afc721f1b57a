"""``ticketlab``: the workbook's experiments from a terminal or a cluster job.

    ticketlab list                                                # recipes and experiments
    ticketlab imp lenet_mnist_paper --rounds 5 --seeds 0-4 --controls reinit,random
    ticketlab imp lenet_mnist_paper --seeds 0-9 --group-size 2 --workers 4   # local Dask cluster
    ticketlab imp lenet_mnist_paper --seeds 0-9 --scheduler tcp://head:8786  # a running one
    ticketlab run xor_tickets --quick --set large=6
    ticketlab cache info
    ticketlab cache clean --yes

The commands call the library the notebooks use (``imp.run``, ``ticketlab.experiments``) with the
same result cache, so a cell trained here is read there and the other way round. Each writes its
tables (CSV, and Parquet when pyarrow is installed), its figure and what else it has to ``--out``,
every file atomically (``ticketlab.atomic``): an interrupted run leaves no half-written file.

Mistakes in the arguments (an unknown recipe, backwards seeds, a recipe field that does not exist,
...) are found before any work and exit with status 2 and one line naming the problem and the fix.
Exceptions raised once the work has begun are not translated: they are bugs or real failures, and
their tracebacks say where. Heavy modules (pandas, matplotlib, the experiments, Dask) are imported
by the commands that need them, not by ``ticketlab --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["main", "parse_seeds", "parse_value"]

PROG = "ticketlab"

KNOWN_FOLDERS = ("imp", "mnist")
"""Top-level folders of a ticketlab cache: result cells (``imp/``) and datasets (``mnist/``).
A folder holding none of them is not taken for a cache by ``cache clean``."""

DATASETS = ("mnist",)
"""Cache folders that ``cache clean`` keeps unless they are named: data, not results."""

_UMASK = 0o022
"""The process's umask, read by ``main``: the permissions the output files get."""

_RESERVED = ("seeds", "progress", "device", "executor", "group_size")
"""Arguments the commands set from their own options, never from ``--set``."""


class CommandError(Exception):
    """A command cannot go on, found before its work begins: one line on stderr, ``status``."""

    status = 1


class UsageError(CommandError):
    """A bad argument found after parsing, before any work: one line on stderr, status 2."""

    status = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: the problem, and where the options are."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- parsing values ---------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,1,3"`` → [0, 1, 3]; ``"0-2,7"`` → [0, 1, 2, 7]; ``"7"`` →
    [7] (one seed, not a count). Ranges include both ends. Raises ValueError for anything else,
    a range that runs backwards, or a repeated seed."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(
                f"seeds are non-negative integers and ranges such as 0-4 or 0,1,3; "
                f"{part.strip() or text!r} is not one"
            )
        low = int(match.group(1))
        high = low if match.group(2) is None else int(match.group(2))
        if high < low:
            raise ValueError(
                f"the seed range {part.strip()!r} runs backwards; write it low-high, "
                f"e.g. {high}-{low}"
            )
        seeds.extend(range(low, high + 1))
    repeated = sorted(s for s, n in Counter(seeds).items() if n > 1)
    if repeated:
        raise ValueError(f"the seeds {repeated} appear twice in {text!r}; list each seed once")
    return seeds


def parse_value(text: str):
    """A ``--set`` value: ``true``/``false`` → bool, ``none`` → None, an int, a float, a comma list
    → a tuple of such values (``milestones=100,200``; ``5,`` is a one-element tuple), else the
    string itself (``optimizer=sgd``)."""
    word = text.strip()
    if word.lower() in ("true", "false"):
        return word.lower() == "true"
    if word.lower() == "none":
        return None
    if "," in word:
        return tuple(parse_value(item) for item in word.split(",") if item.strip())
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(word)
    return word


def _seeds_arg(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _count(minimum: int, what: str):
    """An argparse type: an int >= ``minimum``; the message says what the number counts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum} ({what}), got {text!r}"
            )
        return value

    return parse


def _names_arg(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _assignment(text: str) -> tuple[str, str]:
    """``"steps=50"`` → ("steps", "50"); the value is parsed where its type is known."""
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected field=value (e.g. --set steps=50), got {text!r}"
        )
    return key, value


_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def _address(text: str) -> str:
    """A Dask scheduler address, ``[scheme://]host:port`` (tcp:// when no scheme is given)."""
    match = re.fullmatch(
        r"(?:(?P<scheme>[a-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d+)",
        text.strip(),
    )
    if (
        match is None
        or match["scheme"] not in (None, *_SCHEMES)
        or not 0 < int(match["port"]) < 65536
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Dask scheduler address; write it as tcp://host:8786 "
            f"(the address the scheduler prints when it starts)"
        )
    return f"{match['scheme'] or 'tcp'}://{match['host']}:{match['port']}"


# -- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``ticketlab`` parser with its subcommands (each keeps itself in ``parser``)."""
    parser = _Parser(
        prog=PROG,
        description="Lottery-ticket experiments from the command line: iterative magnitude "
        "pruning, the labs' experiments, and the result cache they share with the notebooks.",
        epilog="Run 'ticketlab COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    imp = commands.add_parser(
        "imp",
        help="iterative magnitude pruning of a recipe, with controls (imp.run)",
        description="Iterative magnitude pruning (ticketlab.imp.run): train, prune, rewind, "
        "repeat, for every seed, with the chosen controls trained at each round's mask. Every "
        "cell is cached as soon as it is trained: a rerun reads it, a killed run resumes. "
        "Writes table.csv/.parquet, history.csv, summary.csv, masks.pt and "
        "accuracy_vs_density.png to --out.",
    )
    imp.add_argument("recipe", metavar="RECIPE", help="a recipe preset (see 'ticketlab list')")
    imp.add_argument(
        "--rounds",
        type=_count(0, "pruning rounds after the dense round 0"),
        metavar="N",
        help="pruning rounds after the dense round 0 (default: 3 quick, 10 full)",
    )
    _seeds_option(imp, "one IMP run per seed (default: 0)")
    imp.add_argument(
        "--controls",
        type=_names_arg,
        default=[],
        metavar="NAMES",
        help="controls trained at every round's mask, comma-separated, e.g. reinit,random "
        "(ticketlab.rewinding.CONTROLS; default: none)",
    )
    imp.add_argument(
        "--mode",
        choices=("iterative", "one_shot"),
        default="iterative",
        help="iterative: each round prunes the previous ticket; one_shot: each round prunes "
        "the dense network (default: iterative)",
    )
    imp.add_argument(
        "--rewind-step",
        type=_count(0, "the training step survivors are reset to"),
        metavar="K",
        help="reset the survivors to their weights at step K (default: the recipe's, usually 0)",
    )
    _group_size_option(imp)
    _set_option(imp, "a recipe field, e.g. --set steps=500 --set prune_scope=global")
    _cluster_options(imp)
    _common_options(imp)
    imp.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="the ticketlab cache: datasets and cells (default: $TICKETLAB_CACHE or "
        "~/.cache/ticketlab); workers on a cluster must share it",
    )
    imp.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write (default: results/RECIPE-MODE)"
    )
    imp.set_defaults(handler=_imp, parser=imp)

    listing = commands.add_parser(
        "list",
        help="the recipe presets and the experiments",
        description="The recipe presets (at the current budget: full, or quick with --quick or "
        "TICKETLAB_QUICK=1) and the experiments 'ticketlab run' runs, with their settings.",
    )
    listing.add_argument("--quick", action="store_true", help="show the quick budget's recipes")
    listing.set_defaults(handler=_list, parser=listing)

    run = commands.add_parser(
        "run",
        help="one of the labs' experiments (ticketlab.experiments), with its verdicts",
        description="Run an experiment of ticketlab.experiments (see 'ticketlab list') and "
        "print its verdicts: the pre-registered claims evaluated on its table. Writes "
        "table.csv/.parquet, verdicts.csv and EXPERIMENT.png to --out.",
    )
    run.add_argument("experiment", metavar="EXPERIMENT", help="an experiment's name")
    _seeds_option(run, "the experiment's seeds (default: its budget's)")
    _group_size_option(run)
    _set_option(
        run,
        "a keyword argument of the experiment, or a field of its recipe, e.g. --set steps=50 "
        "--set density=0.1,0.05",
    )
    _cluster_options(run)
    _common_options(run)
    run.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="the ticketlab cache (default: $TICKETLAB_CACHE or ~/.cache/ticketlab)",
    )
    run.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write (default: results/EXPERIMENT)"
    )
    run.set_defaults(handler=_run, parser=run)

    cache = commands.add_parser(
        "cache",
        help="what the result cache holds, and removing it",
        description="Inspect or clean the cache shared by the notebooks and the command line.",
    )
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = actions.add_parser(
        "info",
        help="where the cache is, its folders' sizes, and its result cells",
        description="Where the cache is, the size and file count of each top-level folder, and "
        "the result cells per experiment under imp/.",
    )
    _cache_option(info)
    info.set_defaults(handler=_cache_info, parser=info)
    clean = actions.add_parser(
        "clean",
        help="remove cached results (datasets only when named)",
        description="Remove folders of the cache: by default everything but the downloaded "
        "datasets (mnist/, removed only when named). Without --yes, only lists what it would "
        "remove. Links are removed, never followed.",
    )
    _cache_option(clean)
    clean.add_argument(
        "what",
        nargs="*",
        metavar="WHAT",
        help="folders to remove, relative to the cache: imp, mnist, imp/KEY "
        "(default: all but mnist)",
    )
    clean.add_argument("--yes", action="store_true", help="really remove them")
    clean.set_defaults(handler=_cache_clean, parser=clean)
    return parser


def _seeds_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--seeds",
        type=_seeds_arg,
        metavar="SEEDS",
        help=f"{what}: a range 0-4, a list 0,1,3, or both (0-2,7)",
    )


def _group_size_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group-size",
        type=_count(1, "seeds per population and unit of work"),
        metavar="G",
        help="seeds trained together as one unit of work (default: all of them); on a "
        "cluster, the units run in parallel. The results depend on G in the last bits, never "
        "on the number of workers",
    )


def _set_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help=f"{what}; repeatable. Values are ints, floats, true/false, comma lists, or text",
    )


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_count(1, "local Dask worker processes"),
        metavar="N",
        help="run the units of work on a local Dask cluster of N worker processes",
    )
    where.add_argument(
        "--scheduler",
        type=_address,
        metavar="ADDR",
        help="run the units of work on a running Dask scheduler, e.g. tcp://host:8786 (its "
        "workers must share the cache folder)",
    )


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=_count(1, "PyTorch threads"),
        metavar="T",
        help="PyTorch threads in this process and each local worker (default: "
        "$TICKETLAB_THREADS, else half the cores; 1 per local worker)",
    )
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:1 or mps (default: $TICKETLAB_DEVICE, else the best)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick budget (as TICKETLAB_QUICK=1)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="the cache folder (default: $TICKETLAB_CACHE or ~/.cache/ticketlab)",
    )


# -- the entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); returns the exit status: 0 done,
    1 not done (e.g. ``cache clean`` without ``--yes``), 2 a bad argument, 130 interrupted."""
    global _UMASK
    _UMASK = os.umask(0o022)  # read (it can only be set) while no other thread creates files
    os.umask(_UMASK)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) and argparse's own errors (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args)
    except CommandError as error:
        print(f"{args.parser.prog}: error: {error}", file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished cells are cached, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (| head): the files are written already
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit flush does not fail again
        return 1


def _environment(args: argparse.Namespace) -> None:
    """Apply the options that act through the environment, before anything reads it: the budget
    (``config.budget`` reads TICKETLAB_QUICK at call time), the cache folder and the threads
    (inherited by local Dask workers, which start after this)."""
    if getattr(args, "quick", False):
        os.environ["TICKETLAB_QUICK"] = "1"
    if getattr(args, "cache", None) is not None:
        os.environ["TICKETLAB_CACHE"] = str(args.cache.expanduser().absolute())
    if args.handler in (_imp, _run):
        import matplotlib

        matplotlib.use("Agg")  # figures are files here; chosen before any figure exists
    if getattr(args, "threads", None) is not None:
        import torch

        os.environ["TICKETLAB_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)  # ticketlab read TICKETLAB_THREADS on import already


def _check_device(name: str | None) -> None:
    from .config import device

    if name is None:
        return
    try:
        device(name)
    except RuntimeError as error:  # an unknown name, or CUDA/MPS missing here
        raise UsageError(f"--device {name}: {error}") from None


def _check_cluster(args: argparse.Namespace, function, what: str) -> bool:
    """Whether the run goes to a cluster; a UsageError if ``function`` cannot take one."""
    if args.workers is None and args.scheduler is None:
        return False
    if "executor" not in inspect.signature(function).parameters:
        raise UsageError(
            f"{what} can't run on a cluster (it takes no executor=); drop --workers/--scheduler"
        )
    try:
        from .distributed import connect  # noqa: F401
    except ImportError as error:
        raise UsageError(
            f"cluster runs need ticketlab.distributed and Dask ({error}); "
            "pip install 'dask[distributed]', or drop --workers/--scheduler"
        ) from None
    return True


@contextlib.contextmanager
def _executor(args: argparse.Namespace, cluster: bool) -> Iterator[object]:
    """None for this process, or a Dask Client (``distributed.connect``) for the block: a local
    cluster of ``--workers`` processes, or the scheduler at ``--scheduler``."""
    if not cluster:
        yield None
        return
    from .distributed import connect

    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(
                connect(scheduler=args.scheduler, workers=args.workers, threads=args.threads or 1)
            )
        except OSError as error:  # an unreachable scheduler: a timeout or a refused connection
            where = args.scheduler or "a local cluster"
            raise CommandError(
                f"cannot connect to {where} ({error}); is the scheduler running, and is the "
                "address the one it printed?"
            ) from None
        link = None
        with contextlib.suppress(Exception):  # a scheduler without a dashboard raises on lookup
            link = client.dashboard_link
        if link:
            print(f"Dask dashboard: {link}", file=sys.stderr)
        yield client


def _settings(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``--set`` pairs as a dict of texts; a field set twice, or one that a command option sets,
    is an error."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise UsageError(f"--set {key} is given twice; keep one")
        if key in _RESERVED:
            option = "--no-progress" if key == "progress" else f"--{key.replace('_', '-')}"
            if key == "executor":
                option = "--workers or --scheduler"
            raise UsageError(f"set {key} with {option}, not --set")
        out[key] = value
    return out


def _prepare_out(out: Path) -> Path:
    """Create the output folder now, so that a bad --out fails before the work, not after it."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"cannot create --out {out} ({error.strerror}); name another folder"
        ) from None
    return out


# -- imp --------------------------------------------------------------------------------------


def _imp(args: argparse.Namespace) -> int:
    """``ticketlab imp``: validate everything, run ``imp.run``, write its outputs."""
    _environment(args)
    from . import imp, recipes
    from .rewinding import CONTROLS

    overrides = {key: parse_value(text) for key, text in _settings(args.set).items()}
    if args.rewind_step is not None and "rewind_step" in overrides:
        raise UsageError("the rewind step is given twice; use --rewind-step or --set rewind_step")
    if args.recipe not in recipes.names():
        raise UsageError(
            f"unknown recipe {args.recipe!r}; choose one of {recipes.names()} (ticketlab list)"
        )
    try:
        extra = {} if args.rewind_step is None else {"rewind_step": args.rewind_step}
        recipe = recipes.get(args.recipe, **overrides, **extra)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--set: {error}") from None
    unknown = [c for c in args.controls if c not in CONTROLS]
    if unknown:
        raise UsageError(f"unknown control(s) {unknown}; choose from {list(CONTROLS)}")
    if recipe.prune.rewind_step >= recipe.train.steps:
        raise UsageError(
            f"the rewind step {recipe.prune.rewind_step} must be smaller than steps="
            f"{recipe.train.steps}; lower --rewind-step or raise --set steps"
        )
    _check_device(args.device)
    cluster = _check_cluster(args, imp.run, "imp")
    out = _prepare_out(args.out or Path("results") / f"{args.recipe}-{args.mode}")

    kwargs = dict(
        rounds=args.rounds,
        controls=args.controls,
        mode=args.mode,
        rewind_step=args.rewind_step,
        group_size=args.group_size,
        device=args.device,
        progress=not args.no_progress,
        **overrides,
    )
    if args.seeds is not None:
        kwargs["seeds"] = args.seeds
    if args.cache is not None:  # explicit, so that workers elsewhere get the same folder
        kwargs["cache_dir"] = args.cache.expanduser().absolute() / "imp"
    with _executor(args, cluster) as executor:
        if executor is not None:
            kwargs["executor"] = executor
        result = imp.run(args.recipe, **kwargs)

    written: list[Path] = []
    _write_table(out / "table", result.table, written)
    _write(out / "history.csv", result.history.to_csv(index=False), written)
    _write(out / "summary.csv", result.summary().to_csv(), written)
    _write(out / "masks.pt", _masks_bytes(result.masks), written)
    _write(out / "accuracy_vs_density.png", _png(result.plot()), written)
    print(repr(result))
    print(f"cells: {len(result.table)}, from cache: {result.cached_cells}")
    print("\ntest accuracy (%), mean over seeds:")
    print(result.summary().to_string())
    _print_written(written)
    return 0


def _masks_bytes(masks) -> bytes:
    """``torch.save`` of {"seed{s}/round{r}": {parameter name: bool tensor on the CPU}}."""
    import torch

    payload = {
        f"seed{seed}/round{round_}": {n: t.detach().to("cpu", torch.bool) for n, t in m.items()}
        for (seed, round_), m in sorted(masks.items())
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


# -- run --------------------------------------------------------------------------------------


def _experiments() -> dict[str, object]:
    """The experiments ``ticketlab run`` runs: the functions ``ticketlab.experiments`` exports."""
    from . import experiments

    found = {name: getattr(experiments, name) for name in experiments.__all__}
    return {name: f for name, f in found.items() if inspect.isfunction(f)}


def _run(args: argparse.Namespace) -> int:
    """``ticketlab run``: validate the experiment's arguments, run it, write its outputs."""
    _environment(args)
    name = args.experiment
    if name == "imp":
        raise UsageError("imp has its own command: ticketlab imp RECIPE (ticketlab imp --help)")
    available = _experiments()
    if name not in available:
        raise UsageError(
            f"unknown experiment {name!r}; choose one of {sorted(available)} (ticketlab list)"
        )
    experiment = available[name]
    kwargs = _experiment_arguments(name, experiment, args)
    _check_device(args.device)
    cluster = _check_cluster(args, experiment, name)
    out = _prepare_out(args.out or Path("results") / name)

    with _executor(args, cluster) as executor:
        if executor is not None:
            kwargs["executor"] = executor
        result = experiment(**kwargs)

    written: list[Path] = []
    _write_table(out / "table", result.table, written)
    verdicts = result.verdict_table()
    _write(out / "verdicts.csv", verdicts.to_csv(index=False), written)
    try:
        figure = result.plot()
    except NotImplementedError as error:  # an experiment without a default figure
        print(f"no figure: {error}", file=sys.stderr)
    else:
        _write(out / f"{name}.png", _png(figure), written)
    print(repr(result))
    print("\nverdicts:")
    print(verdicts.to_string(index=False) if len(verdicts) else "(no claims evaluated)")
    _print_written(written)
    return 0


def _experiment_arguments(name: str, experiment, args: argparse.Namespace) -> dict:
    """The keyword arguments of ``experiment`` from the options, checked against its signature:
    named parameters by name (a float parameter takes an int too), the rest as fields of its
    recipe where it takes ``**overrides`` (checked with ``recipes.get``)."""
    from . import recipes

    parameters = inspect.signature(experiment).parameters
    named = {p for p, spec in parameters.items() if spec.kind is not spec.VAR_KEYWORD}
    variadic = any(spec.kind is spec.VAR_KEYWORD for spec in parameters.values())
    settings = _settings(args.set)
    kwargs: dict[str, object] = {}
    for option, key, value in (
        ("--seeds", "seeds", args.seeds),
        ("--group-size", "group_size", args.group_size),
        ("--device", "device", args.device),
    ):
        if value is None:
            continue
        if key not in named:
            raise UsageError(f"{name} takes no {key}; drop {option}")
        kwargs[key] = value
    if args.seeds is not None:
        # The verdicts need this many seeds; the experiment would find out only after training.
        claims = getattr(sys.modules.get(experiment.__module__), "CLAIMS", ())
        needed = max((claim.min_seeds for claim in claims), default=0)
        if len(args.seeds) < needed:
            raise UsageError(
                f"{name}'s claims need at least {needed} seeds for a verdict, --seeds gives "
                f"{len(args.seeds)}; give e.g. --seeds 0-{needed - 1}"
            )
    if "progress" in named:
        kwargs["progress"] = not args.no_progress
    fields = {k: parse_value(v) for k, v in settings.items() if k not in named}
    if fields and not variadic:
        choices = sorted(named - set(_RESERVED))
        raise UsageError(f"{name} has no setting(s) {sorted(fields)}; its settings: {choices}")
    for key, value in settings.items():
        if key in named:
            kwargs[key] = _coerce(name, parameters[key], value)
    if fields or "recipe" in kwargs:
        # The recipe and its overridden fields, built now as the experiment will build them:
        # an unknown preset or field, or a value a field refuses, fails here and not mid-run.
        recipe = kwargs.get("recipe", parameters["recipe"].default if "recipe" in named else None)
        try:
            if recipe is None:
                recipes.Recipe().replace(**fields)
            else:
                recipes.get(recipe, **fields)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--set: {error}") from None
        kwargs.update(fields)
    return kwargs


def _coerce(name: str, parameter: inspect.Parameter, text: str):
    """The ``--set`` ``text`` for ``parameter`` of experiment ``name``, by the type read from its
    default or, for a None default, from its annotation (``int | None``): text as is for a str,
    else ``parse_value``, an int becoming a float where a float is expected. A value of another
    type is an error. Parameters of other types (a density or a list of them, a recipe name or
    a Recipe) take any value ``parse_value`` gives."""
    kind = _kind(parameter)
    key = parameter.name
    if kind is str:
        return text
    value = parse_value(text)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not None and type(value) is not kind:
        what = {bool: "true or false", int: "an integer", float: "a number"}[kind]
        raise UsageError(f"--set {key}= takes {what} for {name}, got {value!r}")
    return value


def _kind(parameter: inspect.Parameter) -> type | None:
    """bool, int, float or str when ``parameter`` takes only that (or None), else None."""
    if parameter.default is not None and parameter.default is not parameter.empty:
        kind = type(parameter.default)
        return kind if kind in (bool, int, float, str) else None
    annotation = parameter.annotation
    if not isinstance(annotation, str):  # postponed annotations are strings; others: no guess
        annotation = getattr(annotation, "__name__", "")
    names = {part.strip() for part in annotation.split("|")} - {"None"}
    kinds = {"bool": bool, "int": int, "float": float, "str": str}
    return kinds.get(names.pop()) if len(names) == 1 else None


# -- list -------------------------------------------------------------------------------------

_OPTIONS = (("--seeds", "seeds"), ("--group-size", "group_size"), ("--device", "device"),
            ("--workers/--scheduler", "executor"))  # fmt: skip
"""The options of ``ticketlab run`` that exist for an experiment taking the parameter named."""


def _list(args: argparse.Namespace) -> int:
    """``ticketlab list``: the recipe presets at the current budget, then the experiments."""
    _environment(args)
    from . import recipes
    from .config import quick

    print(f"recipes (ticketlab imp RECIPE), {'quick' if quick() else 'full'} budget:")
    width = max(len(n) for n in recipes.names())
    for name in recipes.names():
        print(f"  {name:<{width}}  {recipes.get(name)!r}")
    print("\nexperiments (ticketlab run EXPERIMENT --set NAME=VALUE ...):")
    print(f"  {'imp':<24}  iterative magnitude pruning: its own command, ticketlab imp RECIPE")
    for name, function in sorted(_experiments().items()):
        doc = (inspect.getdoc(function) or "").split("\n")[0]
        parameters = inspect.signature(function).parameters
        settings = [
            f"{p} (recipe fields)" if spec.kind is spec.VAR_KEYWORD else p
            for p, spec in parameters.items()
            if p not in _RESERVED
        ]
        options = [option for option, key in _OPTIONS if key in parameters]
        print(f"  {name:<24}  {doc}")
        print(f"  {'':<24}  --set: {', '.join(settings)}")
        print(f"  {'':<24}  options: {', '.join(options) or 'none'}")
    return 0


# -- cache ------------------------------------------------------------------------------------


def _cache_root(args: argparse.Namespace) -> tuple[Path, str]:
    """The cache folder and where it came from (--cache, TICKETLAB_CACHE, or the default)."""
    from .config import cache_dir

    if args.cache is not None:
        return args.cache.expanduser().absolute(), "--cache"
    source = "TICKETLAB_CACHE" if os.environ.get("TICKETLAB_CACHE") else "default"
    return cache_dir().absolute(), source


def _usage(path: Path) -> tuple[int, int]:
    """(files, bytes) at ``path``, links counted as files and never followed."""
    if path.is_symlink() or not path.is_dir():
        return 1, path.lstat().st_size
    files = size = 0
    for folder, _, names in os.walk(path, followlinks=False):
        for entry in names:
            files += 1
            with contextlib.suppress(OSError):  # removed meanwhile
                size += os.lstat(os.path.join(folder, entry)).st_size
    return files, size


def _label(root: Path, path: Path) -> str:
    """``path`` relative to the cache, a folder with a trailing slash, a link with its target."""
    text = path.relative_to(root).as_posix()
    if path.is_symlink():
        return f"{text} -> {os.readlink(path)} (a link; not followed)"
    return f"{text}/" if path.is_dir() else text


def _cache_info(args: argparse.Namespace) -> int:
    """``ticketlab cache info``: the cache folder, its top-level folders, its result cells."""
    from .cache import _size as human

    root, source = _cache_root(args)
    print(f"cache: {root} (from {source})")
    if not root.is_dir():
        print(f"it {'is not a folder' if root.exists() else 'does not exist yet'}: nothing cached")
        return 0
    entries = sorted(root.iterdir())
    if not entries:
        print("it is empty")
        return 0
    rows = [(_label(root, p), *_usage(p)) for p in entries]
    width = max(len("total"), *(len(r[0]) for r in rows))
    print(f"  {'folder':<{width}}  {'files':>7}  size")
    for label, files, size in rows:
        print(f"  {label:<{width}}  {files:>7}  {human(size)}")
    total_files, total_size = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"  {'total':<{width}}  {total_files:>7}  {human(total_size)}")
    if not any((root / known).exists() for known in KNOWN_FOLDERS):
        print(f"(none of ticketlab's folders {list(KNOWN_FOLDERS)} is here: is this the cache?)")
    experiments = _cells(root / "imp")
    total = sum(n for _, n, _ in experiments)
    print(f"\nresult cells (imp/): {total} in {len(experiments)} experiment folder(s)")
    for folder, count, recipe in experiments:
        print(f"  {folder}: {count} cells  ({recipe})")
    return 0


def _cells(imp: Path) -> list[tuple[str, int, str]]:
    """Per experiment folder under ``imp``: its name, its cells (``*.pt`` payloads) and the
    recipe string its manifests name (``ticketlab.cache``)."""
    import json

    if imp.is_symlink() or not imp.is_dir():
        return []
    out = []
    for folder in sorted(p for p in imp.iterdir() if p.is_dir() and not p.is_symlink()):
        payloads = [
            Path(parent, name)
            for parent, _, names in os.walk(folder, followlinks=False)
            for name in names
            if name.endswith(".pt") and not name.startswith(".")
        ]
        recipe = "no manifest"
        for payload in payloads[:1]:
            with contextlib.suppress(OSError, ValueError):
                recipe = (
                    json.loads(payload.with_suffix(".json").read_text())["recipe"] or "defaults"
                )
        out.append((f"imp/{folder.name}", len(payloads), recipe))
    return out


def _cache_clean(args: argparse.Namespace) -> int:
    """``ticketlab cache clean``: list, and with --yes remove, folders of the cache."""
    from .cache import _size as human

    root, _ = _cache_root(args)
    resolved = root.resolve()
    forbidden = {
        Path(resolved.anchor): "the root folder",
        Path.home().resolve(): "your home folder",
    }
    for place, what in forbidden.items():
        if resolved == place:
            raise UsageError(
                f"refusing to clean {root}: it is {what}, not a cache; point --cache or "
                "TICKETLAB_CACHE at the ticketlab cache"
            )
    if not root.is_dir():
        print(f"nothing to remove: {root} does not exist")
        return 0
    entries = sorted(root.iterdir())
    if entries and not any((root / known).is_dir() for known in KNOWN_FOLDERS):
        raise UsageError(
            f"refusing to clean {root}: it holds none of ticketlab's folders "
            f"{list(KNOWN_FOLDERS)}, so it is not a ticketlab cache; check --cache/TICKETLAB_CACHE"
        )
    if args.what:
        targets = [_target(root, what) for what in args.what]
    else:
        targets = [path for path in entries if path.name not in DATASETS]
    # Each once, and none inside another (imp and imp/KEY: imp).
    targets = [t for t in dict.fromkeys(targets) if not any(o in t.parents for o in targets)]
    if not targets:
        print(f"nothing to remove in {root}")
        return 0
    verb = "removing" if args.yes else "would remove"
    print(f"{verb} from {root}:")
    for path in targets:
        files, size = _usage(path)
        print(f"  {_label(root, path)}  ({files} files, {human(size)})")
        if args.yes:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)  # removes links inside, never what they point to
    if not args.yes:
        print(f"{PROG} cache clean: nothing removed; add --yes to remove these", file=sys.stderr)
        return 1
    return 0


def _target(root: Path, what: str) -> Path:
    """The cache entry ``what`` names (a path relative to the cache), checked to lie inside it
    without passing through a link."""
    relative = Path(what)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts or what in (".", ""):
        raise UsageError(f"{what!r} is not a folder of the cache; name one such as imp or mnist")
    path = root
    for part in relative.parts:
        if path != root and path.is_symlink():
            raise UsageError(f"{what!r} passes through the link {path}; the cache is not followed")
        path = path / part
    if not os.path.lexists(path):
        present = sorted(p.name for p in root.iterdir())
        raise UsageError(f"the cache holds no {what!r}; it holds {present}")
    return path


# -- writing ----------------------------------------------------------------------------------


def _write(path: Path, content: str | bytes, written: list[Path]) -> None:
    """Replace ``path`` with ``content`` atomically, with the permissions of a file opened
    normally (the temporary file it was written as is private to its owner)."""
    from .atomic import write_atomic

    write_atomic(path, content)
    path.chmod(0o666 & ~_UMASK)
    written.append(path)


def _write_table(stem: Path, table, written: list[Path]) -> None:
    """``stem``.csv, and ``stem``.parquet when pyarrow is installed (said on stderr when not)."""
    _write(stem.with_suffix(".csv"), table.to_csv(index=False), written)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print(
            f"pyarrow is not installed: wrote {stem.name}.csv only "
            f"(pip install pyarrow for {stem.name}.parquet)",
            file=sys.stderr,
        )
        return
    buffer = io.BytesIO()
    try:
        table.to_parquet(buffer, index=False)
    except (TypeError, ValueError, NotImplementedError) as error:  # columns Arrow cannot store
        message = f"{stem.name}.parquet not written ({error}); {stem.name}.csv has the table"
        print(message, file=sys.stderr)
        return
    _write(stem.with_suffix(".parquet"), buffer.getvalue(), written)


def _png(figure) -> bytes:
    """``figure`` rendered as PNG bytes (with Agg, the backend ``_environment`` chose)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _print_written(written: list[Path]) -> None:
    print("\nwrote:")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    sys.exit(main())
