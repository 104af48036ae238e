"""End to end: workers that die or run past their walltime.

The task under test writes its worker's pid to a file and sleeps; the test kills that
very process. Afterwards the manager has a fresh worker and the pool keeps working.
"""

from __future__ import annotations

import signal

import e2e_functions as fns
import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.processes import read_pid, wait_gone, worker_processes

from fabric import Endpoint
from fabric.errors import TaskTimeout, WorkerLost


def only_manager_pid(endpoint: Endpoint) -> int:
    managers = endpoint.wait_for_workers(timeout=TIMEOUT).managers
    assert len(managers) == 1
    return managers[0]["pid"]


def kill_worker_running(marker, manager_pid: int) -> psutil.Process:
    """Wait until the task has recorded its worker's pid, check it is one of the manager's
    workers, SIGKILL it and wait until it is gone."""
    pid = poll_until(lambda: read_pid(marker), "the task to start on a worker")
    assert pid in [w.pid for w in worker_processes(manager_pid)]
    worker = psutil.Process(pid)
    worker.send_signal(signal.SIGKILL)
    wait_gone([worker], "the killed worker")
    return worker


def wait_for_fresh_workers(manager_pid: int, count: int, replaced: psutil.Process) -> None:
    def fresh() -> bool:
        workers = worker_processes(manager_pid)
        return len(workers) == count and replaced.pid not in [w.pid for w in workers]

    poll_until(fresh, f"{count} workers again, without pid {replaced.pid}")


def assert_pool_works(endpoint: Endpoint, count: int = 20) -> None:
    futures = [endpoint.submit(fns.square, x) for x in range(count)]
    assert [f.result(TIMEOUT) for f in futures] == [("square", x, x * x) for x in range(count)]


def test_worker_killed_mid_task_fails_the_task_with_worker_lost(make_endpoint, tmp_path) -> None:
    endpoint = make_endpoint(workers=2)
    manager_pid = only_manager_pid(endpoint)
    marker = tmp_path / "pid"
    future = endpoint.submit_task(fns.record_pid_then_sleep, (str(marker), TIMEOUT), retries=0)

    killed = kill_worker_running(marker, manager_pid)

    with pytest.raises(WorkerLost) as lost:
        future.result(TIMEOUT)
    assert lost.value.exit_code == -signal.SIGKILL
    assert lost.value.task_id is not None
    assert lost.value.worker_id
    wait_for_fresh_workers(manager_pid, 2, killed)
    assert endpoint.status().workers == 2
    assert_pool_works(endpoint)


def test_worker_killed_mid_task_is_retried_when_the_task_has_retries(make_endpoint, tmp_path) -> None:
    endpoint = make_endpoint(workers=1)
    manager_pid = only_manager_pid(endpoint)
    marker = tmp_path / "pid"
    future = endpoint.submit_task(fns.record_pid_unless_retried, (str(marker), TIMEOUT), retries=1)

    killed = kill_worker_running(marker, manager_pid)

    outcome, pid = future.result(TIMEOUT)
    assert outcome == "retried"
    assert pid != killed.pid
    wait_for_fresh_workers(manager_pid, 1, killed)
    assert_pool_works(endpoint)


def test_endpoint_retries_default_applies_to_lost_workers(make_endpoint, tmp_path) -> None:
    endpoint = make_endpoint(workers=1, retries=1)
    manager_pid = only_manager_pid(endpoint)
    marker = tmp_path / "pid"
    future = endpoint.submit(fns.record_pid_unless_retried, str(marker), TIMEOUT)

    kill_worker_running(marker, manager_pid)

    assert future.result(TIMEOUT)[0] == "retried"


def test_tasks_queued_behind_a_killed_worker_still_run(make_endpoint, tmp_path) -> None:
    endpoint = make_endpoint(workers=1)
    manager_pid = only_manager_pid(endpoint)
    marker = tmp_path / "pid"
    doomed = endpoint.submit_task(fns.record_pid_then_sleep, (str(marker), TIMEOUT), retries=0)
    queued = [endpoint.submit(fns.square, x) for x in range(50)]

    killed = kill_worker_running(marker, manager_pid)

    with pytest.raises(WorkerLost):
        doomed.result(TIMEOUT)
    assert [f.result(TIMEOUT) for f in queued] == [("square", x, x * x) for x in range(50)]
    wait_for_fresh_workers(manager_pid, 1, killed)


def test_task_past_its_walltime_fails_with_task_timeout_and_its_worker_is_replaced(make_endpoint) -> None:
    endpoint = make_endpoint(workers=1)
    manager_pid = only_manager_pid(endpoint)
    [worker] = worker_processes(manager_pid)

    future = endpoint.submit_task(fns.sleep_then_return, (10, "too late"), walltime=0.5)

    with pytest.raises(TaskTimeout) as timed_out:
        future.result(TIMEOUT)
    assert timed_out.value.walltime == 0.5
    assert timed_out.value.task_id is not None
    wait_gone([worker], "the worker that ran past the walltime")
    wait_for_fresh_workers(manager_pid, 1, worker)
    assert_pool_works(endpoint)
    # a task that finishes within its walltime succeeds, and keeps its worker
    [fresh] = worker_processes(manager_pid)
    assert endpoint.submit_task(fns.sleep_then_return, (0, "in time"), walltime=TIMEOUT).result(TIMEOUT) == "in time"
    assert worker_processes(manager_pid) == [fresh]
