"""Run one job on a second thread while the caller goes on (two cores doing different work)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: ``side(job)`` -> a function that returns the job's result (waiting for it) or raises its error.
Side = Callable[[Callable[[], Any]], Callable[[], Any]]


@contextlib.contextmanager
def beside(threads: int) -> Iterator[Side]:
    """Run jobs on a second thread while the block goes on: ``side(job)`` returns a function that
    gives the job's result (waiting for it; its error is raised there). With fewer than two
    ``threads`` the job runs at once, in the caller's thread, so that one thread keeps to one core.
    Jobs submitted to one block run one after the other, in order.
    """
    if threads < 2:
        yield _at_once
        return
    with ThreadPoolExecutor(1, thread_name_prefix="vmgga-beside") as pool:
        yield lambda job: pool.submit(job).result


def _at_once(job: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``job`` now; the returned function gives its result or raises its error."""
    try:
        value = job()
    except BaseException as error:  # raised where the threaded form raises it: when asked for
        return functools.partial(_raise, error)
    return lambda: value


def _raise(error: BaseException) -> Any:
    raise error
