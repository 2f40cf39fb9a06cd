"""One job beside the caller: on a second thread only when two threads are allowed, errors raised when asked for."""

from __future__ import annotations

import threading

import pytest

from vmgga.threads import beside


def test_one_thread_runs_the_job_at_once_in_the_callers_thread() -> None:
    seen: list[str] = []
    with beside(1) as side:
        result = side(lambda: seen.append(threading.current_thread().name) or 7)
        assert seen == [threading.current_thread().name]  # before the block goes on
    assert result() == 7


def test_two_threads_run_the_job_beside_the_block() -> None:
    started, release = threading.Event(), threading.Event()

    def job() -> str:
        started.set()
        assert release.wait(10)
        return threading.current_thread().name

    with beside(2) as side:
        result = side(job)
        assert started.wait(10)  # it runs while the block has not finished
        release.set()
        name = result()
    assert name != threading.current_thread().name


def test_an_error_of_the_job_reaches_the_caller() -> None:
    def job() -> None:
        raise ValueError("broken fixed image")

    with beside(2) as side:
        result = side(job)
        with pytest.raises(ValueError, match="broken fixed image"):
            result()


def test_one_thread_raises_the_jobs_error_when_asked_like_two_threads() -> None:
    def job() -> None:
        raise ValueError("short file")

    with beside(1) as side:
        result = side(job)  # nothing raised yet
    with pytest.raises(ValueError, match="short file"):
        result()
