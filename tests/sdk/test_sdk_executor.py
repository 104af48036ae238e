"""The SDK's ``Executor`` end to end: a real service process, a real endpoint process (an
interchange in service mode with its managers and workers, connected over CurveZMQ), a
real SQLite file. What a user checks: results, exactly-once execution, and that nothing is
lost when the endpoint, the service or the client is away."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.service import Api, user

from tests.support.sdk_functions import double, fail, record, unless_missing, wait_for

from fabric import (Client, Executor, NotFound, PayloadTooLarge, RemoteExecutionError, SerializationError,
                    TaskCancelled)
from fabric.serialize import serialize_arguments

def executions(path: Path) -> list[int]:
    return sorted(int(line) for line in path.read_text().split()) if path.exists() else []


def test_ten_thousand_tasks_through_the_executor(cluster: Any) -> None:
    _, client, registration = cluster.running()
    with Executor(registration["endpoint_id"], client=client) as executor:
        assert list(executor.map(double, range(10_000))) == [2 * i for i in range(10_000)]
        failing = executor.submit(fail, "on purpose")
        with pytest.raises(RemoteExecutionError) as caught:
            failing.result(TIMEOUT)
        assert caught.value.remote_type == "builtins.ValueError" and "on purpose" in caught.value.traceback
        assert failing.task_id is not None
        assert client.get_task(failing.task_id)["state"] == "failed"
        group = executor.task_group_id
    counts = client.get_task_group(group)
    assert (counts["tasks"], counts["success"], counts["failed"], counts["pending"]) == (10_001, 10_000, 1, 0)
    status = client.get_endpoint_status(registration["endpoint_id"])
    assert status["status"] == "online" and status["outstanding_tasks"] == 0


def test_tasks_wait_for_an_endpoint_that_is_down(cluster: Any, tmp_path: Path) -> None:
    _, client, registration = cluster.running(start_endpoint=False)
    log = tmp_path / "ran"
    with Executor(registration["endpoint_id"], client=client) as executor:
        futures = [executor.submit(record, str(log), i, 0) for i in range(50)]
        poll_until(lambda: all(f.task_id for f in futures), "the tasks to be accepted")
        assert client.get_endpoint_status(registration["endpoint_id"])["waiting_tasks"] == 50
        assert not any(f.done() for f in futures)
        cluster.endpoint(registration)
        assert [f.result(TIMEOUT) for f in futures] == list(range(50))
    assert executions(log) == list(range(50))


def test_service_killed_with_tasks_in_flight_every_task_completes_once(cluster: Any, tmp_path: Path) -> None:
    service, client, registration = cluster.running()
    log = tmp_path / "ran"
    port = int(service.url.rsplit(":", 1)[1])
    forwarder_port = int(service.forwarder_address.rsplit(":", 1)[1])
    with Executor(registration["endpoint_id"], client=client) as executor:
        futures = [executor.submit(record, str(log), i, 0.02) for i in range(200)]
        poll_until(lambda: 20 <= len(executions(log)) and sum(f.done() for f in futures) >= 10,
                   "some tasks to run and some results to arrive")
        service.kill()
        assert len(executions(log)) < 200, "every task ran before the kill: the test proves nothing"
        cluster.service(port=port, forwarder_port=forwarder_port)
        assert [f.result(TIMEOUT) for f in futures] == list(range(200))
    assert executions(log) == list(range(200))  # each exactly once: no task ran again after the restart


def test_a_new_client_reloads_the_results_of_one_that_exited(cluster: Any, tmp_path: Path) -> None:
    service = cluster.service()
    token = service.add_user("erin")
    client = Client(service.url, token)
    registration = client.register_endpoint("cluster")
    log = tmp_path / "ran"
    script = textwrap.dedent(f"""
        from fabric import Client, Executor
        from tests.support.sdk_functions import record
        executor = Executor({registration["endpoint_id"]!r}, client=Client({service.url!r}, {token!r}))
        futures = [executor.submit(record, {str(log)!r}, i, 0) for i in range(30)]
        executor.shutdown(wait=False)   # uploads what is queued, does not wait for results
        print(executor.task_group_id)
    """)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT,
                          env=environment)
    assert done.returncode == 0, done.stderr
    group = done.stdout.strip()
    assert client.get_task_group(group)["pending"] == 30  # the endpoint was down: nothing ran yet
    cluster.endpoint(registration)
    with Executor(registration["endpoint_id"], client=Client(service.url, token)) as executor:
        futures = executor.reload_tasks(group)
        assert [f.result(TIMEOUT) for f in futures] == list(range(30))
        assert executor.submit(double, 4).result(TIMEOUT) == 8  # later submits join the reloaded group
    assert client.get_task_group(group)["tasks"] == 31
    assert executions(log) == list(range(30))


def test_another_user_cannot_run_on_my_endpoint(cluster: Any) -> None:
    service = cluster.service()
    alice, bob = user(service, "alice"), user(service, "bob")
    registration = alice.register_endpoint("private")
    with Executor(registration["endpoint_id"], client=bob) as executor:
        with pytest.raises(NotFound):
            executor.submit(double, 1).result(TIMEOUT)
    with pytest.raises(NotFound):
        Executor(registration["endpoint_id"], client=bob).reload_tasks(str(uuid.uuid4()))


def test_bad_tasks_fail_alone(cluster: Any) -> None:
    _, client, registration = cluster.running()
    with Executor(registration["endpoint_id"], client=client) as executor:
        with pytest.raises(SerializationError):
            executor.submit(double, _Unpicklable())
        futures = [executor.submit(len, b"x" * size) for size in (1, 512 * 1024, 3)]
        done, _ = concurrent.futures.wait(futures, TIMEOUT)
        assert len(done) == 3
        assert futures[0].result() == 1 and futures[2].result() == 3
        with pytest.raises(PayloadTooLarge) as caught:
            futures[1].result()
        assert caught.value.limit == 256 * 1024


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle this")


def test_results_arrive_in_bulk_not_by_polling_each_task(cluster: Any) -> None:
    """One task's round trip through the service, and the executor's as_completed view."""
    _, client, registration = cluster.running()
    with Executor(registration["endpoint_id"], client=client) as executor:
        assert executor.submit(double, 1).result(TIMEOUT) == 2
        futures = {executor.submit(double, i): i for i in range(500)}
        seen = {futures[f]: f.result() for f in concurrent.futures.as_completed(futures, TIMEOUT)}
        assert seen == {i: 2 * i for i in range(500)}


def test_a_task_shows_its_state_as_it_moves(cluster: Any, tmp_path: Path) -> None:
    _, client, registration = cluster.running(start_endpoint=False)
    gate = tmp_path / "gate"
    with Executor(registration["endpoint_id"], client=client) as executor:
        future = executor.submit(wait_for, str(gate))
        poll_until(lambda: future.task_id, "the task to be accepted")
        assert client.get_task(future.task_id)["state"] == "waiting-for-endpoint"
        cluster.endpoint(registration)
        poll_until(lambda: client.get_task(future.task_id)["state"] == "running", "the task to be running")
        gate.touch()
        assert future.result(TIMEOUT) == str(gate)
    record = client.get_task(future.task_id)
    assert record["state"] == "success"
    assert record["created"] <= record["dispatched"] <= record["started"] <= record["completed"]


def test_map_streams_two_hundred_thousand_tasks_in_order_within_its_window(cluster: Any) -> None:
    _, client, registration = cluster.running()
    count, window = 200_000, 5_000
    with Executor(registration["endpoint_id"], client=client) as executor:
        results = executor.map(double, range(count), window=window)
        assert next(results) == 0
        submitted = client.get_task_group(executor.task_group_id)["tasks"]
        assert submitted <= window + 1, f"map submitted {submitted} tasks ahead of the caller, not a window"
        process = psutil.Process()
        base = peak = process.memory_info().rss
        for index, value in enumerate(results, start=1):
            assert value == 2 * index
            if index % 20_000 == 0:
                peak = max(peak, process.memory_info().rss)
        assert index == count - 1
    assert client.get_task_group(executor.task_group_id)["success"] == count
    assert peak - base < 64 * 2**20, f"the client grew by {(peak - base) / 2**20:.0f} MB"


def test_client_streams_a_generator_of_tasks_and_its_results(cluster: Any) -> None:
    _, client, registration = cluster.running()
    function_id = client.register_function(double)
    arguments = (serialize_arguments((i,), {}) for i in range(3_000))  # a generator, read batch by batch
    group, submitted = client.submit_many(registration["endpoint_id"], function_id, arguments, batch_tasks=1_000)
    assert submitted == 3_000 and client.get_task_group(group)["tasks"] == 3_000
    task_ids = client.get_task_group_tasks(group)
    seen = {r.task_id: r.result() for r in client.iter_results(group)}
    assert [seen[task_id] for task_id in task_ids] == [2 * i for i in range(3_000)]


def test_endpoint_killed_halfway_through_a_large_batch_every_task_completes_once(cluster: Any,
                                                                                 tmp_path: Path) -> None:
    """At-least-once execution, exactly-once completion: tasks running when the endpoint died
    may run again after it restarts, but each task has one result, and every task has it."""
    _, client, registration = cluster.running(start_endpoint=False)
    endpoint = cluster.endpoint(registration)
    log = tmp_path / "ran"
    count = 4_000
    with Executor(registration["endpoint_id"], client=client) as executor:
        futures = [executor.submit(record, str(log), i, 0.001) for i in range(count)]
        poll_until(lambda: len(executions(log)) >= count // 4, "a quarter of the tasks to run")
        endpoint.kill()
        ran_before = len(executions(log))
        assert ran_before < count, "every task ran before the kill: the test proves nothing"
        cluster.endpoint(registration)
        assert [f.result(TIMEOUT) for f in futures] == list(range(count))
    group = client.get_task_group(executor.task_group_id)
    assert (group["tasks"], group["success"], group["pending"]) == (count, count, 0)
    in_order = [int(line) for line in log.read_text().split()]
    assert set(in_order) == set(range(count))
    twice = {i for i in in_order if in_order.count(i) > 1} if len(in_order) > count else set()
    assert twice <= set(in_order[:ran_before]), "a task that had not run before the kill ran twice"


def test_cancelling_a_group_stops_its_undispatched_tasks(cluster: Any, tmp_path: Path) -> None:
    _, client, registration = cluster.running(start_endpoint=False)
    log = tmp_path / "ran"
    with Executor(registration["endpoint_id"], client=client) as executor:
        futures = [executor.submit(record, str(log), i, 0) for i in range(100)]
        poll_until(lambda: all(f.task_id for f in futures), "the tasks to be accepted")
        assert client.cancel_task_group(executor.task_group_id) == 100
        for future in futures:
            with pytest.raises(TaskCancelled):
                future.result(TIMEOUT)
        cluster.endpoint(registration)
        assert executor.submit(double, 21).result(TIMEOUT) == 42  # the endpoint runs what comes next
    counts = client.get_task_group(executor.task_group_id)
    assert (counts["cancelled"], counts["success"], counts["pending"]) == (100, 1, 0)
    assert executions(log) == []


def test_retrying_a_group_runs_only_its_failed_tasks_again(cluster: Any, tmp_path: Path) -> None:
    _, client, registration = cluster.running()
    gate = tmp_path / "gate"
    with Executor(registration["endpoint_id"], client=client) as executor:
        failing = [executor.submit(unless_missing, str(gate), i) for i in range(5)]
        passing = [executor.submit(double, i) for i in range(5)]
        for future in failing:
            with pytest.raises(RemoteExecutionError):
                future.result(TIMEOUT)
        assert [f.result(TIMEOUT) for f in passing] == [0, 2, 4, 6, 8]
        group = executor.task_group_id
    gate.touch()
    assert client.retry_task_group(group) == 5
    poll_until(lambda: client.get_task_group(group)["pending"] == 0, "the retried tasks to finish")
    assert [client.get_result(f.task_id) for f in failing] == list(range(5))
    counts = client.get_task_group(group)
    assert (counts["tasks"], counts["success"], counts["failed"]) == (10, 10, 0)


def test_twenty_executors_of_one_client_share_one_long_poll(cluster: Any) -> None:
    service = cluster.service(max_polls_per_user=2)
    client = user(service)
    registration = client.register_endpoint("laptop")
    executors = [Executor(registration["endpoint_id"], client=client) for _ in range(20)]
    try:
        futures = [executor.submit(double, i) for i, executor in enumerate(executors)]
        poll_until(lambda: all(f.task_id for f in futures), "the tasks to be accepted")
        other_process = Api(service.url, client._token)  # the same user, another client
        page = other_process.results(executors[0].task_group_id, wait=0.2)
        assert page["poll_after"] == 0, "the user's second slot was free: the 20 executors hold one"
        cluster.endpoint(registration)
        assert [f.result(TIMEOUT) for f in futures] == [2 * i for i in range(20)]
    finally:
        for executor in executors:
            executor.shutdown(wait=False, cancel_futures=True)
