"""Where batch jobs run: in this process, in a local process pool, or on a Dask cluster.

Each executor takes the planned jobs (lists of :class:`~vmgga.batch.case.CaseTask`) and calls
``on_done(outcomes)`` in the main process as each job finishes. Threads per case are bounded so
that workers x threads does not exceed the cores of a machine.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from vmgga.batch.case import CaseOutcome, CaseStatus, CaseTask, run_job, set_thread_limits
from vmgga.extras import import_optional

OnDone = Callable[[list[CaseOutcome]], None]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, requested: int | None = None, cores: int | None = None) -> int:
    """Threads for each of ``workers`` processes so that workers x threads <= cores (at least 1)."""
    budget = max(1, (cores or usable_cores()) // max(1, workers))
    return budget if requested is None else max(1, min(requested, budget))


def run_serial(jobs: list[list[CaseTask]], threads: int, on_done: OnDone) -> None:
    """One job after the other in this process."""
    set_thread_limits(threads)
    for job in jobs:
        on_done(run_job(job, threads))


def run_process_pool(jobs: list[list[CaseTask]], workers: int, threads: int, on_done: OnDone) -> None:
    """Jobs in ``workers`` fresh ('spawn') processes; a crashed worker fails only its job's cases."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=set_thread_limits,
                             initargs=(threads,)) as pool:  # fmt: skip
        futures = {pool.submit(run_job, job, threads): job for job in jobs}
        for future in as_completed(futures):
            on_done(_outcomes_of(future, futures[future]))


def run_dask(jobs: list[list[CaseTask]], address: str, on_done: OnDone) -> None:
    """Jobs as tasks of an existing Dask distributed cluster (``distributed.Client(address)``)."""
    distributed = import_optional("distributed", extra="dask", feature="batch --scheduler")
    Client, dask_as_completed = distributed.Client, distributed.as_completed

    with Client(address) as client:
        threads = dask_threads_by_worker(client)
        futures = {client.submit(run_job, job, threads, pure=False): job for job in jobs}
        for future in dask_as_completed(list(futures)):
            on_done(_outcomes_of(future, futures[future]))


def dask_threads_by_worker(client) -> dict[str, int]:
    """Threads per case for each Dask worker: its host's cores over the task slots on that host."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # older distributed: no n_workers argument
        workers = client.scheduler_info()["workers"]
    cores = client.run(usable_cores)
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info.get("nthreads", 1))
    return {
        address: max(1, int(cores.get(address, 1)) // max(1, slots[info["host"]]))
        for address, info in workers.items()
    }


def _outcomes_of(future, job: list[CaseTask]) -> list[CaseOutcome]:
    """A job's outcomes; if the worker itself died, every case of the job is failed with the reason."""
    try:
        return future.result()
    except Exception as error:  # a crashed worker process (BrokenProcessPool, KilledWorker...)
        message = f"worker failed: {type(error).__name__}: {error}"
        return [CaseOutcome(task.case.case_id, CaseStatus.FAILED, 0.0, error=message) for task in job]


#: Seconds to wait for a Dask scheduler to answer (``vmgga batch --connect-timeout``).
DEFAULT_CONNECT_TIMEOUT_S = 10.0


def check_scheduler(address: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Connect to the Dask scheduler at ``address`` once, waiting at most ``timeout_s`` seconds.

    Raises:
        ConfigError: one line naming the address when no scheduler answers or the address is malformed.
    """
    from vmgga.errors import ConfigError

    if not timeout_s > 0:
        raise ConfigError(f"--connect-timeout must be > 0 seconds, got {timeout_s}")
    Client = import_optional("distributed", extra="dask", feature="batch --scheduler").Client

    try:
        Client(address, timeout=timeout_s).close()
    except Exception as error:  # OSError (timed out, refused), ValueError (bad address)...
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"no Dask scheduler answered at {address!r} within {timeout_s:g} s ({detail}); check the "
            "address, or wait longer with --connect-timeout"
        ) from None
