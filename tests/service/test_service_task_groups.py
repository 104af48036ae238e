"""Whole task groups through a real service process: cancel, retry, results purged once
fetched or past their time to live; a FakeInterchange plays the endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

import fabric
from fabric.errors import TaskError
from fabric.protocol import (RESULT_OK, RESULT_REMOTE_ERROR, RESULT_TASK_ERROR, CancelTasks, ResultBatch, Task,
                             TaskBatch, task_error_result)

SETTINGS = {"heartbeat_period": 0.2, "heartbeat_threshold": 2.0, "purge_interval": 0.1, "max_outstanding": 3}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path_factory.mktemp("groups"), **SETTINGS)
    yield process
    assert process.stop() == 0


@pytest.fixture
def api(service: ServiceProcess) -> Api:
    return Api(service.url, service.add_user(f"user-{uuid.uuid4().hex[:6]}"))


def connected(service: ServiceProcess, api: Api, made: list[FakeInterchange]) -> tuple[FakeInterchange, str]:
    """A fake interchange for a new endpoint of ``api``'s user, online; (it, a function id)."""
    endpoint = api.register_endpoint(f"cluster-{uuid.uuid4().hex[:6]}")
    return connect(service, api, endpoint, made), api.register_function(b"function body")


def connect(service: ServiceProcess, api: Api, endpoint: dict[str, Any],
            made: list[FakeInterchange]) -> FakeInterchange:
    fake = FakeInterchange(service.forwarder_address, endpoint)
    made.append(fake)
    fake.register()
    poll_until(lambda: fake.pump() is not None and status(api, fake.endpoint_id) == "online", "the endpoint online")
    return fake


def status(api: Api, endpoint_id: str) -> str:
    return str(api.get(f"/v1/endpoints/{endpoint_id}").json()["status"])


def submit(api: Api, fake: FakeInterchange, function_id: str, args: list[bytes], **extra: Any) -> dict[str, Any]:
    reply = api.submit({"endpoint_id": fake.endpoint_id, "function_id": function_id, "args": args, **extra})
    assert reply.status == 201, reply
    return reply.json()  # type: ignore[no-any-return]


def counts(api: Api, group: str) -> dict[str, int]:
    reply = api.get(f"/v1/task_groups/{group}")
    assert reply.status == 200, reply
    return {k: v for k, v in reply.json().items() if k != "task_group_id"}


def raised(task: Task) -> tuple[Any, int, bytes]:
    return task.task_id, RESULT_REMOTE_ERROR, msgpack.packb({"remote_type": "ValueError", "message": "no"})


def test_cancel_fails_unsent_tasks_and_asks_the_endpoint_to_drop_dispatched_ones(
        service: ServiceProcess, api: Api, interchanges: list[FakeInterchange]) -> None:
    fake, function_id = connected(service, api, interchanges)
    submitted = submit(api, fake, function_id, [b"%d" % i for i in range(10)])
    group, ids = submitted["task_group_id"], submitted["task_ids"]
    dispatched = fake.wait_for_tasks(3)  # max_outstanding: the other 7 wait at the service
    assert [t.task_id for t in dispatched] == ids[:3]
    fake.send(ResultBatch(started=[ids[0]]))
    poll_until(lambda: api.get(f"/v1/tasks/{ids[0]}").json()["state"] == "running", "a running task")
    assert counts(api, group) == {"tasks": 10, "success": 0, "failed": 0, "pending": 10, "waiting": 7,
                                  "running": 3, "cancelled": 0, "memo_hits": 0}

    reply = api.post(f"/v1/task_groups/{group}/cancel")
    assert reply.status == 200 and reply.json() == {"cancelled": 7, "cancel_requested": 2}, reply
    poll_until(lambda: any(isinstance(m, CancelTasks) for m in fake.pump() + fake.received), "CancelTasks")
    asked = [m for m in fake.received if isinstance(m, CancelTasks)]
    assert [m.task_ids for m in asked] == [ids[1:3]]  # the running one is left to finish
    fake.send(ResultBatch.build([task_error_result(i, fabric.TaskCancelled(task_id=i)) for i in ids[1:3]]
                                + [(ids[0], RESULT_OK, b"done")]))  # what an interchange answers

    results = api.all_results(group, 10)
    assert results[ids[0]] == (RESULT_OK, b"done")
    for task_id in ids[1:]:
        kind, payload = results[task_id]
        error = TaskError.from_wire(msgpack.unpackb(payload))
        assert kind == RESULT_TASK_ERROR and isinstance(error, fabric.TaskCancelled) and error.task_id == task_id
    assert counts(api, group) == {"tasks": 10, "success": 1, "failed": 9, "pending": 0, "waiting": 0,
                                  "running": 0, "cancelled": 9, "memo_hits": 0}
    assert fake.pump() is not None and len(fake.tasks()) == 3  # nothing cancelled was sent after all
    again = api.post(f"/v1/task_groups/{group}/cancel")
    assert again.status == 200 and again.json() == {"cancelled": 0, "cancel_requested": 0}


