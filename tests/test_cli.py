"""The ``ticketlab`` command line: what it writes equals what the library computes.

The commands run as subprocesses (``python -m ticketlab.cli``, and once the installed ``ticketlab``
script), each with its own ``TICKETLAB_CACHE`` and one thread. The oracle for ``ticketlab imp`` is
``ticketlab.imp.run`` called in this process with the same arguments in a fresh cache: same code,
same thread count, so every number must be equal. Help texts and bad arguments are checked by
calling ``main`` in this process (the errors come before any work; a process per case would only
add PyTorch's start-up time), and one bad argument through a subprocess for the exit status.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from ticketlab import cli

SCRIPT = Path(sys.executable).with_name("ticketlab")

IMP = [
    "imp",
    "lenet_mnist_paper",
    "--rounds",
    "1",
    "--seeds",
    "0-1",
    "--controls",
    "reinit",
    "--set",
    "steps=30",
    "--set",
    "eval_every=10",
    "--device",
    "cpu",
    "--no-progress",
]
"""A tiny IMP run: 2 seeds × (dense, then ticket and reinit at one pruned round) = 6 cells."""

LIBRARY = dict(
    rounds=1,
    seeds=[0, 1],
    controls=["reinit"],
    steps=30,
    eval_every=10,
    device="cpu",
    progress=False,
)
"""The same run as ``IMP``, as ``imp.run``'s arguments."""

PNG = b"\x89PNG\r\n\x1a\n"


def environment(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TICKETLAB_QUICK", "TICKETLAB_DEVICE")}
    return env | {"TICKETLAB_CACHE": str(cache), "TICKETLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}


def ticketlab(*args: str, cache: Path, script: bool = False) -> subprocess.CompletedProcess:
    """Run the command line in a fresh process (the installed script when ``script``)."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "ticketlab.cli"]
    return subprocess.run(
        [*command, *args], env=environment(cache), capture_output=True, text=True, timeout=600
    )


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    """``ticketlab imp`` once, into its own cache and output folder."""
    cache = tmp_path_factory.mktemp("cli-cache")
    out = tmp_path_factory.mktemp("cli-out") / "lenet"
    done = ticketlab(*IMP, "--out", str(out), cache=cache)
    assert done.returncode == 0, done.stderr
    return SimpleNamespace(cache=cache, out=out, done=done)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The oracle: ``imp.run`` in this process, one thread, in a cache of its own."""
    from ticketlab import imp

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("library-cache")))
        patch.delenv("TICKETLAB_QUICK", raising=False)
        torch.set_num_threads(1)
        try:
            return imp.run("lenet_mnist_paper", **LIBRARY)
        finally:
            torch.set_num_threads(threads)


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seeds"),
    [
        ("0-4", [0, 1, 2, 3, 4]),
        ("0,1,3", [0, 1, 3]),
        ("0-2,7", [0, 1, 2, 7]),
        ("7", [7]),
        ("3-3", [3]),
    ],
)
def test_seeds_parse_ranges_and_lists(text, seeds):
    assert cli.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["3-1", "a", "", "1,1", "-1", "0-2,2", "1.5"])
def test_bad_seeds_raise(text):
    with pytest.raises(ValueError):
        cli.parse_seeds(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("50", 50),
        ("1e-3", 1e-3),
        ("0.5", 0.5),
        ("sgd", "sgd"),
        ("true", True),
        ("False", False),
        ("none", None),
        ("100,200", (100, 200)),
        ("5,", (5,)),
        ("0.1,0.05", (0.1, 0.05)),
    ],
)
def test_set_values_parse_by_their_look(text, value):
    parsed = cli.parse_value(text)
    assert parsed == value and type(parsed) is type(value)


# -- help and bad arguments ---------------------------------------------------------------------

