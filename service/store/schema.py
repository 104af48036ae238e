"""The SQLite schema, its migration from older versions, and the SQL fragments every part shares.

Each task group keeps counters beside its rows, so progress and purging never count rows:

``task_count``      tasks ever added
``last_seq``        the last result sequence number handed out (a retried task gets a new one)
``finished_count``  tasks finished now (success or failed; a retry takes one back)
``failed_count``    of those, failed; ``cancelled_count`` of those, cancelled
``sent_count``      tasks dispatched or running now
``acked_seq``       the client holds every result up to here (``results?after=N``)
``purged_seq``      acknowledged results up to here are purged (failed ones kept for a retry)
``purged_count``    task rows deleted (``purged_failed`` of them failed)
``updated``         the last time tasks were added or finished (an empty group idle for the
                    time to live is deleted)
``oldest_result``   completion time of the oldest finished task not yet purged (a hint for
                    the expiry of results never fetched; may be earlier, never later)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from fabric.protocol import RESULT_TASK_ERROR
from service.errors import StoreError
from service.records import DISPATCHED, RUNNING, UNFINISHED
from service.store import batches, pipeline_schema

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 6
ROUTING_VERSION = 5
"""The version that added routing (``_migrate_routing``), on top of version 4 (no stored secret keys, named tokens)."""
PIPELINES_VERSION = 6
"""The version that added dependencies, memoization and triggers (``service.store.pipeline_schema``)."""
CHUNK = 500  # ids per "IN (...)" query, well below SQLite's parameter limit

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, hash BLOB NOT NULL, created REAL NOT NULL,
    name TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS functions (
    owner TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
    body BLOB NOT NULL, created REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, id));
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE, created REAL NOT NULL,
    connected INTEGER NOT NULL DEFAULT 0, last_heartbeat REAL, hostname TEXT, pid INTEGER,
    managers INTEGER NOT NULL DEFAULT 0, workers INTEGER NOT NULL DEFAULT 0,
    interchange_queued INTEGER NOT NULL DEFAULT 0, interchange_outstanding INTEGER NOT NULL DEFAULT 0,
    allowed_functions TEXT, UNIQUE (owner, name));
CREATE TABLE IF NOT EXISTS identities (
    provider TEXT NOT NULL, subject TEXT NOT NULL, username TEXT, user_id TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (provider, subject)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created REAL NOT NULL, UNIQUE (owner, name));
CREATE TABLE IF NOT EXISTS group_members (
    group_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (group_id, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grants (
    kind TEXT NOT NULL, object_id TEXT NOT NULL, owner TEXT NOT NULL, grantee TEXT NOT NULL,
    PRIMARY KEY (kind, object_id, owner, grantee)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_groups (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, task_count INTEGER NOT NULL DEFAULT 0,
    last_seq INTEGER NOT NULL DEFAULT 0, failed_count INTEGER NOT NULL DEFAULT 0,
    finished_count INTEGER NOT NULL DEFAULT 0, cancelled_count INTEGER NOT NULL DEFAULT 0,
    sent_count INTEGER NOT NULL DEFAULT 0, acked_seq INTEGER NOT NULL DEFAULT 0,
    purged_seq INTEGER NOT NULL DEFAULT 0, purged_count INTEGER NOT NULL DEFAULT 0,
    purged_failed INTEGER NOT NULL DEFAULT 0, updated REAL, oldest_result REAL,
    memo_hits INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, function_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    task_group_id TEXT NOT NULL, state TEXT NOT NULL, args BLOB, result_kind INTEGER, result BLOB,
    error TEXT, created REAL NOT NULL, dispatched REAL, started REAL, completed REAL,
    retries INTEGER NOT NULL DEFAULT 0, walltime REAL, priority INTEGER NOT NULL DEFAULT 0,
    resource_spec TEXT, dispatch_count INTEGER NOT NULL DEFAULT 0, seq INTEGER, route_id TEXT, route_reason TEXT,
    memo_hit INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, task_group_id TEXT NOT NULL, first_task INTEGER NOT NULL,
    task_count INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS endpoint_groups (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, members TEXT NOT NULL, created REAL NOT NULL,
    UNIQUE (owner, name));
CREATE TABLE IF NOT EXISTS endpoint_reports (
    endpoint_id TEXT PRIMARY KEY, report TEXT NOT NULL, measured TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS routes (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, endpoint_group_id TEXT NOT NULL, spec TEXT NOT NULL,
    members TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS placements (
    task_group_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (task_group_id, endpoint_id)) WITHOUT ROWID;
""" + batches.TABLE + ";" + pipeline_schema.TABLE + ";" + pipeline_schema.MEMO_TABLES + ";" + pipeline_schema.TRIGGER_TABLE + ";"

