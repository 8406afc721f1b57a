"""Running experiments' units of work on an executor: Dask, or any ``concurrent.futures`` one.

ticketlab has no scheduler of its own. An experiment cuts its work into canonical units (for IMP,
one seed group's chain of rounds; for the other experiments, one group of seeds), a function of
the experiment alone, never of the number of workers; ``map_units`` hands them to an executor
and returns their results in order. Dask schedules, retries a task whose worker died, and shows
the work on its dashboard. Workers meet in the result cache (a filesystem every worker shares),
so a retried unit resumes from the cells its first attempt finished, bit for bit.

An executor is one of:

* ``None``: every unit in this process, one after another (the reference a cluster must match);
* a ``dask.distributed.Client`` (``connect`` makes one: a ``LocalCluster`` here, or a scheduler
  address such as ``tcp://host:8786``, e.g. one that ``dask-jobqueue`` started on SLURM);
* any ``concurrent.futures.Executor`` (``ProcessPoolExecutor``, ``ThreadPoolExecutor``, ...).

**Threads and devices per worker.** Two PyTorch processes with default threads on two cores slow
each other down many times over, so a unit in a worker process runs with
``$TICKETLAB_THREADS`` threads if the worker sets it, else one; ``connect`` starts workers with
``threads`` each (default 1). A unit computes on ``$TICKETLAB_DEVICE`` if the worker sets it,
else on GPU ``i mod n`` for Dask worker ``i`` on a machine with n GPUs, else ``config.device()``.
Results are bit-identical to a serial run at the same thread count and device type.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .config import device as pick_device
from .config import threads

__all__ = ["connect", "dashboard_link", "is_dask", "map_units", "worker_device"]


def is_dask(executor: object) -> bool:
    """Whether ``executor`` is a ``dask.distributed.Client`` (checked without importing Dask
    when it was never imported: then it cannot be one)."""
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(executor, distributed.Client)


def check_executor(executor: object) -> None:
    """Raise a clear TypeError unless ``executor`` is None, a Dask Client or a
    ``concurrent.futures.Executor``: checked where the executor enters, before any training."""
    if executor is None or is_dask(executor):
        return
    if isinstance(executor, concurrent.futures.Executor):
        return
    raise TypeError(
        f"executor must be None (this process), a dask.distributed.Client or a "
        f"concurrent.futures.Executor, got {type(executor).__name__}; e.g. "
        f"`with ticketlab.distributed.connect(workers=2) as client: run(..., executor=client)`"
    )


def dashboard_link(executor: object) -> str | None:
    """The Dask dashboard's address for a Client with a dashboard, else None."""
    if not is_dask(executor):
        return None
    try:
        return executor.dashboard_link or None
    except Exception:  # a scheduler without the dashboard (bokeh) raises on lookup
        return None


def map_units(
    executor: object,
    function: Callable[..., Any],
    units: Sequence[dict],
    *,
    desc: str = "units",
    progress: bool = True,
) -> list:
    """``[function(**unit) for unit in units]``, computed on ``executor``, in order.

    ``function`` must be a module-level function (workers import it by name) and every unit's
    arguments picklable. On a Dask Client each unit is a task named after ``desc``; Dask retries
    it elsewhere if its worker dies (``distributed.scheduler.allowed-failures`` times). A unit that
    raises re-raises its exception here. A progress bar counts finished units; the dashboard's
    address is printed once when there is one.
    """
    from tqdm.auto import tqdm

    check_executor(executor)
    driver = os.getpid()
    calls = [(function, dict(unit), driver) for unit in units]
    if executor is None:
        return [_call(*call) for call in tqdm(calls, desc=desc, unit="unit", disable=not progress)]
    link = dashboard_link(executor)
    if link and progress:
        print(f"{desc}: {len(calls)} units on Dask; dashboard: {link}", file=sys.stderr)
    results: list = [None] * len(calls)
    with tqdm(total=len(calls), desc=desc, unit="unit", disable=not progress) as bar:
        if is_dask(executor):
            from distributed import as_completed

            futures = [executor.submit(_call, *call, pure=False) for call in calls]
            index = {future.key: i for i, future in enumerate(futures)}
            try:
                for future in as_completed(futures):
                    results[index[future.key]] = future.result()
                    bar.update()
            finally:
                for future in futures:
                    future.cancel()  # a no-op for finished ones; stops the rest after a failure
        else:
            futures = [executor.submit(_call, *call) for call in calls]
            index = {future: i for i, future in enumerate(futures)}
            try:
                for future in concurrent.futures.as_completed(futures):
                    results[index[future]] = future.result()
                    bar.update()
            finally:
                for future in futures:
                    future.cancel()
    return results


