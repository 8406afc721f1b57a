"""ticketlab.imp on a damaged, interrupted or shared cache: every way of getting to the end gives,
bit for bit, the table of one uninterrupted run.

The oracle is always a run of the same experiment that nothing interrupted, in a fresh cache.
Runs in other processes use one thread (``TICKETLAB_THREADS=1``), as does their reference: a
thread count changes results in the last bits, and these tests compare every bit.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ticketlab import cache as cache_module
from ticketlab.cache import CacheError, CacheWarning
from ticketlab.imp import run
from ticketlab.recipes import DataSpec, ModelSpec, PruneSpec, Recipe
from ticketlab.training import TrainConfig

XOR = Recipe(
    model=ModelSpec("xor_mlp", hidden=16, activation="tanh"),
    data=DataSpec("xor", noise=0.2),
    train=TrainConfig(steps=30, batch_size=4, optimizer="sgd", lr=0.2, eval_every=10),
    prune=PruneSpec(0.2, layer_rates={"out.weight": 0.1}),
)
# Two seeds, two controls, two rounds: 2 dense cells and two populations of 6. Population
# training forced, so these tests hold wherever a population would not be the default.
RUN = dict(rounds=2, seeds=[0, 1], controls=["random", "sign"], population=True, progress=False)


def assert_identical(a, b) -> None:
    """Every number of two ``ImpResult``s equal, bit for bit: table, curves and masks."""
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    assert a.masks.keys() == b.masks.keys()
    assert all(a.masks[key] == b.masks[key] for key in a.masks)


def cells(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.pt"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    return root, run(XOR, cache_dir=root, **RUN)


def copy_of(root: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(root, tmp_path / "cache")
    return tmp_path / "cache"


def test_losing_any_single_cell_and_rerunning_gives_the_same_bits(finished, tmp_path):
    root, reference = finished
    names = [p.relative_to(root) for p in cells(root)]
    assert len(names) == 14
    for i, name in enumerate(names):
        copy = copy_of(root, tmp_path / str(i))
        (copy / name).unlink()
        (copy / name.with_suffix(".json")).unlink()
        again = run(XOR, cache_dir=copy, **RUN)
        assert_identical(again, reference)
        assert (copy / name).exists(), name  # stored again
        # Round 0 cells train alone here only if their population is one seed: it is two.
        assert again.cached_cells == (12 if "round00" in str(name) else 8), name


def test_the_population_a_cell_was_trained_in_is_part_of_its_identity(finished, tmp_path):
    """Another grouping of the same seeds is another experiment in the last bits: its cells lie
    elsewhere and never stand in for these."""
    root, reference = finished
    copy = copy_of(root, tmp_path)
    alone = run(XOR, cache_dir=copy, group_size=1, **RUN)
    assert alone.cached_cells == 0
    again = run(XOR, cache_dir=copy, **RUN)
    assert again.cached_cells == 14
    assert_identical(again, reference)
    folders = {p.relative_to(copy).parts[2] for p in cells(copy)}
    assert len(folders) == 6  # per grouping: round 0's population and the later rounds'


def test_runs_sharing_a_process_do_not_change_each_others_results(finished, tmp_path):
    _, reference = finished
    run(XOR, cache_dir=tmp_path / "other", rounds=1, seeds=[5, 6, 7], controls=["reinit"],
        population=True, progress=False, lr=0.1)  # fmt: skip
    assert_identical(run(XOR, cache_dir=tmp_path / "again", **RUN), reference)


def test_group_size_is_checked_before_anything_runs(tmp_path):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="group_size must be an int >= 1"):
            run(XOR, cache_dir=tmp_path, group_size=bad, **RUN)
    assert not any(tmp_path.iterdir())


# -- layout damage inside a run ----------------------------------------------------------------


def damage_and_rerun(finished, tmp_path, damage, warning: str):
    root, reference = finished
    copy = copy_of(root, tmp_path)
    damage(next(copy.iterdir()))
    with pytest.warns(CacheWarning, match=warning):
        again = run(XOR, cache_dir=copy, **RUN)
    assert_identical(again, reference)
    return again


def test_a_folder_where_a_cell_should_be(finished, tmp_path):
    def folder_for_file(experiment):
        (path,) = experiment.glob("both_modes/population-*/seed1/round01_sign.pt")
        path.unlink()
        path.mkdir()

    damage_and_rerun(finished, tmp_path, folder_for_file, "a folder stands where")


def test_a_file_where_a_seed_folder_should_be(finished, tmp_path):
    def file_for_folder(experiment):
        import shutil

        (folder,) = experiment.glob("both_modes/population-*/seed1/round01_ticket.pt")
        shutil.rmtree(folder.parent)
        folder.parent.write_text("not a folder")

    damage_and_rerun(finished, tmp_path, file_for_folder, "is a file where the cache needs")


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        (lambda p: p["mask"].update({"fc1.weight": p["mask"]["fc1.weight"][:3]}), "its mask"),
        (lambda p: p["mask"].popitem(), "its mask is not the one"),
        (lambda p: p.update(row=[0.5]), "its row lacks summary metrics"),
        (lambda p: p["row"].pop("test_acc"), "its row lacks summary metrics"),
        (lambda p: p["history"].update(step=torch.arange(2)), "columns are not 1-D tensors of one"),
        (lambda p: p["weights"].pop("fc1.bias"), "its weights is not a state of this"),
    ],
)
def test_a_checksum_valid_payload_of_the_wrong_structure(finished, tmp_path, change, warning):
    def rewrite(experiment):
        import hashlib
        import json

        (path,) = experiment.glob("both_modes/population-*/seed0/round01_ticket.pt")
        payload = torch.load(path, weights_only=True)
        change(payload)
        torch.save(payload, path)
        manifest_path = path.with_suffix(".json")
        manifest = json.loads(manifest_path.read_text())
        manifest["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest_path.write_text(json.dumps(manifest))

    damage_and_rerun(finished, tmp_path, rewrite, warning)


# -- failing early -----------------------------------------------------------------------------


def test_a_cache_that_is_a_file_fails_before_any_training(tmp_path, monkeypatch):
    import ticketlab.imp as imp_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the cache")

    monkeypatch.setattr(imp_module, "train_many", no_training)
    (tmp_path / "cache").write_text("TICKETLAB_CACHE points here by mistake")
    with pytest.raises(CacheError, match="is a file, not a folder"):
        run(XOR, cache_dir=tmp_path / "cache" / "imp", **RUN)


def test_a_disk_that_fills_up_mid_run_loses_one_cell_and_the_rerun_finishes(
    finished, tmp_path, monkeypatch
):
    _, reference = finished
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        saves = []
        original = cache_module.ResultCache.save

        def fills_the_disk_on_the_fourth_save(self, name, payload, coordinates):
            saves.append(name)
            if len(saves) == 4:  # something else takes every free byte
                fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
                try:
                    while os.write(fd, b"\0" * 4096):
                        pass
                except OSError:
                    pass
                finally:
                    os.close(fd)
            return original(self, name, payload, coordinates)

        monkeypatch.setattr(cache_module.ResultCache, "save", fills_the_disk_on_the_fourth_save)
        with pytest.raises(CacheError, match=r"ran out of space writing round01_\w+\.pt"):
            run(XOR, cache_dir=mount / "cache", **RUN)
        monkeypatch.undo()
        assert len(cells(mount / "cache")) == 3  # the cells written before the disk filled
        assert not list((mount / "cache").rglob("*.tmp"))
        (mount / "filler").unlink()
        assert_identical(run(XOR, cache_dir=mount / "cache", **RUN), reference)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# -- other processes: killed, and running at once ----------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import ticketlab.atomic
    from ticketlab.imp import run
    from ticketlab.recipes import DataSpec, ModelSpec, PruneSpec, Recipe
    from ticketlab.training import TrainConfig

    cache, out, seeds, group_size, go = sys.argv[1:6]
    recipe = Recipe(
        model=ModelSpec("xor_mlp", hidden=16, activation="tanh"),
        data=DataSpec("xor", noise=0.2),
        train=TrainConfig(steps=200, batch_size=4, optimizer="sgd", lr=0.2, eval_every=20),
        prune=PruneSpec(0.2, layer_rates={"out.weight": 0.1}),
    )
    if os.environ.get("SLOW_SAVES"):  # widen the moment between a payload and its manifest
        replace = os.replace

        def slow_replace(src, dst):
            print("SAVING", dst, flush=True)
            time.sleep(0.02)
            replace(src, dst)

        ticketlab.atomic.os.replace = slow_replace
    while go != "-" and not Path(go).exists():  # start together with the others
        time.sleep(0.01)
    print("READY", flush=True)
    result = run(recipe, rounds=3, seeds=[int(s) for s in seeds.split(",")],
                 controls=["reinit", "random"], population=True, progress=False,
                 group_size=None if group_size == "all" else int(group_size), cache_dir=cache)
    result.table.to_pickle(out + ".table")
    result.history.to_pickle(out + ".history")
    Path(out + ".computed").write_text(str(len(result.table) - result.cached_cells))
    """
)