_INDEXES = """
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (user_id);
CREATE INDEX IF NOT EXISTS functions_by_id ON functions (id);
CREATE INDEX IF NOT EXISTS task_groups_by_owner ON task_groups (owner);
CREATE INDEX IF NOT EXISTS task_groups_acked ON task_groups (id) WHERE acked_seq > purged_seq;
CREATE INDEX IF NOT EXISTS task_groups_expiring ON task_groups (oldest_result) WHERE oldest_result IS NOT NULL;
CREATE INDEX IF NOT EXISTS task_groups_empty ON task_groups (updated) WHERE purged_count = task_count;
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (endpoint_id, state) WHERE state IN ({unfinished});
CREATE INDEX IF NOT EXISTS tasks_results ON tasks (task_group_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_group ON tasks (task_group_id);
CREATE INDEX IF NOT EXISTS batches_by_group ON batches (task_group_id);
CREATE INDEX IF NOT EXISTS group_members_by_user ON group_members (user_id);
CREATE INDEX IF NOT EXISTS identities_by_username ON identities (username);
CREATE INDEX IF NOT EXISTS identities_by_user ON identities (user_id);
CREATE INDEX IF NOT EXISTS grants_by_grantee ON grants (grantee, kind);
""".format(unfinished=", ".join(f"'{state}'" for state in UNFINISHED))
# Finished tasks leave the (partial) endpoint index and only then enter the results index, so
# each state change touches as few index entries as possible. Queries that must use the
# partial index repeat its condition word for word (SQLite proves no implication beyond that).
# The task_groups partial indexes hold only the groups a purge step has work in (or may have).
IN_UNFINISHED = f"state IN ({', '.join(repr(state) for state in UNFINISHED)})"

CANCELLED_PREFIX = "TaskCancelled:"
"""How the error text of a task cancelled (by the service or its endpoint) begins."""

_MIGRATE_1_TO_2 = f"""
ALTER TABLE task_groups ADD COLUMN finished_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN cancelled_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN sent_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN acked_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN purged_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN purged_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN purged_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN updated REAL;
ALTER TABLE task_groups ADD COLUMN oldest_result REAL;
UPDATE task_groups SET finished_count = last_seq, updated = created,
    sent_count = (SELECT count(*) FROM tasks t WHERE t.task_group_id = task_groups.id
                  AND t.state IN ('{DISPATCHED}', '{RUNNING}')),
    cancelled_count = (SELECT count(*) FROM tasks t WHERE t.task_group_id = task_groups.id AND t.seq IS NOT NULL
                       AND t.error LIKE '{CANCELLED_PREFIX}%'),
    oldest_result = (SELECT min(t.completed) FROM tasks t WHERE t.task_group_id = task_groups.id
                     AND t.seq IS NOT NULL)
"""


_MIGRATE_2_TO_3 = """
ALTER TABLE endpoints ADD COLUMN allowed_functions TEXT
"""
# version 3: sharing (groups, group_members, grants), identities of an identity provider
# (created above) and endpoint allow-lists

_MIGRATE_3_TO_4 = """
ALTER TABLE endpoints DROP COLUMN secret_key;
ALTER TABLE tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE tokens SET name = id
"""
# version 4: the service no longer keeps endpoints' CurveZMQ secret keys (an endpoint gets
# its secret key in the registration reply only); tokens have names (a user holds several:
# one per machine or purpose, each revoked on its own). Tokens of older stores are named
# by their id. The migration's connection zeroes what it deletes
# (``secure_delete``) and the caller truncates the WAL after it, so no copy of an old
# secret key stays in the files.


def _migrate_routing(db: sqlite3.Connection) -> None:
    """Routing (issue 14): endpoint groups, endpoint reports, routes and placements (created
    by ``_TABLES``), and each task's route and the reason it went where it did."""
    db.execute("ALTER TABLE tasks ADD COLUMN route_id TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN route_reason TEXT")


