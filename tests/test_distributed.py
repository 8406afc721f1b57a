"""Experiments on an executor give, bit for bit, the tables of a run in this process.

A real Dask ``LocalCluster`` of two worker processes on the loopback interface, started and torn
down by these tests: serial vs cluster, a worker killed by pid mid-run, two clients sharing one
cache; and the ``concurrent.futures`` executors. The oracle is always the same experiment run
with ``executor=None`` at one thread in a fresh cache (the workers run one thread each: a thread
count changes results in the last bits, and these tests compare every bit).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ticketlab import distributed
from ticketlab.cache import CacheError
from ticketlab.experiments import instability
from ticketlab.imp import run
from ticketlab.recipes import DataSpec, ModelSpec, PruneSpec, Recipe
from ticketlab.training import TrainConfig

pytestmark = pytest.mark.slow

XOR = Recipe(
    model=ModelSpec("xor_mlp", hidden=16, activation="tanh"),
    data=DataSpec("xor", noise=0.2),
    train=TrainConfig(steps=40, batch_size=4, optimizer="sgd", lr=0.2, eval_every=10),
    prune=PruneSpec(0.2, layer_rates={"out.weight": 0.1}),
)
RUN = dict(rounds=2, seeds=[0, 1, 2, 3], controls=["reinit", "random"], group_size=1)


def assert_identical(a, b) -> None:
    """Every number of two ``ImpResult``s equal, bit for bit: table, curves and masks."""
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    pd.testing.assert_frame_equal(a.history, b.history, check_exact=True)
    assert a.masks.keys() == b.masks.keys()
    assert all(a.masks[key] == b.masks[key] for key in a.masks)


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def client(one_thread):
    with distributed.connect(workers=2, threads=1) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


@pytest.fixture(scope="module")
def serial(one_thread, tmp_path_factory):
    """The oracle: RUN in this process."""
    return run(XOR, cache_dir=tmp_path_factory.mktemp("serial"), progress=False, **RUN)


def test_local_cluster_matches_serial_run(client, serial, tmp_path):
    on_cluster = run(XOR, cache_dir=tmp_path, progress=False, executor=client, **RUN)
    assert_identical(on_cluster, serial)
    # The cells were computed by the workers, not by this process: it only read them.
    assert on_cluster.cached_cells == len(serial.table)
    assert len(on_cluster.table) == 4 * (1 + 2 * 3)


def test_worker_count_does_not_change_results(client, serial, tmp_path):
    """Units are seed groups, never workers: two seeds per group on the cluster equal two seeds
    per group in this process (and differ from groups of one only in the last bits)."""
    grouped = dict(RUN, group_size=2)
    here = run(XOR, cache_dir=tmp_path / "here", progress=False, **grouped)
    there = run(XOR, cache_dir=tmp_path / "there", progress=False, executor=client, **grouped)
    assert_identical(there, here)


def test_sequential_cells_on_cluster(client, tmp_path):
    alone = dict(RUN, population=False, rounds=1)
    here = run(XOR, cache_dir=tmp_path / "here", progress=False, **alone)
    there = run(XOR, cache_dir=tmp_path / "there", progress=False, executor=client, **alone)
    assert_identical(there, here)


def _processing_pid(client) -> int | None:
    """The pid of a worker that is running a task now, or None."""
    busy = [address for address, tasks in client.processing().items() if tasks]
    if not busy:
        return None
    return client.run(os.getpid, workers=busy[:1])[busy[0]]


def test_killed_worker_is_retried_and_the_run_finishes_identically(client, tmp_path):
    long = dict(RUN, seeds=[0, 1], rounds=3)
    recipe = XOR.replace(steps=2000, eval_every=500)
    reference = run(recipe, cache_dir=tmp_path / "reference", progress=False, **long)
    outcome: dict = {}

    def drive():
        try:
            outcome["result"] = run(
                recipe, cache_dir=tmp_path / "cluster", progress=False, executor=client, **long
            )
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    driver = threading.Thread(target=drive)
    driver.start()
    # Kill a busy worker once it has stored its first cell, i.e. in the middle of its chain.
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and driver.is_alive():
        if list((tmp_path / "cluster").rglob("*.pt")):
            pid = _processing_pid(client)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = pid
        time.sleep(0.05)
    driver.join(timeout=300)
    assert killed is not None, "no worker was caught mid-task: the test did not test a kill"
    assert "error" not in outcome, outcome.get("error")
    assert_identical(outcome["result"], reference)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it: later tests have two


def test_two_clients_share_one_cache(client, one_thread, tmp_path):
    """Two clients submit overlapping experiments (seeds 0–2 and 1–3) to one cache at once:
    each gets the table of its own serial run, and shared cells agree."""
    shared = tmp_path / "shared"
    address = client.scheduler.address
    results: dict = {}

    def drive(name, seeds):
        from distributed import Client

        with Client(address) as other:
            try:
                results[name] = run(XOR, cache_dir=shared, progress=False, executor=other,
                                    **dict(RUN, seeds=seeds))  # fmt: skip
            except BaseException as error:
                results[name] = error

    threads = [
        threading.Thread(target=drive, args=("a", [0, 1, 2])),
        threading.Thread(target=drive, args=("b", [1, 2, 3])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for name, seeds in (("a", [0, 1, 2]), ("b", [1, 2, 3])):
        assert not isinstance(results[name], BaseException), results[name]
        alone = run(XOR, cache_dir=tmp_path / name, progress=False, **dict(RUN, seeds=seeds))
        assert_identical(results[name], alone)
    cells = sorted(p.relative_to(shared) for p in shared.rglob("*.pt"))
    assert len(cells) == len(set(cells)) == 4 * (1 + 2 * 3)


def test_an_experiment_over_seeds_on_the_cluster(client, one_thread, tmp_path, monkeypatch):
    settings = dict(recipe=XOR, rewind_steps=[0, 10], seeds=[0, 1, 2], points=5, group_size=1)
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path))
    here = instability(progress=False, **settings)
    there = instability(progress=False, executor=client, **settings)
    pd.testing.assert_frame_equal(there.table, here.table, check_exact=True)
    curves = ("curves", "curves")
    pd.testing.assert_frame_equal(there.extras[curves[0]], here.extras[curves[1]], check_exact=True)
    assert [v.outcome for v in there.verdicts] == [v.outcome for v in here.verdicts]


def test_xor_tickets_on_the_cluster_at_the_callers_budget(client, one_thread, monkeypatch):
    """Seed groups of the XOR lab on the cluster: the table of the same groups here, and with
    the caller's budget (a worker's TICKETLAB_QUICK is not consulted: the defaults travel)."""
    from ticketlab.experiments import xor_tickets

    monkeypatch.setenv("TICKETLAB_QUICK", "1")
    settings = dict(seeds=range(24), steps=200, group_size=8, progress=False)
    here = xor_tickets(**settings)
    there = xor_tickets(executor=client, **settings)
    pd.testing.assert_frame_equal(there.table, here.table, check_exact=True)
    assert sorted(there.table["seed"].unique()) == list(range(24))
    assert [str(v) for v in there.verdicts] == [str(v) for v in here.verdicts]


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_concurrent_futures_executors(kind, serial, tmp_path):
    if kind == "threads":
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    else:  # one spawned process: the pickling path, at half the start-up cost of two
        spawn = multiprocessing.get_context("spawn")
        executor = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn)
    with executor:
        result = run(XOR, cache_dir=tmp_path, progress=False, executor=executor, **RUN)
    assert_identical(result, serial)


class _Elsewhere(concurrent.futures.Executor):
    """An executor whose 'workers' write to another folder: a cache the driver cannot see."""

    def __init__(self, root: Path):
        self.root = root

    def submit(self, fn, /, *args, **kwargs):
        function, unit, driver = args
        future = concurrent.futures.Future()
        future.set_result(fn(function, {**unit, "cache_dir": str(self.root)}, driver))
        return future


def test_a_cache_the_driver_cannot_see_is_a_clear_error(tmp_path, one_thread):
    with pytest.raises(CacheError, match="every worker and this process share"):
        run(XOR, cache_dir=tmp_path / "driver", progress=False,
            executor=_Elsewhere(tmp_path / "workers"), **dict(RUN, rounds=1))  # fmt: skip


def test_a_bad_executor_is_refused_before_any_work(tmp_path):
    with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor"):
        run(XOR, cache_dir=tmp_path, progress=False, executor="tcp://localhost:8786", **RUN)
    assert not list(tmp_path.rglob("*.pt"))


def test_connect_checks_its_arguments():
    with pytest.raises(ValueError, match="not both"), distributed.connect("tcp://a:1", 2):
        pass
    with pytest.raises(ValueError, match="tcp://host:8786"), distributed.connect("localhost"):
        pass
    with pytest.raises(ValueError, match="threads"), distributed.connect(workers=1, threads=0):
        pass


def _worker_environment() -> dict:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "TICKETLAB_THREADS")}


def test_local_workers_get_one_thread_and_glibcs_own_malloc_trimming(client):
    """Dask's default MALLOC_TRIM_THRESHOLD_ (64 KiB) made IMP on the workers 1.5× slower
    (benchmarks/cluster.py); ``connect`` starts its workers without it."""
    environments = client.run(_worker_environment)
    assert len(environments) == 2
    for environment in environments.values():
        assert environment == {"MALLOC_TRIM_THRESHOLD_": None, "TICKETLAB_THREADS": "1"}


def test_worker_device_follows_ticketlab_device(monkeypatch):
    monkeypatch.setenv("TICKETLAB_DEVICE", "cpu")
    assert distributed.worker_device() == torch.device("cpu")


def test_map_units_keeps_the_order_of_the_units():
    units = [{"a": i, "b": 10 * i} for i in range(6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        out = distributed.map_units(pool, _slow_sum, units, progress=False)
    assert out == [11 * i for i in range(6)]


def _slow_sum(a: int, b: int) -> int:
    time.sleep(0.05 * (6 - a))  # later units finish first
    return a + b