HELP = {
    (): ["imp", "list", "run", "cache"],
    ("imp",): [
        "--rounds",
        "--seeds",
        "--controls",
        "--mode",
        "--rewind-step",
        "--group-size",
        "--set",
        "--scheduler",
        "--workers",
        "--threads",
        "--device",
        "--cache",
        "--out",
        "--quick",
        "--no-progress",
        "RECIPE",
    ],
    ("run",): [
        "--quick",
        "--seeds",
        "--set",
        "--workers",
        "--scheduler",
        "--out",
        "--no-progress",
        "--group-size",
        "EXPERIMENT",
    ],
    ("list",): ["--quick"],
    ("cache",): ["info", "clean"],
    ("cache", "info"): ["--cache"],
    ("cache", "clean"): ["--cache", "--yes", "WHAT", "mnist"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "ticketlab")
def test_help_exits_0_and_names_the_options(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    missing = [option for option in HELP[command] if option not in text]
    assert not missing, text


def test_help_through_the_installed_script(tmp_path):
    if not SCRIPT.exists():
        pytest.skip(f"no ticketlab script next to {sys.executable} (pip install -e . makes it)")
    done = ticketlab("--help", cache=tmp_path, script=True)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in ("imp", "list", "run", "cache"))


BAD = [
    ("imp no_such_recipe", "unknown recipe 'no_such_recipe'"),
    ("run no_such_experiment", "unknown experiment 'no_such_experiment'"),
    ("run imp", "ticketlab imp RECIPE"),
    ("imp lenet_mnist_paper --seeds 3-1", "runs backwards"),
    ("imp lenet_mnist_paper --seeds a", "'a' is not one"),
    ("imp lenet_mnist_paper --seeds 0,0", "list each seed once"),
    ("imp lenet_mnist_paper --rounds -1", "argument --rounds: expected an integer >= 0"),
    ("imp lenet_mnist_paper --controls reinit,bogus", "unknown control(s) ['bogus']"),
    ("imp lenet_mnist_paper --mode sideways", "invalid choice: 'sideways'"),
    ("imp lenet_mnist_paper --group-size 0", "argument --group-size"),
    ("imp lenet_mnist_paper --set steps", "expected field=value"),
    ("imp lenet_mnist_paper --set bogus_field=1", "unknown recipe field 'bogus_field'"),
    ("imp lenet_mnist_paper --set steps=abc", "steps must be a positive int"),
    ("imp lenet_mnist_paper --set steps=5 --set steps=6", "--set steps is given twice"),
    ("imp lenet_mnist_paper --set seeds=3", "set seeds with --seeds"),
    ("imp lenet_mnist_paper --rewind-step 30 --set steps=30", "must be smaller than steps=30"),
    ("imp lenet_mnist_paper --scheduler nohost", "not a Dask scheduler address"),
    ("imp lenet_mnist_paper --scheduler tcp://host:99999", "not a Dask scheduler address"),
    ("imp lenet_mnist_paper --workers 2 --scheduler tcp://host:8786", "not allowed with"),
    ("imp lenet_mnist_paper --workers 0", "argument --workers"),
    ("imp lenet_mnist_paper --device nonsense", "--device nonsense"),
    ("run xor_tickets --set bogus=1", "xor_tickets has no setting(s) ['bogus']"),
    ("run xor_tickets --set steps=1.5", "takes an integer"),
    ("run xor_tickets --seeds 0-9", "need at least 20 seeds"),
    ("run supermask --set signed=3", "takes true or false"),
    ("run supermask --set recipe=nope", "unknown recipe 'nope'"),
    ("run supermask --set no_such_field=2", "unknown recipe field 'no_such_field'"),
    ("run sparsity_speed --seeds 0-1", "sparsity_speed takes no seeds"),
    ("cache clean --cache /", "it is the root folder"),
    ("cache clean --cache ~", "it is your home folder"),
    ("bogus", "invalid choice: 'bogus'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[a for a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the repo
    argv = [str(Path.home()) if word == "~" else word for word in argv.split()]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert captured.out == ""
    assert not any(tmp_path.iterdir())  # stopped before making --out


def test_bad_argument_exit_status_of_the_process(tmp_path):
    done = ticketlab("imp", "no_such_recipe", cache=tmp_path)
    assert done.returncode == 2
    assert "unknown recipe 'no_such_recipe'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cluster_options_need_an_executor_parameter(monkeypatch, capsys, tmp_path):
    """An experiment without ``executor=`` cannot go to a cluster: said before any work."""
    monkeypatch.chdir(tmp_path)
    assert "executor" not in inspect.signature(cli._experiments()["sparsity_speed"]).parameters
    assert cli.main(["run", "sparsity_speed", "--workers", "2"]) == 2
    assert "sparsity_speed can't run on a cluster" in capsys.readouterr().err


# -- imp ----------------------------------------------------------------------------------------


def test_imp_table_equals_the_library(imp_run, library):
    table = read_csv(imp_run.out / "table.csv")
    pd.testing.assert_frame_equal(table, library.table, check_exact=True)
    parquet = pd.read_parquet(imp_run.out / "table.parquet")
    pd.testing.assert_frame_equal(parquet, library.table, check_exact=True)
    history = read_csv(imp_run.out / "history.csv")
    pd.testing.assert_frame_equal(history, library.history, check_exact=True, check_dtype=False)
    summary = pd.read_csv(imp_run.out / "summary.csv", index_col=["round", "density"])
    expected = library.summary()
    assert list(summary.columns) == list(expected.columns)
    assert (summary.to_numpy() == expected.to_numpy())[~expected.isna().to_numpy()].all()


def test_imp_masks_have_every_seed_and_round_at_the_table_density(imp_run, library):
    masks = torch.load(imp_run.out / "masks.pt", weights_only=True)
    assert sorted(masks) == ["seed0/round0", "seed0/round1", "seed1/round0", "seed1/round1"]
    table = read_csv(imp_run.out / "table.csv")
    for (seed, round_), expected in library.masks.items():
        mask = masks[f"seed{seed}/round{round_}"]
        assert list(mask) == list(expected)
        assert all(t.dtype == torch.bool for t in mask.values())
        assert all(torch.equal(mask[n], t.cpu()) for n, t in expected.items())
        kept = sum(int(t.sum()) for t in mask.values()) / sum(t.numel() for t in mask.values())
        row = table[(table["seed"] == seed) & (table["round"] == round_)]
        kind = "dense" if round_ == 0 else "ticket"
        assert row.loc[row["kind"] == kind, "density"].item() == kept


def test_imp_writes_a_png_and_no_temporary_files(imp_run):
    assert (imp_run.out / "accuracy_vs_density.png").read_bytes()[:8] == PNG
    names = {p.name for p in imp_run.out.iterdir()}
    assert names == {
        "table.csv",
        "table.parquet",
        "history.csv",
        "summary.csv",
        "masks.pt",
        "accuracy_vs_density.png",
    }
    for name in names:
        assert str(imp_run.out / name) in imp_run.done.stdout  # the written paths are printed
    assert "from cache: 0" in imp_run.done.stdout


def test_imp_second_run_reads_the_cache(imp_run, tmp_path):
    if not SCRIPT.exists():
        pytest.skip(f"no ticketlab script next to {sys.executable} (pip install -e . makes it)")
    out = tmp_path / "again"
    cache = ["--cache", str(imp_run.cache)]  # and TICKETLAB_CACHE elsewhere: --cache wins
    done = ticketlab(*IMP, *cache, "--out", str(out), cache=tmp_path / "empty", script=True)
    assert done.returncode == 0, done.stderr
    assert "cells: 6, from cache: 6" in done.stdout, done.stdout + done.stderr
    expected = read_csv(imp_run.out / "table.csv")
    pd.testing.assert_frame_equal(read_csv(out / "table.csv"), expected, check_exact=True)


@pytest.mark.slow
def test_imp_on_two_local_workers_equals_the_serial_run(imp_run, tmp_path):
    from ticketlab import imp

    try:
        from ticketlab.distributed import connect  # noqa: F401
    except ImportError:
        pytest.skip("ticketlab.distributed.connect does not exist yet")
    if "executor" not in inspect.signature(imp.run).parameters:
        pytest.skip("imp.run takes no executor= yet")
    out = tmp_path / "workers"
    done = ticketlab(*IMP, "--workers", "2", "--out", str(out), cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "from cache: 6" in done.stdout  # the workers trained the cells; this process read them
    expected = read_csv(imp_run.out / "table.csv")
    pd.testing.assert_frame_equal(read_csv(out / "table.csv"), expected, check_exact=True)
    masks, serial = (torch.load(d / "masks.pt", weights_only=True) for d in (out, imp_run.out))
    assert all(torch.equal(masks[k][n], t) for k in serial for n, t in serial[k].items())


# -- list, run ----------------------------------------------------------------------------------


def test_list_names_the_recipes_and_experiments(tmp_path):
    from ticketlab import experiments, recipes

    done = ticketlab("list", cache=tmp_path)
    assert done.returncode == 0, done.stderr
    names = [*recipes.names(), *(n for n in experiments.__all__ if n != "ExperimentResult")]
    assert {"lenet_mnist_paper", "lenet_mnist_openlth", "xor_tickets", "supermask"} <= set(names)
    missing = [name for name in [*names, "imp"] if name not in done.stdout]
    assert not missing, done.stdout
    assert repr(recipes.get("lenet_mnist_paper", budget="full")) in done.stdout


def test_quick_selects_the_quick_budget(capsys, monkeypatch):
    from ticketlab import recipes

    monkeypatch.setenv("TICKETLAB_QUICK", "0")  # restored after the test; --quick sets it
    assert cli.main(["list"]) == 0
    assert repr(recipes.get("lenet_mnist_paper", budget="full")) in capsys.readouterr().out
    assert cli.main(["list", "--quick"]) == 0
    assert repr(recipes.get("lenet_mnist_paper", budget="quick")) in capsys.readouterr().out


def test_run_xor_writes_the_table_and_verdicts_of_the_library(tmp_path):
    from ticketlab.experiments import xor_tickets

    out = tmp_path / "xor"
    command = "run xor_tickets --quick --seeds 0-19 --set steps=60 --set large=4 --no-progress"
    done = ticketlab(*command.split(), "--out", str(out), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = xor_tickets(seeds=range(20), steps=60, large=4, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    pd.testing.assert_frame_equal(read_csv(out / "table.csv"), expected.table, check_exact=True)
    verdicts = read_csv(out / "verdicts.csv")
    assert list(verdicts["name"]) == ["large beats small", "ticket beats reinit"]
    assert list(verdicts["outcome"]) == list(expected.verdict_table()["outcome"])
    assert all(name in done.stdout for name in verdicts["name"])  # the verdicts are printed
    assert (out / "xor_tickets.png").read_bytes()[:8] == PNG


# -- cache --------------------------------------------------------------------------------------


@pytest.fixture
def cache_copy(imp_run, tmp_path) -> Path:
    """A copy of the IMP run's cache (6 cells under imp/, the MNIST subset under mnist/)."""
    copy = tmp_path / "cache"
    shutil.copytree(imp_run.cache, copy, symlinks=True)
    return copy


def test_cache_info_reports_folders_and_cells(cache_copy):
    done = ticketlab("cache", "info", "--cache", str(cache_copy), cache=cache_copy.parent)
    assert done.returncode == 0, done.stderr
    assert str(cache_copy) in done.stdout
    assert "imp/" in done.stdout and "mnist/" in done.stdout
    assert "result cells (imp/): 6 in 1 experiment folder(s)" in done.stdout
    cells = list((cache_copy / "imp").rglob("*.pt"))
    assert len(cells) == 6


def test_cache_clean_lists_without_yes_and_removes_with_it(cache_copy):
    files = sorted(p for p in cache_copy.rglob("*"))
    done = ticketlab("cache", "clean", cache=cache_copy)  # the cache from TICKETLAB_CACHE
    assert done.returncode == 1
    assert "imp/" in done.stdout and "mnist" not in done.stdout
    assert "--yes" in done.stderr
    assert sorted(p for p in cache_copy.rglob("*")) == files  # nothing removed

    done = ticketlab("cache", "clean", "--yes", cache=cache_copy)
    assert done.returncode == 0, done.stderr
    assert not (cache_copy / "imp").exists()
    assert any((cache_copy / "mnist").iterdir())  # datasets stay unless named

    done = ticketlab(
        "cache", "clean", "mnist", "--yes", "--cache", str(cache_copy), cache=cache_copy.parent
    )
    assert done.returncode == 0, done.stderr
    assert not any(cache_copy.iterdir())


def test_cache_clean_removes_links_never_their_targets(tmp_path, capsys, monkeypatch):
    cache, outside = tmp_path / "cache", tmp_path / "precious"
    (cache / "imp" / "abc-iterative").mkdir(parents=True)
    (cache / "imp" / "abc-iterative" / "cell.pt").write_bytes(b"x")
    outside.mkdir()
    (outside / "thesis.tex").write_text("keep me")
    (cache / "imp" / "link").symlink_to(outside)
    (cache / "elsewhere").symlink_to(outside)
    monkeypatch.setenv("TICKETLAB_CACHE", str(cache))

    assert cli.main(["cache", "clean", "elsewhere/thesis.tex", "--yes"]) == 2
    assert "passes through the link" in capsys.readouterr().err
    assert cli.main(["cache", "info"]) == 0
    assert "(a link; not followed)" in capsys.readouterr().out
    assert cli.main(["cache", "clean", "--yes"]) == 0
    assert not any(cache.iterdir())
    assert (outside / "thesis.tex").read_text() == "keep me"


def test_cache_clean_refuses_a_folder_that_is_not_a_cache(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["cache", "clean", "--yes", "--cache", str(tmp_path)]) == 2
    assert "not a ticketlab cache" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").exists()
    assert cli.main(["cache", "clean", "--yes", "--cache", str(tmp_path / "absent")]) == 0
    assert cli.main(["cache", "clean", "imp", "--cache", str(tmp_path)]) == 2
