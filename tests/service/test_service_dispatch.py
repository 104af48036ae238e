"""Dispatch at submit: a batch for a connected endpoint is stored ``dispatched`` and sent
without another transaction; the store stays the source of truth (``service.events``).

Store-level tests need no sockets; the rest run a real service process with a
FakeInterchange playing the endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric.protocol import RESULT_OK, CancelTasks, ResultBatch, Task, TaskBatch
from service.store import DISPATCHED, GroupCounts, NewTasks, SQLiteStore


def batch(endpoint: str, count: int, **options: Any) -> NewTasks:
    return NewTasks(endpoint_id=endpoint, function_ids=["f"] * count, payloads=[b"%d" % i for i in range(count)],
                    **options)


def test_add_dispatched_stores_sent_tasks_and_counts_them_running(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "fabric.db")
    try:
        added = store.add_dispatched("a", batch("e", 3, retries=2, walltime=5.0, priority=1,
                                                batch_id=str(uuid.uuid4())))
        assert added is not None
        group, task_ids, tasks = added
        assert tasks == [Task(i, "f", b"%d" % n, 5.0, 2, 1) for n, i in enumerate(task_ids)]
        records = [store.get_task("a", i) for i in task_ids]
        assert {(r.state, r.dispatch_count) for r in records if r} == {(DISPATCHED, 1)}
        assert all(r is not None and r.dispatched is not None for r in records)
        assert store.group_counts(group) == GroupCounts(tasks=3, success=0, failed=0, pending=3, waiting=0,
                                                        running=3, cancelled=0)
        assert store.take_waiting("e", 10, now=1.0) == []  # nothing left to take: they are sent
        store.commit_results("e", [(i, RESULT_OK, b"ok", None) for i in task_ids], now=2.0)
        assert store.group_counts(group) == GroupCounts(tasks=3, success=3, failed=0, pending=0, waiting=0,
                                                        running=0, cancelled=0)
    finally:
        store.close()


def test_a_repeated_batch_is_not_sent_again_and_another_owner_gets_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "fabric.db")
    try:
        batch_id = str(uuid.uuid4())
        first = store.add_dispatched("a", batch("e", 2, batch_id=batch_id))
        again = store.add_dispatched("a", batch("e", 2, batch_id=batch_id))
        assert first is not None and again is not None
        assert again == (first[0], first[1], [])  # same answer, nothing to send
        assert store.add_dispatched("b", batch("e", 2, batch_id=batch_id)) is None
        assert store.add_dispatched("b", batch("e", 2, task_group_id=first[0])) is None
        counts = store.group_counts(first[0])
        assert counts is not None and (counts.tasks, counts.running) == (2, 2)
    finally:
        store.close()


def online(service: ServiceProcess, api: Api, endpoint: dict[str, Any], made: list[FakeInterchange]) -> FakeInterchange:
    fake = FakeInterchange(service.forwarder_address, endpoint)
    made.append(fake)
    fake.register()
    poll_until(lambda: fake.pump() is not None and api.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()[
        "status"] == "online", "the endpoint online")
    return fake


def submit(api: Api, endpoint: dict[str, Any], function_id: str, args: list[bytes], **extra: Any) -> dict[str, Any]:
    reply = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id, "args": args, **extra})
    assert reply.status == 201, reply
    return reply.json()  # type: ignore[no-any-return]


def counts(api: Api, group: str) -> dict[str, int]:
    return {k: v for k, v in api.get(f"/v1/task_groups/{group}").json().items() if k != "task_group_id"}


def test_batches_past_max_outstanding_wait_and_keep_their_order(start_service: Callable[..., ServiceProcess],
                                                                interchanges: list[FakeInterchange]) -> None:
    service = start_service(max_outstanding=5)
    api = Api(service.url, service.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"body")
    fake = online(service, api, endpoint, interchanges)
    group = str(uuid.uuid4())
    submitted = [submit(api, endpoint, function_id, [b"%d" % i for i in range(start, start + count)],
                     task_group_id=group)["task_ids"] for start, count in ((0, 3), (3, 4), (7, 2), (9, 1))]
    order = [task_id for ids in submitted for task_id in ids]
    # 3 at submit; 4 do not fit beside them (room for 5): they wait, and so do later ones, behind
    # them; the forwarder fills the room from the store, in order
    assert [t.task_id for t in fake.wait_for_tasks(5)] == order[:5]
    assert counts(api, group) == {"tasks": 10, "success": 0, "failed": 0, "pending": 10, "waiting": 5,
                                  "running": 5, "cancelled": 0, "memo_hits": 0}
    answered = 0
    while answered < 10:
        tasks = fake.wait_for_tasks(answered + 1)
        fake.send(ResultBatch.build([(t.task_id, RESULT_OK, b"ok") for t in tasks[answered:]]))
        answered = len(tasks)
    assert [t.task_id for t in fake.tasks()] == order  # sent in submission order, each once
    assert len(api.all_results(group, 10)) == 10
    assert counts(api, group) == {"tasks": 10, "success": 10, "failed": 0, "pending": 0, "waiting": 0,
                                  "running": 0, "cancelled": 0, "memo_hits": 0}
    later = submit(api, endpoint, function_id, [b"later"], task_group_id=group)["task_ids"]
    assert [t.task_id for t in fake.wait_for_tasks(11)][10:] == later  # the backlog is drained: at submit again


def test_a_repeated_submit_sends_nothing_twice(start_service: Callable[..., ServiceProcess],
                                               interchanges: list[FakeInterchange]) -> None:
    service = start_service()
    api = Api(service.url, service.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"body")
    fake = online(service, api, endpoint, interchanges)
    batch_id = str(uuid.uuid4())
    first = submit(api, endpoint, function_id, [b"a", b"b"], batch_id=batch_id)
    fake.wait_for_tasks(2)
    assert submit(api, endpoint, function_id, [b"a", b"b"], batch_id=batch_id) == first
    marker = submit(api, endpoint, function_id, [b"marker"])
    tasks = fake.wait_for_tasks(3)
    assert [t.task_id for t in tasks] == first["task_ids"] + marker["task_ids"]
    assert counts(api, first["task_group_id"])["running"] == 2


def test_cancel_right_after_a_submit_reaches_the_endpoint_after_the_tasks(
        start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange]) -> None:
    service = start_service()
    api = Api(service.url, service.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"body")
    fake = online(service, api, endpoint, interchanges)
    submitted = submit(api, endpoint, function_id, [b"%d" % i for i in range(50)])
    reply = api.post(f"/v1/task_groups/{submitted['task_group_id']}/cancel")
    assert reply.json() == {"cancelled": 0, "cancel_requested": 50}, reply
    poll_until(lambda: any(isinstance(m, CancelTasks) for m in fake.pump() + fake.received), "CancelTasks")
    kinds = [type(m).__name__ for m in fake.received if isinstance(m, (TaskBatch, CancelTasks))]
    assert kinds == ["TaskBatch", "CancelTasks"]


def test_tasks_stored_dispatched_but_never_sent_go_out_with_the_next_session(
        start_service: Callable[..., ServiceProcess], tmp_path: Path, interchanges: list[FakeInterchange]) -> None:
    """The service died between storing a batch ``dispatched`` and sending it: the endpoint's
    next session re-sends it, and its counts stay right."""
    data_dir = tmp_path / "service"
    first = start_service(data_dir)
    api = Api(first.url, first.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"body")
    sent = submit(api, endpoint, function_id, [b"waited"])  # offline: stored to wait
    owner = api.get("/v1/auth/whoami").json()["user_id"]
    first.kill()
    store = SQLiteStore(data_dir / "fabric.db")  # what a kill right after the commit leaves behind
    try:
        added = store.add_dispatched(owner, NewTasks(endpoint_id=endpoint["endpoint_id"],
                                                     function_ids=[function_id] * 3, payloads=[b"x", b"y", b"z"],
                                                     task_group_id=sent["task_group_id"]))
    finally:
        store.close()
    assert added is not None
    second = start_service(data_dir)
    api = Api(second.url, api.token)
    fake = online(second, api, endpoint, interchanges)
    tasks = fake.wait_for_tasks(4)
    assert sorted(t.task_id for t in tasks) == sorted(sent["task_ids"] + added[1])
    fake.send(ResultBatch.build([(t.task_id, RESULT_OK, b"done:" + bytes(t.payload)) for t in tasks]))
    results = api.all_results(sent["task_group_id"], 4)
    assert sorted(p for _, p in results.values()) == [b"done:waited", b"done:x", b"done:y", b"done:z"]
    assert counts(api, sent["task_group_id"]) == {"tasks": 4, "success": 4, "failed": 0, "pending": 0,
                                                  "waiting": 0, "running": 0, "cancelled": 0, "memo_hits": 0}