def test_cancelled_tasks_of_an_offline_endpoint_are_dropped_when_it_is_back(
        service: ServiceProcess, api: Api, interchanges: list[FakeInterchange]) -> None:
    endpoint = api.register_endpoint("flaky")
    first = connect(service, api, endpoint, interchanges)
    function_id = api.register_function(b"function body")
    submitted = submit(api, first, function_id, [b"a", b"b"])
    first.wait_for_tasks(2)
    first.close()
    interchanges.remove(first)
    poll_until(lambda: status(api, endpoint["endpoint_id"]) == "offline", "the endpoint to be offline")
    reply = api.post(f"/v1/task_groups/{submitted['task_group_id']}/cancel")
    assert reply.json() == {"cancelled": 0, "cancel_requested": 2}, reply
    second = connect(service, api, endpoint, interchanges)  # the interchange may still hold them queued
    poll_until(lambda: any(isinstance(m, CancelTasks) for m in second.pump() + second.received), "CancelTasks")
    kinds = [type(m).__name__ for m in second.received if isinstance(m, (TaskBatch, CancelTasks))]
    assert kinds == ["TaskBatch", "CancelTasks"]  # after the re-sent tasks
    assert next(m for m in second.received if isinstance(m, CancelTasks)).task_ids == submitted["task_ids"]


def test_retry_runs_only_the_failed_tasks_again(service: ServiceProcess, api: Api,
                                               interchanges: list[FakeInterchange]) -> None:
    fake, function_id = connected(service, api, interchanges)
    submitted = submit(api, fake, function_id, [b"a", b"b", b"c"])
    group, ids = submitted["task_group_id"], submitted["task_ids"]
    tasks = fake.wait_for_tasks(3)
    fake.send(ResultBatch.build([raised(tasks[0]), (ids[1], RESULT_OK, b"ok"),
                                 task_error_result(ids[2], fabric.TaskCancelled(task_id=ids[2]))]))
    assert len(api.all_results(group, 3)) == 3
    assert api.results(group, after=3)["task_ids"] == []  # the client holds all three: they may be purged

    reply = api.post(f"/v1/task_groups/{group}/retry")
    assert reply.status == 200 and reply.json() == {"retried": 1}, reply  # not the cancelled one
    assert counts(api, group) == {"tasks": 3, "success": 1, "failed": 1, "pending": 1, "waiting": 0,
                                  "running": 1, "cancelled": 1, "memo_hits": 0}
    again = fake.wait_for_tasks(4)[3]
    assert (again.task_id, bytes(again.payload)) == (ids[0], b"a")  # the same task, with its arguments
    fake.send(ResultBatch.build([(ids[0], RESULT_OK, b"second time")]))
    page = api.results(group, after=3, wait=5.0)  # the old cursor goes on: a new seq
    assert (page["task_ids"], page["payloads"], page["cursor"], page["pending"]) == ([ids[0]], [b"second time"], 4, 0)
    assert counts(api, group) == {"tasks": 3, "success": 2, "failed": 1, "pending": 0, "waiting": 0,
                                  "running": 0, "cancelled": 1, "memo_hits": 0}
    assert api.post(f"/v1/task_groups/{group}/retry").json() == {"retried": 0}


