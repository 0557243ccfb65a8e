"""Where independent runs execute: local processes (the default), a Dask cluster or a Ray cluster.

:func:`run_tasks` maps a module-level function over argument tuples and returns
the results in task order, whichever executor ran them. A task's result depends
only on its arguments (every run is seeded), so the executors give identical
results. Every worker runs with BLAS and torch pinned to one thread
(:func:`pin_threads`): runs are parallel across processes, not within them.

* ``local``: :class:`concurrent.futures.ProcessPoolExecutor` with ``workers``
  processes (one process: in this one).
* ``dask``: a ``distributed.Client`` of ``address`` (``tcp://host:8786``, a
  running scheduler with workers), or a :class:`distributed.LocalCluster` of
  ``workers`` single-threaded worker processes; the client's
  ``concurrent.futures`` executor runs the tasks (the ``dask`` extra).
* ``ray``: one Ray task per run (``num_cpus=1``) on ``ray.init(address=...)``
  (``auto`` or ``ray://host:10001`` joins a cluster), or on a local Ray instance
  with ``workers`` CPUs (the ``ray`` extra; Ray 2.x has no ``local_mode``).

Workers on other machines need this project installed (``pip install -e .``
with the same extras) and the same input files at the same paths.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

EXECUTORS = ("local", "dask", "ray")
#: Environment variables that set the thread count of BLAS and OpenMP libraries.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


class ExecutorError(ValueError):
    """A bad executor choice or a missing optional package (the message names the extra)."""


_PINNED: set[int] = set()


def pin_threads() -> None:
    """One BLAS / OpenMP thread, and one torch thread (runs are parallel, not threads).

    Once per process: scanning the loaded libraries again before every task costs more than a short run.
    torch is pinned only if it is loaded already: imported later, it takes its thread count from
    ``OMP_NUM_THREADS``, set here (importing it only to pin it cost every worker over a second, and most
    runs never use it).
    """
    if os.getpid() in _PINNED:
        return
    _PINNED.add(os.getpid())
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ModuleNotFoundError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _init_local_worker() -> None:
    """A local worker process: SIGTERM ends it (not the parent's Ctrl-C handler it inherited), one thread."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pin_threads()


def _pinned_call(fn: Callable[..., Any], args: tuple) -> Any:
    pin_threads()
    return fn(*args)


def check_executor(executor: str, address: str | None = None) -> None:
    """Refuse an unknown executor, an address for ``local``, or a missing package, with one line."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "local" and address:
        raise ExecutorError("--address is for --executor dask or ray")
    package = {"dask": "distributed", "ray": "ray"}.get(executor)
    if package is not None:
        try:
            __import__(package)
        except ModuleNotFoundError:
            raise ExecutorError(f"--executor {executor} needs the {executor} extra: pip install -e \".[{executor}]\"") from None


_default = {"executor": "local", "address": None}


@contextmanager
def using(executor: str, address: str | None = None) -> Iterator[None]:
    """Within the block, :func:`run_tasks` calls that name no executor use this one (e.g. ``paper --executor``)."""
    check_executor(executor, address)
    saved = dict(_default)
    _default.update(executor=executor, address=address)
    try:
        yield
    finally:
        _default.update(saved)


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], executor: str | None = None, workers: int | None = None,
              address: str | None = None, on_done: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(*task) for task in tasks]``, run by ``executor``; ``on_done()`` after each finished task.

    ``executor=None``: the one of the enclosing :func:`using` block (``local`` outside any). ``fn`` must be
    importable by the workers (a module-level function of an installed package).
    """
    if executor is None:
        executor, address = _default["executor"], address or _default["address"]
    check_executor(executor, address)
    tasks = list(tasks)
    workers = max(1, int(workers or os.cpu_count() or 1))
    if not tasks:
        return []
    if executor == "dask":
        return _run_dask(fn, tasks, workers, address, on_done)
    if executor == "ray":
        return _run_ray(fn, tasks, workers, address, on_done)
    return _run_local(fn, tasks, workers, on_done)


def _run_local(fn, tasks, workers, on_done) -> list[Any]:
    results: list[Any] = [None] * len(tasks)
    if workers == 1 or len(tasks) == 1:
        for i, task in enumerate(tasks):
            results[i] = fn(*task)
            if on_done:
                on_done()
        return results
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), initializer=_init_local_worker)
    try:
        futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_done:
                on_done()
    except BaseException:  # interrupted (SIGINT, SIGTERM) or a run failed: leave no worker behind
        pool.shutdown(wait=False, cancel_futures=True)
        children = multiprocessing.active_children()
        for process in children:
            process.terminate()
        for process in children:
            process.join(timeout=10)
        raise
    pool.shutdown()
    return results


#: Environment of the local Dask cluster's worker processes: one thread per library, and *not* Dask's default
#: ``MALLOC_TRIM_THRESHOLD_=65536``, under which glibc hands memory back to the system so eagerly that the
#: oracle's many small numpy arrays run about three times as slowly (``python scripts/bench_dask_workers.py``).
DASK_WORKER_ENVIRON = {name: 1 for name in THREAD_VARIABLES}


#: What Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` to by default.
_DASK_MALLOC_TRIM = "65536"


def local_dask_cluster(workers: int, environ: dict[str, Any] | None = DASK_WORKER_ENVIRON):
    """A ``LocalCluster`` of ``workers`` one-thread worker processes started with ``environ`` (``None``: Dask's
    default worker environment).

    Dask's nanny copies the spawn environment into this process's ``os.environ``, so a cluster started with
    Dask's default leaves ``MALLOC_TRIM_THRESHOLD_=65536`` here for every later cluster's workers to inherit:
    it is dropped first (only when it holds Dask's value, not one of the user's own).
    """
    import dask
    from distributed import LocalCluster

    settings = {}
    if environ is not None:
        settings = {"distributed.nanny.pre-spawn-environ": environ}
        if os.environ.get("MALLOC_TRIM_THRESHOLD_") == _DASK_MALLOC_TRIM:
            del os.environ["MALLOC_TRIM_THRESHOLD_"]
    with dask.config.set(settings):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def _run_dask(fn, tasks, workers, address, on_done) -> list[Any]:
    from distributed import Client

    cluster = None
    if address:
        client = Client(address)
    else:
        cluster = local_dask_cluster(workers)
        client = Client(cluster)
    try:
        client.run(pin_threads)
        with client.get_executor(pure=False) as pool:
            futures = {pool.submit(_pinned_call, fn, task): i for i, task in enumerate(tasks)}
            results: list[Any] = [None] * len(tasks)
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_done:
                    on_done()
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_ray(fn, tasks, workers, address, on_done) -> list[Any]:
    import ray

    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, **options)
    try:
        remote = ray.remote(num_cpus=1)(_pinned_call)
        refs = [remote.remote(fn, task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)
                if on_done:
                    on_done()
        return results
    finally:
        if started:
            ray.shutdown()


__all__ = ["DASK_WORKER_ENVIRON", "EXECUTORS", "ExecutorError", "check_executor", "local_dask_cluster", "pin_threads",
           "run_tasks", "using"]
