"""``SQLiteStore``: the store in one SQLite file (WAL mode), safe for many threads and processes."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import operator
import os
import sqlite3
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from fabric.protocol import Task
from service.errors import StoreError
from service.records import (DISPATCHED, RECEIVED, RUNNING, UNFINISHED, UNSET, WAITING, WAITING_FOR_INPUTS,
                             CancelOutcome, CommitOutcome, EndpointRecord, FunctionRecord, GroupCounts, GroupRecord, NewTasks, PurgeOutcome,
                             ResultPage, RetryOutcome, Sharing, TaskRecord, TokenRecord, Unset, User, UserRecord)
from service.routing import Placement
from service.store import access, batches, dependencies, memo, triggers
from service.store import purge as purging
from service.store import routes
from service.store.routing_methods import RoutingMethods
from service.store import task_groups, users
from service.store.base import Store
from service.store.schema import IN_UNFINISHED as _IN_UNFINISHED
from service.store.schema import chunks as _chunks
from service.store.schema import (ROWS_PER_STATEMENT, SCHEMA_VERSION, check_integrity, create_or_migrate,
                                  make_private, next_task_rowids, row_chunks)
from service.store.schema import marks as _marks

logger = logging.getLogger(__name__)

_UNSENT = frozenset((RECEIVED, WAITING))
_ROWID_OF_ROW, _GROUP_OF_ROW = operator.itemgetter(0), operator.itemgetter(7)  # of ``rowid, {_SEND_COLUMNS}``

WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the -wal file is cut back to after a checkpoint (it never shrinks on its own)."""


_TASK_COLUMNS = ("id, owner, function_id, endpoint_id, task_group_id, state, result_kind, result, error, created, "
                 "dispatched, started, completed, retries, resource_spec, dispatch_count, seq, route_id, route_reason, "
                 "memo_hit")
_ENDPOINT_COLUMNS = ("id, owner, name, public_key, created, connected, last_heartbeat, hostname, pid, managers, "
                     "workers, interchange_queued, interchange_outstanding, allowed_functions")
_FUNCTION_COLUMNS = "id, owner, name, description, body, created"
_FUNCTION_LISTED = "id, owner, name, description, x'', created"  # without bodies
_SEND_COLUMNS = "id, function_id, args, walltime, retries, priority, task_group_id"


def _task_record(row: tuple[Any, ...]) -> TaskRecord:
    values = list(row)
    values[14] = json.loads(values[14]) if values[14] else None
    return TaskRecord(*values)


def _endpoint_record(row: tuple[Any, ...]) -> EndpointRecord:
    values = list(row)
    values[5] = bool(values[5])
    values[13] = access.decode_allowed(values[13])
    return EndpointRecord(*values)


def _function_record(row: tuple[Any, ...]) -> FunctionRecord:
    return FunctionRecord(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])


def _to_send(rows: Iterable[tuple[Any, ...]]) -> list[Task]:
    """Tasks from ``rowid, id, function_id, args, walltime, retries, priority, ...`` rows."""
    return [Task(r[1], r[2], r[3] if r[3] is not None else b"", r[4], r[5], r[6]) for r in rows]


_UUID7_HEAD = (7 << 76) | (2 << 62)  # version 7, RFC 4122 variant


@functools.lru_cache(maxsize=len(ROWS_PER_STATEMENT))
def _insert_tasks(count: int) -> str:
    """An INSERT of ``count`` tasks (one of ``ROWS_PER_STATEMENT``): the columns they share
    bound once (``?1`` to ``?13``), then rowid, id, function id and arguments of each (a
    multi-row statement costs 40% less than a statement per row)."""
    rows = ",".join(["(?,?,?,?)"] * count)
    return ("INSERT INTO tasks (rowid, id, function_id, args, owner, endpoint_id, task_group_id, state, created, "
            "retries, walltime, priority, resource_spec, dispatched, dispatch_count, route_id, route_reason) "
            "SELECT column1, column2, column3, column4, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13 "
            f"FROM (VALUES {rows})")