def test_group_operations_are_the_owners_only(service: ServiceProcess, api: Api) -> None:
    endpoint = api.register_endpoint("mine")
    function_id = api.register_function(b"body")
    group = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                        "args": [b"x"]}).json()["task_group_id"]
    other = Api(service.url, service.add_user(f"other-{uuid.uuid4().hex[:6]}"))
    for path in (f"/v1/task_groups/{group}/cancel", f"/v1/task_groups/{group}/retry",
                 f"/v1/task_groups/{uuid.uuid4()}/cancel"):
        reply = other.post(path)
        assert reply.status == 404 and reply.error_type() == "not_found", (path, reply)
    assert counts(api, group)["pending"] == 1
    assert api.get(f"/v1/task_groups/{group}/cancel").status == 405
    paths = api.get("/v1/openapi.json").json()["paths"]
    for operation in ("cancel", "retry"):
        described = paths[f"/v1/task_groups/{{task_group_id}}/{operation}"]["post"]
        assert {"200", "401", "404", "429"} <= set(described["responses"])


def test_fetched_results_are_purged_so_the_store_stays_small(service: ServiceProcess, api: Api,
                                                            interchanges: list[FakeInterchange]) -> None:
    fake, function_id = connected(service, api, interchanges)
    database = service.data_dir / "fabric.db"
    sizes: list[int] = []
    for _ in range(4):  # 4 x 300 tasks x 8 KiB of arguments and 8 KiB of result each
        submitted = submit(api, fake, function_id, [bytes(8192)] * 300)
        group, ids = submitted["task_group_id"], submitted["task_ids"]
        answered = len(fake.tasks())
        while answered < 300 * (len(sizes) + 1):  # three at a time (max_outstanding), as an endpoint would
            tasks = fake.wait_for_tasks(answered + 1)[answered:]
            fake.send(ResultBatch.build([(t.task_id, RESULT_OK, bytes(8192)) for t in tasks]))
            answered += len(tasks)
        assert len(api.all_results(group, 300)) == 300
        assert api.results(group, after=300)["pending"] == 0  # acknowledges every result
        poll_until(lambda: api.get(f"/v1/tasks/{ids[-1]}").status == 404, "the fetched results to be purged")
        assert api.get(f"/v1/tasks/{ids[0]}").status == 404
        assert counts(api, group) == {"tasks": 300, "success": 300, "failed": 0, "pending": 0, "waiting": 0,
                                      "running": 0, "cancelled": 0, "memo_hits": 0}  # the group's counts stay
        sizes.append(database.stat().st_size)
    assert sizes[-1] < 2 * sizes[0] and sizes[-1] < 4 * 300 * 16384 / 2, sizes  # freed pages are used again


def test_results_never_fetched_expire_with_their_group(tmp_path: Path, interchanges: list[FakeInterchange]) -> None:
    service = ServiceProcess(tmp_path / "ttl", **{**SETTINGS, "result_ttl": 0.5})
    try:
        api = Api(service.url, service.add_user("forgetful"))
        fake, function_id = connected(service, api, interchanges)
        submitted = submit(api, fake, function_id, [b"a", b"b"])
        group, ids = submitted["task_group_id"], submitted["task_ids"]
        fake.send(ResultBatch.build([(t.task_id, RESULT_OK, b"r") for t in fake.wait_for_tasks(2)]))
        poll_until(lambda: api.get(f"/v1/tasks/{ids[0]}").json().get("state") == "success", "the results")
        poll_until(lambda: api.get(f"/v1/tasks/{ids[0]}").status == 404, "the results to expire")
        assert api.get(f"/v1/tasks/{ids[1]}").status == 404
        poll_until(lambda: api.get(f"/v1/task_groups/{group}").status == 404, "the empty idle group to go")
    finally:
        assert service.stop() == 0