def child(tmp_path, cache, name, seeds="0,1,2", group_size="all", go="-", slow=False, **kw):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "TICKETLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if slow:
        env["SLOW_SAVES"] = "1"
    args = [sys.executable, str(script), str(cache), str(tmp_path / name), seeds, group_size, go]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True, **kw)


def outcome(tmp_path, name) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    base = str(tmp_path / name)
    computed = int(Path(base + ".computed").read_text())
    return pd.read_pickle(base + ".table"), pd.read_pickle(base + ".history"), computed


@pytest.fixture(scope="module")
def reference_process(tmp_path_factory):
    """The uninterrupted run, alone in its own process: 3 + 3 rounds x 3 seeds x 3 kinds cells."""
    folder = tmp_path_factory.mktemp("reference")
    assert child(folder, folder / "cache", "ref").wait(timeout=120) == 0
    table, history, computed = outcome(folder, "ref")
    assert computed == len(table) == 30
    return table, history


def test_killed_at_random_moments_then_resumed_gives_the_same_bits(reference_process, tmp_path):
    table, history = reference_process
    cache = tmp_path / "cache"
    rng = random.Random(2026)
    # Mid-save: killed right after the n-th file move began (a payload without its manifest,
    # or cells of one population half saved). Anywhere: after a random time.
    for n in (3, 9, 16, 27):
        proc = child(tmp_path, cache, "killed", slow=True)
        moves = 0
        for line in proc.stdout:
            moves += line.startswith("SAVING")
            if moves == n:
                proc.kill()
                break
        proc.wait(timeout=60)
    for _ in range(3):
        proc = child(tmp_path, cache, "killed")
        assert proc.stdout.readline().startswith("READY")
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        proc.wait(timeout=60)
    assert child(tmp_path, cache, "resumed").wait(timeout=120) == 0
    resumed, curves, computed = outcome(tmp_path, "resumed")
    assert computed < 30  # it did resume
    pd.testing.assert_frame_equal(resumed, table, check_exact=True)
    pd.testing.assert_frame_equal(curves, history, check_exact=True)
    assert not list(cache.rglob("*.tmp"))


