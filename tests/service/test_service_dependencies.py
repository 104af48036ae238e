"""Dependencies in the store (a real SQLite file, no sockets): tasks wait for their inputs,
are released with their inputs' results in the transaction that commits them, and fail with
``DependencyFailed`` (transitively) when an input failed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from fabric.dependencies import TaskRef, collect_inputs
from fabric.errors import DependencyFailed, TaskError, WorkerLost
from fabric.protocol import RESULT_OK, task_error_result
from fabric.serialize import deserialize, serialize, serialize_arguments
from service.store import WAITING, NewTasks, SQLiteStore
from service.store.dependencies import DependencyNotFound
from service.store.schema import SCHEMA_VERSION


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


def batch(endpoint: str, payloads: list[bytes]) -> NewTasks:
    return NewTasks(endpoint_id=endpoint, function_ids=["f"] * len(payloads), payloads=payloads)


def taking(value: object) -> tuple[bytes, list[str]]:
    """Serialized arguments ``(value,)`` and the inputs they refer to (as the SDK makes them)."""
    with collect_inputs() as inputs:
        payload = serialize_arguments((value,), {})
    return payload, inputs


def run(store: SQLiteStore, endpoint: str, results: dict[str, object]) -> None:
    """Dispatch the endpoint's waiting tasks and commit these results (a value, or a task error)."""
    store.take_waiting(endpoint, 100, time.time())
    store.commit_results(endpoint, [
        task_error_result(task_id, value) + (f"{type(value).__name__}: {value}",) if isinstance(value, TaskError)
        else (task_id, RESULT_OK, serialize(value), None) for task_id, value in results.items()], time.time())


def test_a_task_waits_for_its_inputs_and_gets_their_results(store: SQLiteStore) -> None:
    _, (first, second) = store.add_tasks("alice", batch("near", [b"a", b"b"]), WAITING) or ("", [])
    payload, inputs = taking({"both": [TaskRef(first), (TaskRef(second),)]})
    assert inputs == [first, second]
    _, [dependent], released = store.add_dependent_tasks("alice", batch("gpu", [payload]), [inputs]) or ("", [], 0)
    assert not released and store.get_task("alice", dependent).state == "waiting-for-dependencies"
    assert store.take_waiting("gpu", 10, time.time()) == []
    run(store, "near", {first: 1})
    assert store.get_task("alice", dependent).state == "waiting-for-dependencies"
    run(store, "near", {second: [2, 3]})
    [sent] = store.take_waiting("gpu", 10, time.time())
    assert sent.task_id == dependent
    assert sent.payload[:1] == b"\x10"  # the inputs' results ride along, still serialized
    args, kwargs = deserialize(sent.payload)  # what the worker does
    assert args == ({"both": [1, ([2, 3],)]},) and kwargs == {}


def test_an_input_that_finished_already_releases_at_submit(store: SQLiteStore) -> None:
    _, [first] = store.add_tasks("alice", batch("near", [b"a"]), WAITING) or ("", [])
    run(store, "near", {first: "x"})
    payload, inputs = taking(TaskRef(first))
    _, [dependent], released = store.add_dependent_tasks("alice", batch("gpu", [payload]), [inputs]) or ("", [], 0)
    assert released == {"gpu"} and store.get_task("alice", dependent).state == WAITING
    assert deserialize(store.take_waiting("gpu", 10, time.time())[0].payload) == (("x",), {})


def test_a_failed_input_fails_its_dependents_transitively(store: SQLiteStore) -> None:
    group, [first] = store.add_tasks("alice", batch("near", [b"a"]), WAITING) or ("", [])
    payload, inputs = taking(TaskRef(first))
    _, [second], _ = store.add_dependent_tasks("alice", batch("gpu", [payload]), [inputs]) or ("", [], 0)
    payload, inputs = taking([TaskRef(second)])
    _, [third], _ = store.add_dependent_tasks("alice", batch("near", [payload]), [inputs]) or ("", [], 0)
    run(store, "near", {first: WorkerLost(task_id=first, worker_id="w", hostname="h", exit_code=-9)})
    for task_id, input_id in ((second, first), (third, second)):
        record = store.get_task("alice", task_id)
        assert record.state == "failed" and record.error is not None and input_id in record.error
        error = TaskError.from_wire(msgpack.unpackb(record.result))
        assert isinstance(error, DependencyFailed) and error.input_id == input_id and error.task_id == task_id
    assert store.take_waiting("gpu", 10, time.time()) == []
    for group_id in {store.get_task("alice", t).task_group_id for t in (first, second, third)}:
        counts = store.group_counts(group_id)
        assert counts is not None and counts.pending == 0 and counts.running == 0


def test_an_input_of_another_user_or_unknown_is_refused_and_nothing_stored(store: SQLiteStore) -> None:
    _, [bobs] = store.add_tasks("bob", batch("near", [b"a"]), WAITING) or ("", [])
    for input_id in (bobs, "no-such-task"):
        payload, inputs = taking(TaskRef(input_id))
        with pytest.raises(DependencyNotFound):
            store.add_dependent_tasks("alice", batch("gpu", [payload]), [inputs])
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT count(*) FROM tasks WHERE owner = 'alice'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM task_inputs").fetchone()[0] == 0


def test_a_version_4_store_gains_the_dependency_memo_and_trigger_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    for table in ("task_inputs", "memo", "memo_pending", "triggers"):
        db.execute(f"DROP TABLE {table}")
    db.execute("ALTER TABLE tasks DROP COLUMN memo_hit")
    db.execute("ALTER TABLE task_groups DROP COLUMN memo_hits")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    reopened = SQLiteStore(path)
    try:
        _, [first] = reopened.add_tasks("alice", batch("near", [b"a"]), WAITING) or ("", [])
        payload, inputs = taking(TaskRef(first))
        assert reopened.add_dependent_tasks("alice", batch("gpu", [payload]), [inputs]) is not None
        assert reopened.add_memoized_tasks("alice", batch("gpu", [b"x"]), WAITING, 60.0) is not None
        assert reopened.get_task("alice", first).memo_hit == 0
    finally:
        reopened.close()
    assert sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION)


def test_cancelling_a_group_cancels_its_waiting_tasks_and_fails_their_dependents(store: SQLiteStore) -> None:
    group, [first] = store.add_tasks("alice", batch("near", [b"a"]), WAITING) or ("", [])
    payload, inputs = taking(TaskRef(first))
    waiting = NewTasks(endpoint_id="gpu", function_ids=["f"], payloads=[payload], task_group_id=group)
    _, [second], _ = store.add_dependent_tasks("alice", waiting, [inputs]) or ("", [], 0)
    payload, inputs = taking(TaskRef(second))
    other, [third], _ = store.add_dependent_tasks("alice", batch("near", [payload]), [inputs]) or ("", [], 0)
    assert store.cancel_group(group, time.time()).cancelled == 2
    assert "TaskCancelled" in (store.get_task("alice", second).error or "")
    record = store.get_task("alice", third)
    assert record.state == "failed" and "DependencyFailed" in (record.error or "")
    assert store.retry_group(other, lambda endpoint: True, time.time()).retried == 0  # nothing to run it with
    assert store.get_task("alice", third).state == "failed"
    assert store.take_waiting("gpu", 10, time.time()) == []
