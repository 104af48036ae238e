"""The store's whole-group operations and purging, on a real SQLite file: cancel, retry,
acknowledged and expired results, empty groups, counters, migration, query plans."""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from fabric.errors import TaskCancelled, TaskError
from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR, RESULT_TASK_ERROR, task_error_result
from service.forwarder import error_text
from service.store import (DISPATCHED, FAILED, RECEIVED, RUNNING, SUCCESS, WAITING, GroupCounts, NewTasks,
                           SQLiteStore)
from service.store import purge as purging
from service.store import task_groups
from service.store.schema import CANCELLED, IN_UNFINISHED, ROUTING_VERSION, SCHEMA_VERSION

TTL = 1000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "fabric.db")
    yield store
    store.close()


def add(store: SQLiteStore, count: int, group: str | None = None, state: str = RECEIVED,
        endpoint: str = "e") -> tuple[str, list[str]]:
    added = store.add_tasks("a", NewTasks(endpoint_id=endpoint, function_ids=["f"] * count,
                                          payloads=[b"args%d" % i for i in range(count)], task_group_id=group), state)
    assert added is not None
    return added


def ok(task_id: str) -> tuple[str, int, bytes, None]:
    return task_id, RESULT_OK, b"value", None


def raised(task_id: str) -> tuple[str, int, bytes, str | None]:
    payload = msgpack.packb({"remote_type": "ValueError", "message": "bad", "traceback": ""})
    return task_id, RESULT_REMOTE_ERROR, payload, error_text(RESULT_REMOTE_ERROR, payload)


def cancelled_at_endpoint(task_id: str) -> tuple[str, int, bytes, str | None]:
    _, kind, payload = task_error_result(task_id, TaskCancelled(task_id=task_id))
    return task_id, kind, payload, error_text(kind, payload)


def finish(store: SQLiteStore, results: list[tuple[str, int, bytes, str | None]], now: float | None = None,
           endpoint: str = "e") -> None:
    store.take_waiting(endpoint, 100_000, now=time.time())
    outcome = store.commit_results(endpoint, results, now or time.time())
    assert len(outcome.committed) == len(results)


def states(store: SQLiteStore, ids: list[str]) -> list[str | None]:
    records = [store.get_task("a", i) for i in ids]
    return [r.state if r is not None else None for r in records]


def check_counters(store: SQLiteStore, group: str) -> GroupCounts:
    """The group's counters agree with its rows (those purged counted as purged)."""
    db = sqlite3.connect(store.path)
    live = Counter(state for (state,) in db.execute("SELECT state FROM tasks WHERE task_group_id = ?", (group,)))
    purged, purged_failed = db.execute("SELECT purged_count, purged_failed FROM task_groups WHERE id = ?",
                                       (group,)).fetchone()
    db.close()
    counts = store.group_counts(group)
    assert counts is not None
    assert counts.tasks == counts.success + counts.failed + counts.pending == sum(live.values()) + purged
    assert (counts.waiting, counts.running) == (live[RECEIVED] + live[WAITING], live[DISPATCHED] + live[RUNNING])
    assert (live[SUCCESS], live[FAILED]) == (counts.success - (purged - purged_failed), counts.failed - purged_failed)
    return counts


def test_cancel_fails_unsent_tasks_with_results_and_names_dispatched_ones(store: SQLiteStore) -> None:
    group, ids = add(store, 6)
    store.take_waiting("e", 2, now=1.0)
    store.mark_running("e", [ids[0]], now=2.0)
    outcome = store.cancel_group(group, now=3.0)
    assert outcome.cancelled == 4 and outcome.dispatched == {"e": [ids[1]]}  # ids[0] runs on
    page = store.results_after(group, 0, 100)
    assert page.task_ids == ids[2:] and set(page.kinds) == {RESULT_TASK_ERROR} and page.cursor == 4
    error = TaskError.from_wire(msgpack.unpackb(page.payloads[0]))
    assert isinstance(error, TaskCancelled) and error.task_id == ids[2]
    record = store.get_task("a", ids[2])
    assert record is not None and record.state == FAILED and (record.error or "").startswith("TaskCancelled:")
    assert check_counters(store, group) == GroupCounts(tasks=6, success=0, failed=4, pending=2, waiting=0,
                                                       running=2, cancelled=4)
    again = store.cancel_group(group, now=4.0)
    assert again.cancelled == 0 and again.dispatched == {"e": [ids[1]]}  # idempotent
    store.commit_results("e", [cancelled_at_endpoint(ids[1]), ok(ids[0])], now=5.0)  # the endpoint dropped it
    assert check_counters(store, group) == GroupCounts(tasks=6, success=1, failed=5, pending=0, waiting=0,
                                                       running=0, cancelled=5)
    assert store.cancel_group("no such group", now=6.0).cancelled == 0


