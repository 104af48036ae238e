"""``TaskFuture`` behaves exactly like a ``concurrent.futures.Future`` while creating its lock lazily."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from sdk.futures import TaskFuture


def test_an_untouched_future_runs_and_resolves_without_a_condition() -> None:
    future = TaskFuture()
    assert future.set_running_or_notify_cancel() is True
    future.set_result(7)
    assert future._lazy_condition is None  # the point of the class: no lock was ever made
    assert future.result() == 7 and future.done() and not future.running() and not future.cancel()
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(8)


def test_a_cancelled_future_is_not_run_and_waiters_see_it() -> None:
    future = TaskFuture()
    assert future.cancel()
    assert future.set_running_or_notify_cancel() is False
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(0)


def test_a_waiting_thread_and_callbacks_are_woken() -> None:
    future = TaskFuture()
    seen: list[object] = []
    future.add_done_callback(lambda f: seen.append(f.exception()))
    started = threading.Event()

    def wait() -> None:
        started.set()
        seen.append(future.exception(30))

    waiter = threading.Thread(target=wait)
    waiter.start()
    started.wait()
    assert future.set_running_or_notify_cancel()
    error = ValueError("boom")
    future.set_exception(error)
    waiter.join(30)
    assert seen == [error, error]


def test_as_completed_and_wait_work_on_task_futures() -> None:
    futures = [TaskFuture() for _ in range(5)]
    for i, future in enumerate(futures):
        assert future.set_running_or_notify_cancel()
        future.set_result(i)
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, 1)) == list(range(5))
    done, pending = concurrent.futures.wait(futures, 0)
    assert len(done) == 5 and not pending
