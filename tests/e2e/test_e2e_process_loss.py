"""End to end: managers, the interchange and the client process disappearing.

Every future resolves, the surviving parts finish the work, and no process outlives
the part of the endpoint it belonged to.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import e2e_functions as fns
import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.processes import descendants, living, read_pid, wait_gone, worker_processes

from fabric.errors import EndpointError, EndpointShutdown, ManagerLost
from fabric.process import child_environment

LOSS_HEARTBEATS = {"heartbeat_period": 0.2, "heartbeat_threshold": 1.0}


def started_on(directory, manager_pid: int) -> list[int]:
    """Indices of the tasks that (also) started on the manager with ``manager_pid``."""
    return [int(path.name) for path in directory.iterdir()
            if str(manager_pid) in path.read_text().split()]


@pytest.mark.parametrize("retries", [0, 1])
def test_manager_killed_its_tasks_are_requeued_or_lost_and_the_other_manager_finishes(
        make_endpoint, tmp_path, retries) -> None:
    endpoint = make_endpoint(workers=1, managers=2, prefetch=0, **LOSS_HEARTBEATS)
    managers = {m["pid"]: m["manager_id"] for m in endpoint.wait_for_workers(timeout=TIMEOUT).managers}
    assert len(managers) == 2
    futures = [endpoint.submit_task(fns.log_manager_then_sleep, (str(tmp_path), i, 0.1), retries=retries)
               for i in range(24)]
    victim_pid = poll_until(lambda: next((pid for pid in managers if started_on(tmp_path, pid)), None),
                            "a task to start on a manager")
    victim = psutil.Process(victim_pid)
    victim_workers = worker_processes(victim_pid)
    victim.send_signal(signal.SIGKILL)

    outcomes = {}
    for index, future in enumerate(futures):
        try:
            outcomes[index] = future.result(TIMEOUT)
        except ManagerLost as lost:
            outcomes[index] = lost
    lost_tasks = {i: e for i, e in outcomes.items() if isinstance(e, ManagerLost)}
    assert len(outcomes) == 24
    for index, value in outcomes.items():
        if index not in lost_tasks:
            assert value[0] == index
    for index, error in lost_tasks.items():
        assert error.manager_id == managers[victim_pid]
        assert index in started_on(tmp_path, victim_pid)
    assert len(lost_tasks) <= 1  # prefetch=0: the victim held at most one task
    if retries:
        assert not lost_tasks
    survivor_pid = next(pid for pid in managers if pid != victim_pid)
    assert any(value[1] == survivor_pid for value in outcomes.values() if not isinstance(value, ManagerLost))

    wait_gone(victim_workers, "the killed manager's workers")

    def replaced() -> bool:
        ids = [m["manager_id"] for m in endpoint.status().managers]
        return len(ids) == 2 and managers[victim_pid] not in ids

    poll_until(replaced, "the lost manager to be forgotten and replaced")
    assert [f.result(TIMEOUT) for f in [endpoint.submit(fns.square, x) for x in range(10)]] == [
        ("square", x, x * x) for x in range(10)]


def test_manager_killed_tasks_it_never_handed_out_run_on_its_replacement(make_endpoint, tmp_path) -> None:
    """DESIGN: a lost manager's prefetched tasks (never handed to a worker) go back to the
    queue; the task its worker was running, with no retries left, fails with ``ManagerLost``."""
    endpoint = make_endpoint(workers=1, managers=1, prefetch=3, **LOSS_HEARTBEATS)
    [manager] = endpoint.wait_for_workers(timeout=TIMEOUT).managers
    marker = tmp_path / "pid"
    # a task with a walltime runs alone: the others wait in the manager, not at the worker
    running = endpoint.submit_task(fns.record_pid_unless_retried, (str(marker), TIMEOUT), retries=0,
                                   walltime=10 * TIMEOUT)
    waiting = [endpoint.submit(fns.square, x) for x in range(3)]
    poll_until(lambda: read_pid(marker), "the first task to start")
    poll_until(lambda: endpoint.status().queued_tasks == 0, "the others to be prefetched")

    psutil.Process(manager["pid"]).send_signal(signal.SIGKILL)

    with pytest.raises(ManagerLost) as lost:  # never "retried": it began, and had no retries left
        running.result(TIMEOUT)
    assert lost.value.manager_id == manager["manager_id"]
    assert [future.result(TIMEOUT) for future in waiting] == [("square", x, x * x) for x in range(3)]


def runs_of(directory, indices) -> dict[int, int]:
    """How many times each task of ``log_manager_then_*`` began."""
    return {i: len((directory / str(i)).read_text().split()) if (directory / str(i)).exists() else 0
            for i in indices}


def test_manager_killed_no_task_a_worker_began_runs_again_without_retries(make_endpoint, tmp_path) -> None:
    """Issue 12, item 14: a worker runs ahead of the results its manager has read (the quick
    task's result waits in the worker while the next one runs), so the manager had not said
    that the slow task began. Killed then, no task with ``retries=0`` may run twice: each
    one ends with its result or ``ManagerLost``."""
    endpoint = make_endpoint(workers=1, managers=1, prefetch=4, **LOSS_HEARTBEATS)
    [manager] = endpoint.wait_for_workers(timeout=TIMEOUT).managers
    gate = tmp_path / "gate"
    log = tmp_path / "runs"
    log.mkdir()
    assert endpoint.submit(fns.square, 2).result(TIMEOUT) == ("square", 2, 4)  # the module is imported
    endpoint.hold_manager(manager["manager_id"])
    futures = [endpoint.submit_task(fns.log_manager_then_sleep, (str(log), 0, 0), retries=0),
               *[endpoint.submit_task(fns.log_manager_then_wait, (str(log), i, str(gate)), retries=0)
                 for i in (1, 2, 3)]]
    poll_until(lambda: endpoint.status().queued_tasks == 4, "the tasks to wait at the interchange")
    endpoint.release_manager(manager["manager_id"])  # all four go out in one batch, to one worker
    poll_until(lambda: runs_of(log, [1])[1], "the second task to begin")

    psutil.Process(manager["pid"]).send_signal(signal.SIGKILL)
    gate.touch()

    outcomes = {}
    for index, future in enumerate(futures):
        try:
            outcomes[index] = future.result(TIMEOUT)
        except ManagerLost as lost:
            outcomes[index] = lost
    assert isinstance(outcomes[1], ManagerLost)
    assert all(runs <= 1 for runs in runs_of(log, range(4)).values()), runs_of(log, range(4))
    for index, outcome in outcomes.items():
        assert isinstance(outcome, ManagerLost) or outcome[0] == index


def test_interchange_killed_fails_pending_futures_and_leaves_no_orphans(make_endpoint, tmp_path) -> None:
    endpoint = make_endpoint(workers=2, **LOSS_HEARTBEATS)
    endpoint.wait_for_workers(timeout=TIMEOUT)
    processes = descendants()
    assert len(processes) == 4  # interchange, manager, two workers
    marker = tmp_path / "pid"
    running = endpoint.submit(fns.record_pid_then_sleep, str(marker), TIMEOUT)
    queued = [endpoint.submit(fns.sleep_then_return, TIMEOUT, x) for x in range(5)]
    poll_until(lambda: marker.exists(), "the task to start")

    os.kill(endpoint._process.pid, signal.SIGKILL)

    for future in [running, *queued]:
        with pytest.raises(EndpointError):
            future.result(TIMEOUT)
    wait_gone(processes, "the interchange's managers and workers")
    with pytest.raises(EndpointShutdown):
        endpoint.submit(fns.square, 1)
    with pytest.raises(EndpointError):
        endpoint.status()


def test_a_manager_elsewhere_stops_when_its_interchange_s_connection_closes(make_endpoint, tmp_path) -> None:
    """Issue 12, item 14: a manager that is not the interchange's child (a batch job's, on
    another node) gets no parent-death signal. When the interchange dies its connection
    closes: the manager kills its workers and exits then, long before ``heartbeat_threshold``,
    and none of the tasks it had prefetched ever begins."""
    endpoint = make_endpoint(workers=1, managers=0, heartbeat_period=0.2, heartbeat_threshold=10 * TIMEOUT)
    address = poll_until(lambda: endpoint.manager_address, "the interchange to start")
    config = endpoint.config.manager_config("elsewhere-1", address)
    manager = subprocess.Popen([sys.executable, "-m", "manager", "--config", config.to_json()],
                               env=child_environment(), stdin=subprocess.DEVNULL)
    try:
        poll_until(lambda: endpoint.status().managers, "the manager to register")
        workers = worker_processes(manager.pid)
        log, gate = tmp_path / "runs", tmp_path / "gate"
        log.mkdir()
        futures = [endpoint.submit_task(fns.log_manager_then_wait, (str(log), i, str(gate))) for i in range(4)]
        poll_until(lambda: runs_of(log, [0])[0], "the first task to begin")

        os.kill(endpoint._process.pid, signal.SIGKILL)
        manager.wait(TIMEOUT)
        gate.touch()
        wait_gone(workers, "the manager's workers")
        assert runs_of(log, range(4)) == {0: 1, 1: 0, 2: 0, 3: 0}
        for future in futures:
            with pytest.raises(EndpointError):
                future.result(TIMEOUT)
    finally:
        manager.kill()
        manager.wait()


def test_frozen_interchange_managers_exit_and_pending_futures_fail(make_endpoint, tmp_path) -> None:
    """SIGSTOP, unlike SIGKILL, sends no parent-death signal: only heartbeats can tell."""
    endpoint = make_endpoint(workers=1, **LOSS_HEARTBEATS)
    endpoint.wait_for_workers(timeout=TIMEOUT)
    interchange = psutil.Process(endpoint._process.pid)
    below = descendants(interchange.pid)
    marker = tmp_path / "pid"
    running = endpoint.submit(fns.record_pid_then_sleep, str(marker), TIMEOUT)
    poll_until(lambda: marker.exists(), "the task to start")

    interchange.send_signal(signal.SIGSTOP)
    try:
        wait_gone(below, "managers and workers of the frozen interchange")
        with pytest.raises(EndpointError):
            running.result(TIMEOUT)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):  # the endpoint may have ended it already
            interchange.send_signal(signal.SIGKILL)


CLIENT_SCRIPT = textwrap.dedent("""
    import json, sys
    import psutil
    from fabric import Endpoint
    endpoint = Endpoint(workers=2, heartbeat_period=0.2, heartbeat_threshold=1.0)
    assert endpoint.submit(pow, 3, 2).result(30) == 9
    endpoint.wait_for_workers(timeout=30)
    print(json.dumps([p.pid for p in psutil.Process().children(recursive=True)]), flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)  # no shutdown(): the endpoint must still not outlive this process
    sys.stdin.read()
