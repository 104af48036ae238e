"""The SQLite store on its own: no sockets, a real file per test."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR
from service.store import (_IN_UNFINISHED, DISPATCHED, FAILED, RECEIVED, RUNNING, SUCCESS, WAITING, GroupCounts,
                           NewTasks, SQLiteStore, hash_secret)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "fabric.db")
    yield store
    store.close()


def add(store: SQLiteStore, owner: str, endpoint: str, count: int, state: str = WAITING,
        group: str | None = None) -> tuple[str, list[str]]:
    added = store.add_tasks(owner, NewTasks(endpoint_id=endpoint, function_ids=["f"] * count,
                                            payloads=[b"args%d" % i for i in range(count)], task_group_id=group),
                            state)
    assert added is not None
    return added


def test_tokens_are_stored_hashed_and_checked(store: SQLiteStore) -> None:
    user, token = store.add_user("alice")
    assert store.user_for_token(token) == user
    token_id, secret = token.split(".", 1)
    assert store.user_for_token(f"{token_id}.{secret}x") is None
    assert store.user_for_token(secret) is None
    assert store.user_for_token("") is None
    raw = sqlite3.connect(store.path).execute("SELECT hash FROM tokens").fetchall()
    assert raw == [(hash_secret(secret),)]
    again, second = store.add_user("alice")
    assert again == user and second != token and store.user_for_token(token) == user


def test_functions_are_per_owner_and_content_addressed(store: SQLiteStore) -> None:
    record = store.put_function("a", "id1", "f", "doc", b"body")
    assert store.put_function("a", "id1", "f", "doc", b"body") == record  # registering again is free
    assert store.function_access("b", "id1") is None
    assert [(f.function_id, how) for f, how in store.visible_functions("a")] == [("id1", "owner")]
    assert store.delete_function("b", "id1") is False
    assert store.delete_function("a", "id1") is True
    assert store.function_access("a", "id1") is None
    assert store.function_bodies(["id1", "nope"]) == {"id1": b"body"}  # accepted tasks still get it
    store.put_function("a", "id1", "f", "doc", b"body")
    assert store.function_access("a", "id1") is not None


def test_endpoints_register_once_per_name_and_rotate_keys_only_when_asked(store: SQLiteStore) -> None:
    first, created = store.register_endpoint("a", "laptop", "pub1", allowed_functions=["f2", "f1"])
    assert first.allowed_functions == ("f1", "f2")
    looked_up, created_again = store.register_endpoint("a", "laptop", "pub2")
    assert created and not created_again and looked_up == first  # a lookup: the keys stay
    assert store.endpoint_for_key("pub1") == first.endpoint_id and store.endpoint_for_key("pub2") is None
    record, _ = store.register_endpoint("a", "laptop", "pub2", rotate_keys=True)
    assert record.endpoint_id == first.endpoint_id
    assert (record.public_key, record.allowed_functions) == ("pub2", ("f1", "f2"))
    assert store.endpoint_for_key("pub2") == record.endpoint_id and store.endpoint_for_key("pub1") is None
    cleared, _ = store.register_endpoint("a", "laptop", "pub3", allowed_functions=None)
    assert cleared.allowed_functions is None and cleared.public_key == "pub2"
    record, _ = store.register_endpoint("a", "laptop", "pub2")
    assert store.get_endpoint("b", record.endpoint_id) is None
    assert store.get_endpoint(None, record.endpoint_id) == record
    store.set_connection(record.endpoint_id, True, 5.0, "host", 42)
    store.record_status(record.endpoint_id, 2, 8, 3, 4)
    status = store.get_endpoint("a", record.endpoint_id)
    assert status is not None and (status.connected, status.hostname, status.workers) == (True, "host", 8)
    store.disconnect_all()
    assert store.get_endpoint("a", record.endpoint_id).connected is False  # type: ignore[union-attr]


def test_dispatch_results_and_dedup(store: SQLiteStore) -> None:
    group, ids = add(store, "a", "e1", 5)
    add(store, "a", "e2", 2)
    assert store.get_task("b", ids[0]) is None
    taken = store.take_waiting("e1", 3, now=1.0)
    assert [t.task_id for t in taken] == ids[:3] and taken[0].payload == b"args0"
    assert {store.get_task("a", i).state for i in ids[:3]} == {DISPATCHED}  # type: ignore[union-attr]
    store.mark_running("e1", [ids[0], ids[4], 7], now=2.0)  # only dispatched tasks start running
    assert store.get_task("a", ids[0]).state == RUNNING  # type: ignore[union-attr]
    assert store.get_task("a", ids[4]).state == WAITING  # type: ignore[union-attr]

    outcome = store.commit_results("e1", [(ids[0], RESULT_OK, b"r0", None), (ids[1], RESULT_REMOTE_ERROR, b"e", "E: x"),
                                          ("unknown", RESULT_OK, b"", None), (12, RESULT_OK, b"", None)], now=3.0)
    assert outcome.committed == ids[:2] and outcome.ignored == 2 and outcome.task_groups == {group}
    duplicate = store.commit_results("e1", [(ids[0], RESULT_OK, b"second", None)], now=4.0)
    assert duplicate.committed == [] and duplicate.ignored == 1
    foreign = store.commit_results("e2", [(ids[2], RESULT_OK, b"x", None)], now=4.0)
    assert foreign.committed == []
    first = store.get_task("a", ids[0])
    assert first is not None and (first.state, first.result, first.seq) == (SUCCESS, b"r0", 1)
    assert store.get_task("a", ids[1]).state == FAILED  # type: ignore[union-attr]

    page = store.results_after(group, 0, 10)
    assert (page.task_ids, page.kinds, page.payloads, page.cursor, page.pending) == (
        ids[:2], [RESULT_OK, RESULT_REMOTE_ERROR], [b"r0", b"e"], 2, 3)
    assert store.results_after(group, 1, 10).task_ids == [ids[1]]
    assert store.results_after(group, 2, 10).task_ids == [] and store.results_after(group, 2, 10).cursor == 2
    assert store.group_counts(group) == GroupCounts(tasks=5, success=1, failed=1, pending=3, waiting=2, running=1)
    assert store.unfinished_counts("e1") == {DISPATCHED: 1, WAITING: 2}

    resent = store.take_unfinished("e1", now=5.0)  # a reconnect: everything sent but unfinished
    assert [t.task_id for t in resent] == [ids[2]]
    rest = store.take_waiting("e1", 100, now=6.0)
    assert [t.task_id for t in rest] == ids[3:]
    assert store.unfinished_counts("e1") == {DISPATCHED: 3}


def test_result_cursor_is_per_group_and_monotonic(store: SQLiteStore) -> None:
    g1, ids1 = add(store, "a", "e", 3, RECEIVED)
    g2, ids2 = add(store, "a", "e", 2, RECEIVED)
    same, more = add(store, "a", "e", 1, RECEIVED, group=g1)
    assert same == g1
    store.take_waiting("e", 10, now=1.0)
    store.commit_results("e", [(ids2[0], RESULT_OK, b"", None), (ids1[2], RESULT_OK, b"", None)], now=2.0)
    store.commit_results("e", [(more[0], RESULT_OK, b"", None), (ids1[0], RESULT_OK, b"", None)], now=3.0)
    assert [store.get_task("a", i).seq for i in (ids1[2], ids1[0], more[0])] == [1, 2, 3]  # type: ignore[union-attr]
    assert store.results_after(g1, 0, 10).task_ids == [ids1[2], ids1[0], more[0]]
    assert store.results_after(g2, 0, 10).task_ids == [ids2[0]]
    assert store.add_tasks("b", NewTasks(endpoint_id="e", function_ids=["f"], payloads=[b""], task_group_id=g1),
                           RECEIVED) is None  # someone else's group


def test_everything_committed_survives_reopening(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "db")
    group, ids = add(first, "a", "e", 3)
    first.take_waiting("e", 1, now=1.0)
    first.commit_results("e", [(ids[0], RESULT_OK, b"done", None)], now=2.0)
    first.close()
    second = SQLiteStore(tmp_path / "db")
    assert second.results_after(group, 0, 10).payloads == [b"done"]
    assert [t.task_id for t in second.take_waiting("e", 10, now=3.0)] == ids[1:]
    second.close()


def test_wal_mode_and_every_lookup_uses_an_index(store: SQLiteStore) -> None:
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    lookups = [
        ("SELECT * FROM tokens WHERE id = ?", 1),
        ("SELECT * FROM functions WHERE owner = ? AND id = ?", 2),
        ("SELECT * FROM functions WHERE id = ?", 1),
        ("SELECT * FROM endpoints WHERE public_key = ?", 1),
        ("SELECT * FROM endpoints WHERE owner = ? AND name = ?", 2),
        ("SELECT * FROM endpoints WHERE owner = ?", 1),
        ("SELECT * FROM tasks WHERE id = ?", 1),
        (f"SELECT * FROM tasks WHERE endpoint_id = ? AND state = 'received' AND {_IN_UNFINISHED} "
         "ORDER BY rowid LIMIT 5", 1),
        (f"SELECT * FROM tasks WHERE endpoint_id = ? AND state = 'running' AND {_IN_UNFINISHED} ORDER BY rowid", 1),
        (f"SELECT count(*) FROM tasks WHERE endpoint_id = ? AND state = 'dispatched' AND {_IN_UNFINISHED}", 1),
        ("SELECT * FROM tasks WHERE task_group_id = ? AND seq > ? ORDER BY seq LIMIT 5", 2),
        ("SELECT rowid FROM tasks WHERE id IN (?, ?) AND +endpoint_id = ? AND +" + _IN_UNFINISHED, 3),
        ("UPDATE tasks SET state = 'running' WHERE id = ? AND endpoint_id = ? AND state = 'dispatched'", 2),
        ("SELECT owner FROM task_groups WHERE id = ?", 1),
    ]
    for query, params in lookups:
        plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ("x",) * params))
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, f"{query}: {plan}"
        if "WHERE id " in query:  # a lookup by task id must use the id index, whatever else it says
            assert "(id=?)" in plan, f"{query}: {plan}"
    db.close()
