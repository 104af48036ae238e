"""A batch sent again under its ``batch_id``: the same batch gets the first answer, another
batch under that id is refused (409), and one whose tasks were purged since is gone (410).
Real service processes and SQLite files; a FakeInterchange plays the endpoint."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric import Client
from fabric.errors import BatchGone, InvalidRequest
from fabric.protocol import RESULT_OK, ResultBatch
from service.errors import HTTPBatchConflict, HTTPBatchGone
from service.store import RECEIVED, NewTasks, SQLiteStore

SETTINGS = {"purge_interval": 0.1, "rate_limit": 0}


def batch(api_endpoint: str, function_id: str, args: list[bytes], batch_id: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint_id": api_endpoint, "function_id": function_id, "args": args, "batch_id": batch_id, **extra}


def test_a_batch_id_reused_with_other_content_is_409_and_adds_nothing(
        start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service(**SETTINGS)
    api = Api(service.url, service.add_user("reuser"))
    endpoint_id = api.register_endpoint("cluster")["endpoint_id"]
    function_id, other_function = api.register_function(b"f"), api.register_function(b"g")
    batch_id = str(uuid.uuid4())
    first = api.submit(batch(endpoint_id, function_id, [b"1", b"2", b"3"], batch_id))
    assert first.status == 201, first
    group = first.json()["task_group_id"]
    changed = [batch(endpoint_id, function_id, [b"4", b"5", b"6"], batch_id),  # was: 201 with the first ids
               batch(endpoint_id, function_id, [b"1", b"2", b"3", b"4"], batch_id),
               batch(endpoint_id, other_function, [b"1", b"2", b"3"], batch_id),
               batch(endpoint_id, function_id, [b"1", b"2", b"3"], batch_id, retries=2),
               batch(endpoint_id, function_id, [b"1", b"2", b"3"], batch_id, resource_spec={"priority": 1})]
    for body in changed:
        reply = api.submit(body)
        assert reply.status == 409 and reply.error_type() == "batch_conflict", (body, reply)
        assert batch_id in reply.json()["error"]["message"]
    again = api.submit(batch(endpoint_id, function_id, [b"1", b"2", b"3"], batch_id))
    assert again.status == 201 and again.json() == first.json(), again  # the same batch: the first answer
    assert api.get(f"/v1/task_groups/{group}").json()["tasks"] == 3
    client = Client(service.url, api.token, retry_for=0)
    with pytest.raises(InvalidRequest) as caught:
        client.submit_batch(endpoint_id, function_id, [b"x"], batch_id=batch_id)
    assert caught.value.status == 409 and caught.value.error_type == "batch_conflict"


def test_a_batch_sent_again_after_its_tasks_were_purged_is_410(
        start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange]) -> None:
    service = start_service(**SETTINGS)
    api = Api(service.url, service.add_user("replayer"))
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"f")
    fake = FakeInterchange(service.forwarder_address, endpoint)
    interchanges.append(fake)
    fake.register()
    batch_id = str(uuid.uuid4())
    first = api.submit(batch(endpoint["endpoint_id"], function_id, [b"a", b"b", b"c"], batch_id))
    assert first.status == 201, first
    group, ids = first.json()["task_group_id"], first.json()["task_ids"]
    tasks = fake.wait_for_tasks(3)
    fake.send(ResultBatch.build([(t.task_id, RESULT_OK, b"r") for t in tasks]))
    page = poll_until(lambda: (lambda page: page if len(page["task_ids"]) == 3 else None)(api.results(group, wait=1)),
                      "the three results")
    api.results(group, after=page["cursor"])  # acknowledges them: the purger deletes the tasks
    poll_until(lambda: all(api.get(f"/v1/tasks/{i}").status == 404 for i in ids), "the tasks to be purged")

    reply = api.submit(batch(endpoint["endpoint_id"], function_id, [b"a", b"b", b"c"], batch_id))
    assert reply.status == 410, reply  # was: 201 with 0 of 3 task ids
    error = reply.json()["error"]
    assert error["type"] == "batch_gone" and error["task_group_id"] == group, error
    with pytest.raises(BatchGone) as caught:
        Client(service.url, api.token, retry_for=0).submit_batch(
            endpoint["endpoint_id"], function_id, [b"a", b"b", b"c"], batch_id=batch_id)
    assert caught.value.status == 410 and group in str(caught.value)
    assert api.get(f"/v1/task_groups/{group}").json()["tasks"] == 3  # nothing was added


def test_the_store_keeps_a_digest_per_batch_and_forgets_it_with_its_group(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "fabric.db")
    try:
        batch_id = str(uuid.uuid4())

        def new(payloads: list[bytes]) -> NewTasks:
            return NewTasks(endpoint_id="e", function_ids=["f"] * len(payloads), payloads=payloads,
                            batch_id=batch_id)

        first = store.add_tasks("a", new([b"x", b"y"]), RECEIVED)
        assert first is not None and store.add_tasks("a", new([b"x", b"y"]), RECEIVED) == first
        with pytest.raises(HTTPBatchConflict):
            store.add_tasks("a", new([b"x", b"z"]), RECEIVED)
        assert store.add_tasks("b", new([b"x", b"z"]), RECEIVED) is None  # another owner's id: nothing
        db = sqlite3.connect(store.path)
        assert db.execute("SELECT count(*) FROM batch_digests").fetchone() == (1,)
        db.execute("DELETE FROM tasks WHERE id = ?", (first[1][0],))  # as the purge does
        db.commit()
        with pytest.raises(HTTPBatchGone):
            store.add_tasks("a", new([b"x", b"y"]), RECEIVED)
        db.execute("DELETE FROM batch_digests")  # a batch remembered before digests were kept
        db.commit()
        db.close()
        with pytest.raises(HTTPBatchGone):
            store.add_tasks("a", new([b"x", b"other"]), RECEIVED)  # no digest: only the purge is seen
    finally:
        store.close()
