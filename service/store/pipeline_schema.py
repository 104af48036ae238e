"""The tables of pipelines (dependencies, memoization), and their migration (version 5 to 6)."""

from __future__ import annotations

import sqlite3

TABLE = """
CREATE TABLE IF NOT EXISTS task_inputs (
    input_id TEXT NOT NULL, task_id TEXT NOT NULL, position INTEGER NOT NULL,
    result_kind INTEGER, result BLOB, error TEXT, PRIMARY KEY (input_id, task_id));
CREATE INDEX IF NOT EXISTS task_inputs_by_task ON task_inputs (task_id)"""
"""One row per (input, dependent) edge; ``result_kind`` set once the input finished."""


def migrate_add_task_inputs(db: sqlite3.Connection) -> None:
    """Schema migration (version 5 to 6): the ``task_inputs`` table. Idempotent."""
    for statement in TABLE.split(";"):
        db.execute(statement)


MEMO_TABLES = """
CREATE TABLE IF NOT EXISTS memo (
    owner TEXT NOT NULL, function_id TEXT NOT NULL, args_hash BLOB NOT NULL, result_kind INTEGER NOT NULL,
    result BLOB NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (owner, function_id, args_hash));
CREATE TABLE IF NOT EXISTS memo_pending (
    task_id TEXT PRIMARY KEY, owner TEXT NOT NULL, function_id TEXT NOT NULL, args_hash BLOB NOT NULL,
    ttl REAL NOT NULL)"""
"""Memoized results by (user, function id, hash of the serialized arguments), and the memoized
tasks still running whose successful result is to be remembered (``service.store.memo``)."""

MEMO_COLUMNS = ("ALTER TABLE tasks ADD COLUMN memo_hit INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE task_groups ADD COLUMN memo_hits INTEGER NOT NULL DEFAULT 0")
"""A task answered from the memo (it never ran); how many of a group's tasks were."""


def migrate_add_memo(db: sqlite3.Connection) -> None:
    """Schema migration (version 5 to 6, with ``migrate_add_task_inputs``): the memo
    tables and the hit columns of ``tasks`` and ``task_groups``."""
    for statement in MEMO_TABLES.split(";"):
        db.execute(statement)
    for statement in MEMO_COLUMNS:
        _, _, table, _, _, column = statement.split()[:6]
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(statement)


TRIGGER_TABLE = """
CREATE TABLE IF NOT EXISTS triggers (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, endpoint_id TEXT NOT NULL, function_id TEXT NOT NULL,
    directory TEXT NOT NULL, pattern TEXT NOT NULL, max_per_minute INTEGER NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS triggers_by_owner ON triggers (owner, endpoint_id)"""
"""Directories an endpoint's watcher turns new files in into tasks (``endpoint.triggers``)."""


def migrate_add_triggers(db: sqlite3.Connection) -> None:
    """Schema migration (version 5 to 6, with the others above): the triggers table."""
    for statement in TRIGGER_TABLE.split(";"):
        db.execute(statement)
