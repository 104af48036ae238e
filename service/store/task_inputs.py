"""The ``task_inputs`` table of dependencies (``service.store.dependencies``) and its migration."""

from __future__ import annotations

import sqlite3

TABLE = """
CREATE TABLE IF NOT EXISTS task_inputs (
    input_id TEXT NOT NULL, task_id TEXT NOT NULL, position INTEGER NOT NULL,
    result_kind INTEGER, result BLOB, error TEXT, PRIMARY KEY (input_id, task_id));
CREATE INDEX IF NOT EXISTS task_inputs_by_task ON task_inputs (task_id)"""
"""One row per (input, dependent) edge; ``result_kind`` set once the input finished."""


def migrate_add_task_inputs(db: sqlite3.Connection) -> None:
    """Schema migration (version 3 to 4 on this branch): the ``task_inputs`` table. Idempotent."""
    for statement in TABLE.split(";"):
        db.execute(statement)