def test_cancel_and_retry_walk_big_groups_in_chunks(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_groups, "WALK_CHUNK", 7)
    group, ids = add(store, 30, state=WAITING)
    add(store, 5)  # another group on the same endpoint: untouched
    assert store.cancel_group(group, now=1.0).cancelled == 30
    assert store.results_after(group, 0, 100).task_ids == ids  # seqs in submission order
    group, ids = add(store, 30)
    finish(store, [raised(i) for i in ids])
    assert store.retry_group(group, lambda endpoint: True, now=2.0).retried == 30
    assert states(store, ids) == [RECEIVED] * 30


def test_retry_runs_failed_tasks_again_with_their_arguments(store: SQLiteStore) -> None:
    group, ids = add(store, 5)
    finish(store, [raised(ids[0]), ok(ids[1]), cancelled_at_endpoint(ids[2]), raised(ids[3])])
    outcome = store.retry_group(group, lambda endpoint: False, now=1.0)
    assert outcome.retried == 2 and outcome.endpoints == {"e"}
    assert states(store, ids) == [WAITING, SUCCESS, FAILED, WAITING, DISPATCHED]
    record = store.get_task("a", ids[0])
    assert record is not None and (record.result, record.error, record.seq, record.completed) == (None,) * 4
    assert check_counters(store, group) == GroupCounts(tasks=5, success=1, failed=1, pending=3, waiting=2,
                                                       running=1, cancelled=1)
    assert store.results_after(group, 0, 100).task_ids == [ids[1], ids[2]]  # the old results are gone
    assert store.retry_group(group, lambda endpoint: True, now=2.0).retried == 0  # nothing failed now

    again = store.take_waiting("e", 10, now=3.0)
    assert [(t.task_id, bytes(t.payload)) for t in again] == [(ids[0], b"args0"), (ids[3], b"args3")]
    store.commit_results("e", [ok(ids[3]), ok(ids[0]), ok(ids[4])], now=4.0)
    page = store.results_after(group, 4, 100)  # a client's cursor from before the retry sees them
    assert page.task_ids == [ids[0], ids[3], ids[4]] and page.cursor == 7 and page.pending == 0
    assert check_counters(store, group).success == 4


def test_only_failed_tasks_keep_their_arguments(store: SQLiteStore) -> None:
    group, ids = add(store, 4)
    finish(store, [ok(ids[0]), raised(ids[1]), cancelled_at_endpoint(ids[2])])
    store.cancel_group(group, now=1.0)  # ids[3] was dispatched: asked, not cancelled here
    db = sqlite3.connect(store.path)
    kept = dict(db.execute("SELECT id, args IS NOT NULL FROM tasks").fetchall())
    db.close()
    assert kept == {ids[0]: 0, ids[1]: 1, ids[2]: 0, ids[3]: 1}


def test_acknowledged_results_are_purged_and_failed_ones_kept(store: SQLiteStore) -> None:
    group, ids = add(store, 10)
    finish(store, [ok(i) for i in ids[:3]] + [raised(ids[3])] + [ok(i) for i in ids[4:8]])  # seqs 1..8
    store.cancel_group(group, now=time.time())  # nothing unsent: the last 2 are dispatched
    store.acknowledge(group, 2)
    store.acknowledge(group, 5)
    store.acknowledge(group, 4)  # never backwards
    before = store.group_counts(group)
    outcome = store.purge(time.time(), TTL)
    assert (outcome.acknowledged, outcome.expired, outcome.task_groups) == (4, 0, 0)
    assert states(store, ids[:6]) == [None, None, None, FAILED, None, SUCCESS]
    assert store.get_task("a", ids[0]) is None  # the API answers 404
    assert store.group_counts(group) == before  # purging changes no count
    check_counters(store, group)
    assert store.purge(time.time(), TTL).acknowledged == 0
    store.acknowledge(group, 1_000)  # past the last seq: up to the last seq only
    assert store.purge(time.time(), TTL).acknowledged == 3
    finish(store, [ok(ids[8]), ok(ids[9])])
    assert store.results_after(group, 8, 10).task_ids == ids[8:]  # later results are kept until acknowledged
    assert store.retry_group(group, lambda endpoint: True, now=time.time()).retried == 1  # the kept failure
    check_counters(store, group)