def test_processes_running_one_experiment_at_once_compute_each_cell_once(
    reference_process, tmp_path
):
    table, history = reference_process
    go = tmp_path / "go"
    procs = [child(tmp_path, tmp_path / "cache", f"p{i}", go=str(go)) for i in range(3)]
    time.sleep(2.0)  # all three imported and waiting for the signal
    go.touch()
    assert [proc.wait(timeout=180) for proc in procs] == [0, 0, 0]
    total = 0
    for i in range(3):
        mine, curves, computed = outcome(tmp_path, f"p{i}")
        pd.testing.assert_frame_equal(mine, table, check_exact=True)
        pd.testing.assert_frame_equal(curves, history, check_exact=True)
        total += computed
    assert total == 30  # each cell computed by exactly one of them


def test_overlapping_experiments_in_two_processes_share_their_common_cells(tmp_path):
    go = tmp_path / "go"
    a = child(tmp_path, tmp_path / "cache", "a", seeds="0,1", group_size="1", go=str(go))
    b = child(tmp_path, tmp_path / "cache", "b", seeds="1,2", group_size="1", go=str(go))
    go.touch()
    assert (a.wait(timeout=180), b.wait(timeout=180)) == (0, 0)
    assert child(tmp_path, tmp_path / "serial", "s", seeds="0,1,2", group_size="1").wait(120) == 0
    serial = outcome(tmp_path, "s")[0]
    computed = 0
    for name, seeds in (("a", [0, 1]), ("b", [1, 2])):
        mine, _, n = outcome(tmp_path, name)
        expected = serial[serial["seed"].isin(seeds)].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, expected, check_exact=True)
        computed += n
    assert computed == 30  # seed 1's ten cells were computed once, by one of the two