def new_task_ids(count: int) -> list[str]:
    """``count`` time-ordered (version 7) UUID strings, in ascending order.

    The first 48 bits are the Unix time in milliseconds, the other 74 random (one call to
    the OS's random source). Ascending ids make the store's id index grow at its end like
    the table does, instead of at a random page per task: a batch's inserts, the results
    that find their tasks by id and the purge that deletes them touch a few pages each, not
    one per task (with random ids the inserts cost half again as much, the purge three times)."""
    head = (time.time_ns() // 1_000_000) << 80 | _UUID7_HEAD
    raw = os.urandom(10 * count)
    values = sorted(head | (int.from_bytes(raw[i:i + 2], "big") & 0xFFF) << 64
                    | int.from_bytes(raw[i + 2:i + 10], "big") >> 2 for i in range(0, 10 * count, 10))
    texts = [f"{value:032x}" for value in values]
    return [f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:]}" for t in texts]


class SQLiteStore(RoutingMethods, Store):
    """The store in one SQLite file (WAL mode); one connection per thread."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL",
                 busy_timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write transaction at a time in this process
        self._closed = False
        self._acknowledged: dict[str, int] = {}  # task group -> seq, until purge() writes it
        self._acknowledged_lock = threading.Lock()
        make_private(self.path)
        with self._write() as db:
            db.execute("PRAGMA secure_delete = ON")  # a migration leaves no copy of what it drops
            try:
                found = create_or_migrate(db, self.path)
            finally:
                db.execute("PRAGMA secure_delete = OFF")
        if found < 4:  # version 4 dropped the endpoints' secret keys: no copy stays in the WAL either
            self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            logger.info("store %s migrated from schema version %d to %d", self.path, found, SCHEMA_VERSION)

    def check_integrity(self) -> None:
        """``PRAGMA quick_check`` of the whole file; ``StoreError`` naming what is damaged (a
        damaged page otherwise shows only when a request reads it: a 503 for each that does)."""
        check_integrity(self._db(), self.path)

    # -- connections and transactions ----------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                     check_same_thread=False)
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")  # a burst's WAL shrinks again
                db.execute(f"PRAGMA synchronous = {self._synchronous}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken up front, so concurrent writers queue, never deadlock).

        The threads of this process queue on ``_write_lock`` first: SQLite's own wait for a
        busy lock sleeps 1, 2, 5, 10 ms ... between tries, so a writer would often sleep on
        after the lock came free. Only other processes are left to SQLite's busy handler."""
        db = self._db()
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store write failed: {exc}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One consistent read (a snapshot across its statements)."""
        db = self._db()
        try:
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    # -- users and tokens ----------------------------------------------------------------
    def add_user(self, name: str, token_name: str | None = None) -> tuple[User, str]:
        with self._write() as db:
            user_id, _ = users.new_user(db, name)
            _, token = users.issue_token(db, user_id, token_name)
        return User(user_id, name), token

    def user_for_token(self, token: str) -> User | None:
        with self._read() as db:
            return users.user_for_token(db, token)

    def find_user(self, reference: str) -> User | None:
        with self._read() as db:
            return users.find_user(db, reference)

    def list_users(self) -> list[UserRecord]:
        with self._read() as db:
            return users.list_users(db)

    def list_tokens(self, user_id: str | None, prefix: str = "") -> list[TokenRecord]:
        with self._read() as db:
            return users.list_tokens(db, user_id, prefix)

    def revoke_token(self, token_id: str, user_id: str | None = None) -> bool:
        with self._write() as db:
            return users.revoke_token(db, token_id, user_id)

    def remove_user(self, user_id: str) -> list[str] | None:
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                return None
            return users.remove_user(db, user_id)

    def user_for_identity(self, provider: str, subject: str, username: str) -> User:
        with self._read() as db:  # the usual case: known, same username; no write lock taken
            row = db.execute("SELECT user_id, username FROM identities WHERE provider = ? AND subject = ?",
                             (provider, subject)).fetchone()
        if row is None or row[1] != username:
            with self._write() as db:
                user_id, changed = access.user_for_identity(db, provider, subject, username)
            if changed:
                logger.info("identity %s:%s (%s) is user %s", provider, subject, username, user_id)
        else:
            user_id = row[0]
        return User(user_id, username)

    # -- functions -----------------------------------------------------------------------
    def put_function(self, owner: str, function_id: str, name: str, description: str, body: bytes) -> FunctionRecord:
        now = time.time()
        with self._write() as db:
            db.execute("INSERT INTO functions (owner, id, name, description, body, created) VALUES (?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (owner, id) DO UPDATE SET deleted = 0, name = excluded.name, "
                       "description = excluded.description", (owner, function_id, name, description, body, now))
            row = db.execute(f"SELECT {_FUNCTION_COLUMNS} FROM functions WHERE owner = ? AND id = ?",
                             (owner, function_id)).fetchone()
        return _function_record(row)

    def function_access(self, user_id: str, function_id: str) -> tuple[FunctionRecord, str] | None:
        with self._read() as db:
            found = access.object_access(db, access.FUNCTION, "functions", _FUNCTION_COLUMNS, user_id, function_id,
                                         "AND o.deleted = 0")
        return (_function_record(found[0]), found[1]) if found else None

    def visible_functions(self, user_id: str) -> list[tuple[FunctionRecord, str]]:
        with self._read() as db:
            rows = access.visible(db, access.FUNCTION, "functions", _FUNCTION_LISTED, user_id, "AND o.deleted = 0")
        return [(_function_record(row), how) for row, how in rows]

    def delete_function(self, owner: str, function_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute("UPDATE functions SET deleted = 1 WHERE owner = ? AND id = ? AND deleted = 0",
                                (owner, function_id))
            access.forget_grants(db, access.FUNCTION, function_id, owner)
        return cursor.rowcount > 0

    def function_bodies(self, function_ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(dict.fromkeys(function_ids))
        bodies: dict[str, bytes] = {}
        with self._read() as db:
            for chunk in _chunks(ids):
                for function_id, body in db.execute(
                        f"SELECT id, body FROM functions WHERE id IN ({_marks(len(chunk))})", chunk):
                    bodies[function_id] = bytes(body)
        return bodies

    # -- endpoints -----------------------------------------------------------------------
    def register_endpoint(self, owner: str, name: str, public_key: str, *, rotate_keys: bool = False,
                          allowed_functions: Sequence[str] | None | Unset = UNSET) -> tuple[EndpointRecord, bool]:
        with self._write() as db:
            row = db.execute("SELECT id FROM endpoints WHERE owner = ? AND name = ?", (owner, name)).fetchone()
            created = row is None
            endpoint_id = str(uuid.uuid4()) if created else row[0]
            if created:
                db.execute("INSERT INTO endpoints (id, owner, name, public_key, created) VALUES (?, ?, ?, ?, ?)",
                           (endpoint_id, owner, name, public_key, time.time()))
            elif rotate_keys:  # the old pair can no longer connect
                db.execute("UPDATE endpoints SET public_key = ? WHERE id = ?", (public_key, endpoint_id))
            if not isinstance(allowed_functions, Unset):
                access.set_allowed(db, endpoint_id, allowed_functions)
            row = db.execute(f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
        return _endpoint_record(row), created

    def set_allowed_functions(self, endpoint_id: str, function_ids: Sequence[str] | None) -> None:
        with self._write() as db:
            access.set_allowed(db, endpoint_id, function_ids)

    def get_endpoint(self, owner: str | None, endpoint_id: str) -> EndpointRecord | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
        if row is None or (owner is not None and row[1] != owner):
            return None
        return _endpoint_record(row)

    def endpoint_access(self, user_id: str, endpoint_id: str) -> tuple[EndpointRecord, str] | None:
        with self._read() as db:
            found = access.object_access(db, access.ENDPOINT, "endpoints", _ENDPOINT_COLUMNS, user_id, endpoint_id)
        return (_endpoint_record(found[0]), found[1]) if found else None

    def visible_endpoints(self, user_id: str) -> list[tuple[EndpointRecord, str]]:
        with self._read() as db:
            rows = access.visible(db, access.ENDPOINT, "endpoints", _ENDPOINT_COLUMNS, user_id)
        return [(_endpoint_record(row), how) for row, how in rows]

    def endpoint_for_key(self, public_key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT id FROM endpoints WHERE public_key = ?", (public_key,)).fetchone()
        return row[0] if row else None

    def set_connection(self, endpoint_id: str, connected: bool, now: float, hostname: str | None = None,
                       pid: int | None = None) -> None:
        with self._write() as db:
            db.execute("UPDATE endpoints SET connected = ?, last_heartbeat = ?, hostname = coalesce(?, hostname), "
                       "pid = coalesce(?, pid) WHERE id = ?", (int(connected), now, hostname, pid, endpoint_id))

    def record_heartbeats(self, last_heard: dict[str, float]) -> None:
        if last_heard:
            with self._write() as db:
                db.executemany("UPDATE endpoints SET last_heartbeat = ? WHERE id = ?",
                               [(when, endpoint_id) for endpoint_id, when in last_heard.items()])

    def record_status(self, endpoint_id: str, managers: int, workers: int, queued: int, outstanding: int) -> None:
        with self._write() as db:
            db.execute("UPDATE endpoints SET managers = ?, workers = ?, interchange_queued = ?, "
                       "interchange_outstanding = ? WHERE id = ?",
                       (managers, workers, queued, outstanding, endpoint_id))

    def disconnect_all(self) -> None:
        with self._write() as db:
            db.execute("UPDATE endpoints SET connected = 0 WHERE connected != 0")

    # -- sharing and groups ----------------------------------------------------------------
    def find_users(self, references: Iterable[str]) -> dict[str, User | None]:
        with self._read() as db:
            return access.users_by_reference(db, references)

    def user_names(self, user_ids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(user_ids))
        names: dict[str, str] = {}
        with self._read() as db:
            for chunk in _chunks(ids):
                names.update(access.display_names(db, chunk))
        return names

    def get_sharing(self, kind: str, object_id: str, owner: str) -> Sharing:
        with self._read() as db:
            return access.sharing(db, kind, object_id, owner)

    def set_sharing(self, kind: str, object_id: str, owner: str, grantees: Iterable[str]) -> Sharing:
        with self._write() as db:
            access.set_sharing(db, kind, object_id, owner, grantees)
            return access.sharing(db, kind, object_id, owner)

    def create_group(self, owner: str, name: str) -> GroupRecord | None:
        with self._write() as db:
            group_id = access.create_group(db, owner, name)
            return access.group(db, group_id) if group_id else None

    def get_group(self, group_id: str) -> GroupRecord | None:
        with self._read() as db:
            return access.group(db, group_id)

    def list_groups(self, user_id: str) -> list[GroupRecord]:
        with self._read() as db:
            groups = [access.group(db, group_id) for group_id in access.groups_of(db, user_id)]
        return [g for g in groups if g is not None]

    def add_group_members(self, group_id: str, user_ids: Sequence[str]) -> GroupRecord | None:
        with self._write() as db:
            access.add_members(db, group_id, user_ids)
            return access.group(db, group_id)

    def remove_group_member(self, group_id: str, user_id: str) -> bool:
        with self._write() as db:
            return access.remove_member(db, group_id, user_id)

    def delete_group(self, group_id: str) -> None:
        with self._write() as db:
            access.delete_group(db, group_id)

    # -- tasks ---------------------------------------------------------------------------
    def add_tasks(self, owner: str, tasks: NewTasks, state: str) -> tuple[str, list[str]] | None:
        added = self._insert(owner, tasks, state)
        return None if added is None else added[:2]

    def add_dispatched(self, owner: str, tasks: NewTasks) -> tuple[str, list[str], list[Task]] | None:
        added = self._insert(owner, tasks, DISPATCHED)
        if added is None:
            return None
        group_id, task_ids, fresh = added
        if not fresh:
            return group_id, task_ids, []
        payloads, walltime, retries, priority = tasks.payloads, tasks.walltime, tasks.retries, tasks.priority
        return group_id, task_ids, [Task(task_id, function_id, payloads[i], walltime, retries, priority)
                                    for i, (task_id, function_id) in enumerate(zip(task_ids, tasks.function_ids))]

    def add_dependent_tasks(self, owner: str, tasks: NewTasks,
                            inputs: Sequence[Sequence[str]]) -> tuple[str, list[str], set[str]] | None:
        released: set[str] = set()

        def add_inputs(db: sqlite3.Connection, task_ids: list[str], now: float) -> None:
            released.update(dependencies.add_inputs(db, owner, task_ids, inputs, now))

        added = self._insert(owner, tasks, WAITING_FOR_INPUTS, also=add_inputs)
        return None if added is None else (added[0], added[1], released)

    def add_memoized_tasks(self, owner: str, tasks: NewTasks, state: str,
                           ttl: float) -> tuple[str, list[str], int] | None:
        hashes = [memo.args_hash(payload) for payload in tasks.payloads]
        hits = 0

        def answer(db: sqlite3.Connection, task_ids: list[str], now: float) -> None:
            nonlocal hits
            group_id = db.execute("SELECT task_group_id FROM tasks WHERE id = ?", (task_ids[0],)).fetchone()[0]
            hits = memo.answer(db, owner, group_id, task_ids, tasks.function_ids, hashes, ttl, now)

        added = self._insert(owner, tasks, state, also=answer)
        return None if added is None else (added[0], added[1], hits)

    def create_trigger(self, owner: str, endpoint_id: str, function_id: str, directory: str, pattern: str,
                       max_per_minute: int) -> dict[str, Any]:
        with self._write() as db:
            return triggers.create(db, owner, endpoint_id, function_id, directory, pattern, max_per_minute)

    def list_triggers(self, owner: str, endpoint_id: str | None) -> list[dict[str, Any]]:
        with self._read() as db:
            return triggers.listed(db, owner, endpoint_id)

    def delete_trigger(self, owner: str, trigger_id: str) -> bool:
        with self._write() as db:
            return triggers.delete(db, owner, trigger_id)

    def forget(self, owner: str, function_id: str | None) -> int:
        with self._write() as db:
            return memo.forget(db, owner, function_id, time.time())

    def _insert(self, owner: str, tasks: NewTasks, state: str, route_id: str | None = None,
                placed: Sequence[Placement] = (),
                also: Callable[[sqlite3.Connection, list[str], float], None] | None = None,
                ) -> tuple[str, list[str], bool] | None:
        """(group id, task ids, whether they are new: not a batch id seen before), None if not the owner's.
        ``placed``: the first tasks go, in these numbers, to these endpoints, ``dispatched``
        (a group's batch placed at submit); the rest are ``state`` on ``tasks.endpoint_id``.
        ``also(db, task ids, now)`` runs in the same transaction once the tasks are inserted."""
        count = len(tasks.payloads)
        task_ids = new_task_ids(count)
        group_id = tasks.task_group_id or str(uuid.uuid4())
        spec = json.dumps(tasks.resource_spec) if tasks.resource_spec is not None else None
        now = time.time()
        segments: list[tuple[int, int, str, str, str | None]] = []
        start = 0
        for placement in placed:
            segments.append((start, start + placement.count, placement.endpoint_id, DISPATCHED, placement.reason))
            start += placement.count
        if start < count:
            segments.append((start, count, tasks.endpoint_id, state, None))
        sent = sum(end - begin for begin, end, _, seg_state, _ in segments if seg_state == DISPATCHED)
        digest = batches.content_digest(tasks) if tasks.batch_id is not None else b""
        with self._write() as db:
            if tasks.batch_id is not None:
                seen = batches.find(db, tasks.batch_id)
                if seen is not None:  # sent before: the first answer, or 409/410 (see service.store.batches)
                    known = batches.answer(db, owner, tasks.batch_id, seen, digest)
                    return None if known is None else (*known, False)
            db.execute("INSERT OR IGNORE INTO task_groups (id, owner, created, updated) VALUES (?, ?, ?, ?)",
                       (group_id, owner, now, now))
            if db.execute("SELECT owner FROM task_groups WHERE id = ?", (group_id,)).fetchone()[0] != owner:
                return None  # someone else's group: nothing was written
            db.execute("UPDATE task_groups SET task_count = task_count + ?, sent_count = sent_count + ?, updated = ? "
                       "WHERE id = ?", (count, sent, now, group_id))
            first = next_task_rowids(db, count)
            for begin, finish, endpoint_id, seg_state, reason in segments:
                dispatched = seg_state == DISPATCHED
                shared = (owner, endpoint_id, group_id, seg_state, now, tasks.retries, tasks.walltime, tasks.priority,
                          spec, now if dispatched else None, 1 if dispatched else 0, route_id, reason)
                for start, end in row_chunks(finish - begin):
                    start, end = start + begin, end + begin
                    db.execute(_insert_tasks(end - start), shared + tuple(itertools.chain.from_iterable(zip(
                        range(first + start, first + end), task_ids[start:end], tasks.function_ids[start:end],
                        tasks.payloads[start:end]))))
            if placed:
                routes.count_placed(db, group_id, {p.endpoint_id: p.count for p in placed})
            if tasks.batch_id is not None:
                batches.remember(db, tasks.batch_id, owner, group_id, first, count, now, digest)
            if also is not None:
                also(db, task_ids, now)
        return group_id, task_ids, True

    def group_task_ids(self, task_group_id: str, after: int, limit: int) -> tuple[list[str], int]:
        with self._read() as db:
            rows = db.execute("SELECT rowid, id FROM tasks WHERE task_group_id = ? AND rowid > ? ORDER BY rowid "
                              "LIMIT ?", (task_group_id, after, limit)).fetchall()
        return [r[1] for r in rows], rows[-1][0] if rows else after

    def get_task(self, owner: str, task_id: str) -> TaskRecord | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None or row[1] != owner:
            return None
        return _task_record(row)

    def take_waiting(self, endpoint_id: str, limit: int, now: float) -> list[Task]:
        taken: list[tuple[Any, ...]] = []
        with self._write() as db:
            for state in (WAITING, RECEIVED):  # each an index range in insertion order
                if len(taken) >= limit:
                    break
                taken += db.execute(f"SELECT rowid, {_SEND_COLUMNS} FROM tasks WHERE endpoint_id = ? "
                                    f"AND state = '{state}' AND {_IN_UNFINISHED} ORDER BY rowid LIMIT ?",
                                    (endpoint_id, limit - len(taken))).fetchall()
            self._mark_dispatched(db, taken, now)
            sent = Counter(map(_GROUP_OF_ROW, taken))
            db.executemany("UPDATE task_groups SET sent_count = sent_count + ? WHERE id = ?",
                           [(count, group_id) for group_id, count in sent.items()])
        return _to_send(taken)

    def take_unfinished(self, endpoint_id: str, now: float) -> list[Task]:
        rows: list[tuple[Any, ...]] = []
        with self._write() as db:
            for state in (DISPATCHED, RUNNING):
                rows += db.execute(f"SELECT rowid, {_SEND_COLUMNS} FROM tasks WHERE endpoint_id = ? "
                                   f"AND state = '{state}' AND {_IN_UNFINISHED} ORDER BY rowid",
                                   (endpoint_id,)).fetchall()
            self._mark_dispatched(db, rows, now)
        return _to_send(rows)

    @staticmethod
    def _mark_dispatched(db: sqlite3.Connection, rows: list[tuple[Any, ...]], now: float) -> None:
        rowids = list(map(_ROWID_OF_ROW, rows))
        for chunk in _chunks(rowids):
            db.execute(f"UPDATE tasks SET state = '{DISPATCHED}', dispatched = ?, dispatch_count = dispatch_count + 1 "
                       f"WHERE rowid IN ({_marks(len(chunk))})", (now, *chunk))

    def mark_running(self, endpoint_id: str, task_ids: Sequence[Any], now: float) -> None:
        ids = [i for i in task_ids if isinstance(i, str)]
        if ids:
            with self._write() as db:
                db.executemany(f"UPDATE tasks SET state = '{RUNNING}', started = ? WHERE id = ? AND endpoint_id = ? "
                               f"AND state = '{DISPATCHED}'", [(now, i, endpoint_id) for i in ids])

    def commit_results(self, endpoint_id: str, results: Iterable[tuple[Any, int, bytes, str | None]],
                       now: float) -> CommitOutcome:
        results = list(results)
        by_id = {r[0]: r for r in results if isinstance(r[0], str)}
        ids = list(by_id)
        found: list[tuple[int, str, str, str, float | None]] = []
        with self._write() as db:
            for chunk in _chunks(ids):
                found += db.execute(
                    f"SELECT rowid, id, task_group_id, state, dispatched FROM tasks WHERE id IN ({_marks(len(chunk))}) "
                    f"AND +endpoint_id = ? AND +{_IN_UNFINISHED}", (*chunk, endpoint_id)).fetchall()
                # the unary + keep SQLite on the id index: by (endpoint, state) it walked every
                # unfinished task of the endpoint for each chunk (81 us a result at 100k unfinished)
            found.sort()
            per_group: dict[str, list[tuple[int, task_groups.Result]]] = defaultdict(list)
            unsent: Counter[str] = Counter()
            for rowid, task_id, group_id, state, _ in found:
                per_group[group_id].append((rowid, by_id[task_id]))
                if state in _UNSENT:  # a stale result (of a run before a retry): it still counts
                    unsent[group_id] += 1
            for group_id, finished in per_group.items():
                task_groups.finish(db, group_id, finished, unsent[group_id], now)
            released: set[str] = set()
            if found:  # each an empty-table probe for tasks neither memoized nor depended on
                memo.remember(db, [f[1] for f in found], now)
                released = dependencies.release(db, [f[1] for f in found], now)
        sent = [now - f[4] for f in found if f[4] is not None]
        return CommitOutcome([f[1] for f in found], len(results) - len(found), set(per_group),
                             sum(sent) / len(sent) if sent else None, released)

    def task_group_owner(self, task_group_id: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT owner FROM task_groups WHERE id = ?", (task_group_id,)).fetchone()
        return row[0] if row else None

    def results_after(self, task_group_id: str, after: int, limit: int) -> ResultPage:
        with self._read() as db:
            rows = db.execute("SELECT id, result_kind, result, seq FROM tasks WHERE task_group_id = ? AND seq > ? "
                              "ORDER BY seq LIMIT ?", (task_group_id, after, limit)).fetchall()
            group = db.execute("SELECT task_count, finished_count FROM task_groups WHERE id = ?",
                               (task_group_id,)).fetchone()
        return ResultPage(task_ids=[r[0] for r in rows], kinds=[r[1] for r in rows],
                          payloads=[bytes(r[2]) if r[2] is not None else b"" for r in rows],
                          cursor=rows[-1][3] if rows else after, pending=group[0] - group[1] if group else 0)

    def group_counts(self, task_group_id: str) -> GroupCounts | None:
        with self._read() as db:
            return task_groups.counts(db, task_group_id)

    def unfinished_counts(self, endpoint_id: str) -> dict[str, int]:
        with self._read() as db:
            counts = {state: db.execute(f"SELECT count(*) FROM tasks WHERE endpoint_id = ? AND state = '{state}' "
                                        f"AND {_IN_UNFINISHED}",
                                        (endpoint_id,)).fetchone()[0] for state in UNFINISHED}
        return {state: n for state, n in counts.items() if n}

    # -- whole task groups ---------------------------------------------------------------
    def cancel_group(self, task_group_id: str, now: float) -> CancelOutcome:
        return task_groups.cancel(self._write, task_group_id, now)

    def retry_group(self, task_group_id: str, is_online: Callable[[str], bool], now: float) -> RetryOutcome:
        return task_groups.retry(self._write, task_group_id, is_online, now)

    # -- purging ---------------------------------------------------------------------------
    def acknowledge(self, task_group_id: str, seq: int) -> None:
        with self._acknowledged_lock:
            if seq > self._acknowledged.get(task_group_id, 0):
                self._acknowledged[task_group_id] = seq

    def purge(self, now: float, result_ttl: float, *, budget: float = 1.0) -> PurgeOutcome:
        with self._acknowledged_lock:
            acknowledged, self._acknowledged = self._acknowledged, {}
        try:
            purging.record_acknowledged(self._write, acknowledged)
        except BaseException:
            for task_group_id, seq in acknowledged.items():  # kept for the next step
                self.acknowledge(task_group_id, seq)
            raise
        return purging.purge(self._write, now, result_ttl, budget)
