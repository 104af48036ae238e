"""End to end: holding, releasing and draining managers of a two-manager endpoint.

Every task returns the pid of the manager that ran it (its worker's parent), so a test
knows exactly where work went. ``prefetch=0`` gives each one-worker manager one task
slot, so dispatch alternates between managers that both have room.
"""

from __future__ import annotations

import e2e_functions as fns
import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.processes import descendants, read_pid, wait_gone

from fabric import Endpoint
from fabric.errors import EndpointError


@pytest.fixture
def two_managers(make_endpoint) -> tuple[Endpoint, dict[int, str]]:
    """An endpoint with two one-worker managers, and ``{manager pid: manager id}``."""
    endpoint = make_endpoint(workers=1, managers=2, prefetch=0)
    managers = {m["pid"]: m["manager_id"] for m in endpoint.wait_for_workers(timeout=TIMEOUT).managers}
    assert len(managers) == 2
    return endpoint, managers


def manager_pids_of(endpoint: Endpoint, count: int, seconds: float) -> list[int]:
    """Submit ``count`` tasks taking ``seconds`` each; the manager pid each one ran under."""
    futures = [endpoint.submit(fns.sleep_then_manager_pid, seconds, x) for x in range(count)]
    results = [f.result(TIMEOUT) for f in futures]
    assert [x for x, _ in results] == list(range(count))
    return [pid for _, pid in results]


def test_held_manager_gets_no_new_tasks_until_released(two_managers) -> None:
    endpoint, managers = two_managers
    held_pid, other_pid = sorted(managers)
    endpoint.hold_manager(managers[held_pid])
    [held_status] = [m for m in endpoint.status().managers if m["pid"] == held_pid]
    assert held_status["held"] is True

    assert set(manager_pids_of(endpoint, 12, 0.02)) == {other_pid}

    endpoint.release_manager(managers[held_pid])
    assert set(manager_pids_of(endpoint, 6, 0.2)) == {held_pid, other_pid}
    assert all(not m["held"] for m in endpoint.status().managers)


def test_drained_manager_finishes_its_task_exits_and_is_not_replaced(two_managers, tmp_path) -> None:
    endpoint, managers = two_managers
    drained_pid, other_pid = sorted(managers)
    interchange = psutil.Process(endpoint._process.pid)
    drained = psutil.Process(drained_pid)
    drained_workers = descendants(drained_pid)
    endpoint.hold_manager(managers[other_pid])  # the next task must go to the manager we drain
    marker = tmp_path / "pid"
    running = endpoint.submit(fns.record_pid_then_sleep, str(marker), 0.5)
    worker_pid = poll_until(lambda: read_pid(marker), "the task to start")
    assert worker_pid in [w.pid for w in drained_workers]

    endpoint.drain_manager(managers[drained_pid])
    endpoint.release_manager(managers[other_pid])
    queued = [endpoint.submit(fns.manager_pid_of, x) for x in range(10)]

    assert running.result(TIMEOUT) == worker_pid  # finished, not lost
    assert [f.result(TIMEOUT) for f in queued] == [(x, other_pid) for x in range(10)]
    wait_gone([drained, *drained_workers], "the drained manager and its workers")
    # Reaped by the interchange's provider, which would start a replacement in the same step:
    poll_until(lambda: drained not in interchange.children(), "the interchange to reap the drained manager")
    assert [p.pid for p in interchange.children()] == [other_pid]
    poll_until(lambda: [m["pid"] for m in endpoint.status().managers] == [other_pid],
               "the drained manager to leave the status")
    assert set(manager_pids_of(endpoint, 6, 0.0)) == {other_pid}
    assert [p.pid for p in interchange.children()] == [other_pid]


def test_commands_for_an_unknown_manager_fail(make_endpoint) -> None:
    endpoint = make_endpoint()
    endpoint.wait_for_workers(timeout=TIMEOUT)
    for command in (endpoint.hold_manager, endpoint.release_manager, endpoint.drain_manager):
        with pytest.raises(EndpointError):
            command("no-such-manager")
    assert endpoint.submit(fns.square, 2).result(TIMEOUT) == ("square", 2, 4)