def test_results_past_their_time_to_live_go_then_the_idle_empty_group(store: SQLiteStore) -> None:
    start = time.time()
    group, ids = add(store, 5)
    other, _ = add(store, 1)
    finish(store, [ok(ids[0]), raised(ids[1])], now=start + 10)
    finish(store, [ok(ids[2])], now=start + 20)
    assert store.purge(start + 10 + TTL, TTL).expired == 0  # not older than the time to live yet
    assert store.purge(start + 15 + TTL, TTL).expired == 2  # the first two, failed or not
    assert states(store, ids) == [None, None, SUCCESS, DISPATCHED, DISPATCHED]
    assert store.purge(start + 25 + TTL, TTL).expired == 1
    assert store.purge(start + 3 * TTL, TTL).task_groups == 0  # two tasks are still running
    store.commit_results("e", [ok(ids[3]), ok(ids[4])], start + 30)
    outcome = store.purge(start + 31 + TTL, TTL)
    assert (outcome.expired, outcome.task_groups) == (2, 1)  # empty, and idle for the time to live
    assert store.group_counts(group) is None and store.task_group_owner(group) is None
    assert store.group_counts(other) is not None


def test_acknowledged_purge_leaves_an_empty_group_until_it_is_idle(store: SQLiteStore) -> None:
    group, ids = add(store, 3)
    finish(store, [ok(i) for i in ids])
    store.acknowledge(group, 3)
    assert store.purge(time.time(), TTL).acknowledged == 3
    assert store.group_counts(group) == GroupCounts(tasks=3, success=3, failed=0, pending=0)
    more, more_ids = add(store, 2, group=group)  # the group and its cursor go on
    assert more == group
    finish(store, [ok(i) for i in more_ids])
    assert store.results_after(group, 3, 10).task_ids == more_ids


def test_purge_is_many_short_transactions(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(purging, "ROWS_PER_TRANSACTION", 7)
    group, ids = add(store, 50)
    finish(store, [ok(i) for i in ids])
    store.acknowledge(group, 50)
    first = store.purge(time.time(), TTL, budget=0.0)  # out of time at once: one transaction
    assert first.acknowledged == 7 and first.more
    rest = store.purge(time.time(), TTL, budget=60.0)
    assert rest.acknowledged == 43 and not rest.more
    groups = [add(store, 3)[0] for _ in range(5)]
    finish(store, [ok(i) for i in store_ids(store, groups)], now=time.time() - 2 * TTL)
    assert store.purge(time.time(), TTL, budget=60.0).expired == 15
    check_counters(store, groups[0])


def store_ids(store: SQLiteStore, groups: list[str]) -> list[str]:
    return [i for g in groups for i in store.group_task_ids(g, 0, 100)[0]]


def test_counters_agree_with_rows_whatever_happens(store: SQLiteStore) -> None:
    rng = random.Random(7)
    group, _ = add(store, 20)
    for _ in range(300):
        action = rng.choice(["add", "take", "run", "finish", "cancel", "retry", "ack", "purge"])
        unfinished = [t for t in store_ids(store, [group]) if states(store, [t])[0] in (DISPATCHED, RUNNING)]
        if action == "add":
            add(store, rng.randint(1, 5), group=group, state=rng.choice([RECEIVED, WAITING]))
        elif action == "take":
            store.take_waiting("e", rng.randint(1, 6), now=time.time())
        elif action == "run" and unfinished:
            store.mark_running("e", rng.sample(unfinished, min(3, len(unfinished))), now=time.time())
        elif action == "finish" and unfinished:
            chosen = rng.sample(unfinished, min(4, len(unfinished)))
            store.commit_results("e", [rng.choice([ok, raised, cancelled_at_endpoint])(t) for t in chosen],
                                 time.time() - rng.choice([0, 2 * TTL]))
        elif action == "cancel" and rng.random() < 0.2:
            store.cancel_group(group, time.time())
        elif action == "retry":
            store.retry_group(group, lambda endpoint: rng.random() < 0.5, time.time())
        elif action == "ack":
            store.acknowledge(group, rng.randint(0, store.results_after(group, 0, 1).pending + 400))
        elif action == "purge":
            store.purge(time.time(), TTL)
        check_counters(store, group)


def _drop_routing(path: Path) -> None:
    """Make a store of the version before routing: its tables and the tasks' route columns, gone."""
    db = sqlite3.connect(path)
    for table in ("endpoint_groups", "endpoint_reports", "routes", "placements"):
        db.execute(f"DROP TABLE {table}")
    for column in ("route_id", "route_reason"):
        db.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(ROUTING_VERSION - 1),))
    db.commit()
    db.close()