def _call(function: Callable[..., Any], unit: dict, driver: int):
    """Run one unit. In a process other than the driver's (a worker), first set this process's
    PyTorch threads: ``$TICKETLAB_THREADS``, else 1 (see the module docstring; ``all`` leaves
    PyTorch's thread per core). Threads of the driver's own process (a ThreadPoolExecutor, or no
    executor) are left as they are."""
    if os.getpid() != driver:
        if os.environ.get("TICKETLAB_THREADS", "").strip():
            threads()  # the worker's own choice, read and checked as ``import ticketlab`` does
        else:
            torch.set_num_threads(1)
    return function(**unit)


def worker_device() -> torch.device:
    """The device this process computes on as a worker: ``$TICKETLAB_DEVICE`` if set; on a
    machine with several GPUs, GPU ``i mod n`` for the Dask worker named ``i`` (a LocalCluster
    names its workers 0, 1, ...); otherwise ``config.device()``."""
    if os.environ.get("TICKETLAB_DEVICE"):
        return pick_device()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1:
        with contextlib.suppress(ImportError, ValueError):
            from distributed import get_worker

            name = get_worker().name
            if isinstance(name, int) or str(name).isdigit():
                return torch.device(f"cuda:{int(name) % gpus}")
    return pick_device()


@contextlib.contextmanager
def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    dashboard: bool = True,
) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for the duration of a ``with`` block, closed after it.

    Args:
        scheduler: address of a running scheduler (``tcp://host:8786``; e.g. one started by
            ``dask-jobqueue``'s ``SLURMCluster``, or ``dask scheduler`` on a head node).
        workers: with no ``scheduler``, start a ``LocalCluster`` of this many worker processes on
            the loopback interface (default: one per core divided by ``threads``).
        threads: PyTorch threads per local worker (``TICKETLAB_THREADS`` and ``OMP_NUM_THREADS``
            in each worker's environment); 1 keeps two workers on two cores from fighting.
        dashboard: serve the dashboard of a local cluster on a free port.

    In a script, call it under ``if __name__ == "__main__":``: local workers are spawned Python
    processes that import the script's main module (as ``multiprocessing`` does).
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None and workers is not None:
        raise ValueError(
            "give a scheduler address or a number of local workers, not both: a scheduler "
            "already has its workers"
        )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"threads must be an int >= 1 (PyTorch threads per worker), got {threads!r}"
        )
    if scheduler is not None:
        if not isinstance(scheduler, str) or "://" not in scheduler:
            raise ValueError(
                f"scheduler must be an address such as 'tcp://host:8786', got {scheduler!r}"
            )
        with Client(scheduler) as client:
            yield client
        return
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // threads)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1 (local worker processes), got {workers!r}")
    env = {"TICKETLAB_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc hand freed memory
    # back to the system at once (and stops it raising its mmap threshold): every large tensor
    # a training step frees and allocates again then costs page faults. Measured on the 2-core
    # AMD EPYC, two IMP processes took 25 s with it and 16-17 s without (benchmarks/cluster.py).
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,  # one unit at a time per worker: its cores are its threads
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0" if dashboard else None,
            env=env,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