def _statements(script: str) -> list[str]:
    return [statement for statement in script.split(";") if statement.strip()]


def create_or_migrate(db: sqlite3.Connection, path: str) -> int:
    """Create what is missing and bring an older schema up to ``SCHEMA_VERSION`` (in the
    caller's transaction); returns the version the store had (``SCHEMA_VERSION`` if new)."""
    for statement in _statements(_TABLES):
        db.execute(statement)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    version = found = int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if version == 1:
        for statement in _statements(_MIGRATE_1_TO_2):
            db.execute(statement)
        version = 2
    if version == 2:
        for statement in _statements(_MIGRATE_2_TO_3):
            db.execute(statement)
        version = 3
    if version == 3:
        for statement in _statements(_MIGRATE_3_TO_4):
            db.execute(statement)
        version = 4
    if version == ROUTING_VERSION - 1:
        _migrate_routing(db)
        version = ROUTING_VERSION
    if version == PIPELINES_VERSION - 1:
        pipeline_schema.migrate_add_task_inputs(db)
        pipeline_schema.migrate_add_memo(db)
        pipeline_schema.migrate_add_triggers(db)
        version = PIPELINES_VERSION
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    if version != SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} is not {SCHEMA_VERSION}")
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('task_rowids', "
               "(SELECT coalesce(max(rowid), 0) FROM tasks))")
    for statement in _statements(_INDEXES):
        db.execute(statement)
    return found


def make_private(path: str) -> None:
    """Create the store's file with mode 0600 if it is new (SQLite gives its -wal and -shm
    files the database's mode) and take group and other permissions off existing ones: the
    store holds token hashes, function bodies, arguments and results."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
                logger.warning("%s was readable by others (mode %o): now %o", name, mode, mode & 0o700)
        except FileNotFoundError:
            pass
        except OSError as exc:  # someone else's file: say so, the service may still run
            logger.warning("cannot make %s private: %s", name, exc)


def check_integrity(db: sqlite3.Connection, path: str) -> None:
    """``PRAGMA quick_check``: ``StoreError`` saying what is damaged, in one line."""
    try:
        found = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        found = [str(exc)]
    problems = [line.strip() for text in found for line in text.splitlines()
                if line.strip() and not line.startswith("*** in database")]
    if problems != ["ok"]:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise StoreError(f"the store {path} is damaged ({shown}): restore it from a backup, or save what "
                         f"is readable with `sqlite3 {path} .recover`")


def next_task_rowids(db: sqlite3.Connection, count: int) -> int:
    """The first of ``count`` new task rowids (in the caller's write transaction).

    Task rowids order a group's tasks (``group_task_ids`` cursors, cancel and retry walks)
    and name a batch's tasks (``batches.first_task``), so they must never be used twice.
    SQLite hands out max(rowid) + 1, which reuses the rowids of the newest tasks once the
    purge deleted them; this counter in ``meta`` only ever grows."""
    last = db.execute("UPDATE meta SET value = value + ? WHERE key = 'task_rowids' RETURNING value",
                      (count,)).fetchone()[0]
    return int(last) - count + 1


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


ROWS_PER_STATEMENT = (1000, 100, 10, 1)
"""The sizes of multi-row statements: a few fixed ones, so each connection caches (compiles) at
most that many variants of a statement, whatever the sizes of the batches are."""


def row_chunks(count: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` slices of ``count`` rows, each of one of ``ROWS_PER_STATEMENT``'s sizes."""
    start = 0
    for size in ROWS_PER_STATEMENT:
        while count - start >= size:
            yield start, start + size
            start += size


def marks(count: int) -> str:
    return ",".join("?" * count)


CANCELLED = f"(result_kind = {RESULT_TASK_ERROR} AND error GLOB '{CANCELLED_PREFIX}*')"
"""``is_cancellation`` in SQL."""


def is_cancellation(kind: int, error: str | None) -> bool:
    """Whether a failed task's result says it was cancelled (a ``TaskCancelled`` task error)."""
    return kind == RESULT_TASK_ERROR and error is not None and error.startswith(CANCELLED_PREFIX)