def _drop_version_4(path: Path, secret_key: str = "") -> None:
    """Make a version 3 store: endpoints' secret keys (all ``secret_key``) back, tokens' names gone."""
    _drop_routing(path)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE endpoints ADD COLUMN secret_key TEXT NOT NULL DEFAULT ''")
    db.execute("UPDATE endpoints SET secret_key = ?", (secret_key,))
    db.execute("ALTER TABLE tokens DROP COLUMN name")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def _drop_version_3(path: Path) -> None:
    """Make a version 2 store: the sharing and identity tables and the endpoints' allow-list column, gone."""
    _drop_version_4(path)
    db = sqlite3.connect(path)
    for table in ("grants", "group_members", "groups", "identities"):
        db.execute(f"DROP TABLE {table}")
    db.execute("ALTER TABLE endpoints DROP COLUMN allowed_functions")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def _drop_version_2(path: Path) -> None:
    """Make a version 1 store: what versions 2 and 3 added, gone."""
    _drop_version_3(path)
    db = sqlite3.connect(path)
    for index in ("task_groups_acked", "task_groups_expiring", "task_groups_empty", "batches_by_group"):
        db.execute(f"DROP INDEX {index}")
    for column in ("finished_count", "cancelled_count", "sent_count", "acked_seq", "purged_seq", "purged_count",
                   "purged_failed", "updated", "oldest_result"):
        db.execute(f"ALTER TABLE task_groups DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    old = SQLiteStore(tmp_path / "fabric.db")
    group, ids = add(old, 6)
    finish(old, [ok(ids[0]), raised(ids[1]), cancelled_at_endpoint(ids[2])], now=time.time() - 2 * TTL)
    old.take_waiting("e", 1, now=1.0)
    old.close()
    _drop_version_2(tmp_path / "fabric.db")
    store = SQLiteStore(tmp_path / "fabric.db")
    try:
        assert check_counters(store, group) == GroupCounts(tasks=6, success=1, failed=2, pending=3, waiting=0,
                                                           running=3, cancelled=1)
        assert store.purge(time.time(), TTL).expired == 3
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "fabric.db")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    db.close()


def test_a_version_2_store_is_migrated_and_can_share(tmp_path: Path) -> None:
    old = SQLiteStore(tmp_path / "fabric.db")
    alice, _ = old.add_user("alice")
    bob, _ = old.add_user("bob")
    endpoint, _ = old.register_endpoint(alice.user_id, "laptop", "pub")
    old.close()
    _drop_version_3(tmp_path / "fabric.db")
    store = SQLiteStore(tmp_path / "fabric.db")
    try:
        migrated = store.get_endpoint(alice.user_id, endpoint.endpoint_id)
        assert migrated is not None and migrated.allowed_functions is None and migrated.public_key == "pub"
        assert store.endpoint_access(bob.user_id, endpoint.endpoint_id) is None
        store.set_sharing("endpoint", endpoint.endpoint_id, alice.user_id, [f"user:{bob.user_id}"])
        assert store.endpoint_access(bob.user_id, endpoint.endpoint_id)[1] == "shared"  # type: ignore[index]
    finally:
        store.close()


def test_a_store_from_before_routing_is_migrated_and_routes(tmp_path: Path) -> None:
    old = SQLiteStore(tmp_path / "fabric.db")
    group, ids = add(old, 2)
    old.close()
    _drop_routing(tmp_path / "fabric.db")
    store = SQLiteStore(tmp_path / "fabric.db")
    try:
        assert store.get_task("a", ids[0]).route_id is None  # type: ignore[union-attr]
        added = store.add_routed("a", NewTasks("", ["f"], [b"a"], task_group_id=group), "g", {"policy": "x"},
                                 ["e1"])
        assert added is not None
        assert [t.task_id for t in store.take_routed(added.route_id, "e1", 5, "why", 1.0)] == added.task_ids
        assert store.placements(group) == {"e1": 1}
    finally:
        store.close()


def plan(db: sqlite3.Connection, query: str, parameters: int) -> str:
    return " | ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ("x",) * parameters))