""")


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_no_endpoint_process_outlives_the_client(ending) -> None:
    client = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, ending], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        line = client.stdout.readline()
        processes = [psutil.Process(pid) for pid in json.loads(line)]
        assert len(living(processes)) == 4  # interchange, manager, two workers
        if ending == "sigkill":
            client.kill()
        assert client.wait(TIMEOUT) == (0 if ending == "exit" else -signal.SIGKILL)
        wait_gone(processes, f"the endpoint of a client that ended by {ending}")
    finally:
        client.kill()
        client.wait(TIMEOUT)
        client.stdout.close()
        client.stdin.close()


def test_manager_terminated_says_goodbye_and_its_queued_tasks_run_elsewhere(make_endpoint, tmp_path) -> None:
    """SIGTERM (a batch job ending, a provider cancelling a block) at any moment: the manager
    tells the interchange it leaves, stops its workers and exits; tasks it never started run
    on the replacement, and no worker is left behind."""
    endpoint = make_endpoint(workers=1, managers=1, prefetch=3, **LOSS_HEARTBEATS)
    [manager] = endpoint.wait_for_workers(timeout=TIMEOUT).managers
    process = psutil.Process(manager["pid"])
    workers = process.children()
    marker = tmp_path / "pid"
    endpoint.submit_task(fns.record_pid_unless_retried, (str(marker), TIMEOUT), retries=0)
    waiting = [endpoint.submit(fns.square, x) for x in range(3)]
    poll_until(lambda: read_pid(marker), "the first task to start")

    process.send_signal(signal.SIGTERM)

    process.wait(TIMEOUT)
    wait_gone(workers, "its workers")
    assert [future.result(TIMEOUT) for future in waiting] == [("square", x, x * x) for x in range(3)]