def test_group_and_purge_queries_use_indexes(store: SQLiteStore) -> None:
    db = sqlite3.connect(store.path)
    lookups = [  # the walk of cancel and retry, the purge steps' task ranges, counters by id
        ("SELECT rowid, id, endpoint_id, state, result_kind, error, args IS NOT NULL FROM tasks "
         "WHERE task_group_id = ? AND rowid > ? ORDER BY rowid LIMIT ?", 3),
        (f"DELETE FROM tasks WHERE task_group_id = ? AND seq > ? AND seq <= ? AND (state = 'success' OR {CANCELLED}) "
         "RETURNING state", 3),
        ("SELECT rowid, seq, state, completed FROM tasks WHERE task_group_id = ? AND seq IS NOT NULL ORDER BY seq "
         "LIMIT ?", 2),
        ("UPDATE task_groups SET sent_count = sent_count + ? WHERE id = ?", 2),
        ("UPDATE task_groups SET acked_seq = min(?1, last_seq) WHERE id = ?2 AND acked_seq < min(?1, last_seq)", 2),
        ("DELETE FROM tasks WHERE rowid = ?", 1),
        ("DELETE FROM batches WHERE task_group_id = ?", 1),
        (f"SELECT created FROM tasks WHERE endpoint_id = ? AND state = 'running' AND {IN_UNFINISHED} "
         "ORDER BY rowid LIMIT 1", 1),
    ]
    for query, parameters in lookups:
        described = plan(db, query, parameters)
        assert "SCAN" not in described and "TEMP B-TREE" not in described, f"{query}: {described}"
    partial = [  # work lists: each reads only its partial index (the groups with work; unfinished tasks)
        ("SELECT id, acked_seq, purged_seq FROM task_groups WHERE acked_seq > purged_seq LIMIT ?", 1,
         "task_groups_acked"),
        ("SELECT id FROM task_groups WHERE oldest_result IS NOT NULL AND oldest_result < ? "
         "ORDER BY oldest_result LIMIT ?", 2, "task_groups_expiring"),
        ("SELECT id FROM task_groups WHERE purged_count = task_count AND updated < ? ORDER BY updated LIMIT ?", 2,
         "task_groups_empty"),
        (f"SELECT state, count(*) FROM tasks WHERE {IN_UNFINISHED} GROUP BY state", 0, "tasks_unfinished"),
    ]
    for query, parameters, index in partial:
        described = plan(db, query, parameters)
        assert f"INDEX {index}" in described, described
    db.close()


def test_task_rowids_are_never_used_twice(store: SQLiteStore) -> None:
    group, ids = add(store, 3)
    finish(store, [ok(i) for i in ids])
    store.acknowledge(group, 3)
    assert store.purge(time.time(), TTL).acknowledged == 3  # the newest tasks are gone
    batch = "0b7ba2a0-7d8e-4c6e-9d3e-1c2f3a4b5c6d"
    first = store.add_tasks("a", NewTasks(endpoint_id="e", function_ids=["f"] * 2, payloads=[b"x", b"y"],
                                          task_group_id=group, batch_id=batch), RECEIVED)
    assert first is not None
    _, cursor = store.group_task_ids(group, 0, 100)
    later, later_ids = add(store, 2, group=group)
    assert store.group_task_ids(group, cursor, 100)[0] == later_ids  # a cursor sees every later task
    again = store.add_tasks("a", NewTasks(endpoint_id="e", function_ids=["f"] * 2, payloads=[b"x", b"y"],
                                          task_group_id=group, batch_id=batch), RECEIVED)
    assert again == first  # a retried batch still names its own tasks
    db = sqlite3.connect(store.path)
    rowids = [r for (r,) in db.execute("SELECT rowid FROM tasks ORDER BY rowid")]
    db.close()
    assert rowids == [4, 5, 6, 7]


def test_a_version_3_store_loses_the_endpoints_secret_keys(tmp_path: Path) -> None:
    path = tmp_path / "fabric.db"
    old = SQLiteStore(path)
    alice, token = old.add_user("alice")
    endpoints = [old.register_endpoint(alice.user_id, f"laptop{i}", f"pub{i}")[0] for i in range(50)]
    old.close()
    secret = "S3cr3t-CurveZMQ-key-of-an-endpoint-0001"  # what a version 3 store kept for each endpoint
    _drop_version_4(path, secret_key=secret)
    assert secret.encode() in path.read_bytes()
    store = SQLiteStore(path)
    try:
        assert store.get_endpoint(alice.user_id, endpoints[7].endpoint_id) == endpoints[7]
        assert store.user_for_token(token) == alice  # tokens survive, named by their id
        files = [p for p in tmp_path.iterdir() if p.name.startswith("fabric.db")]
        assert all(secret.encode() not in p.read_bytes() for p in files), "a secret key is still in the files"
    finally:
        store.close()
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(endpoints)")]
    assert "secret_key" not in columns
