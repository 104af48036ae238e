"""Triggers in the store: which directory an endpoint watches, for which function (``endpoint.triggers``)."""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

_COLUMNS = "id, owner, endpoint_id, function_id, directory, pattern, max_per_minute, created"


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(("trigger_id", "owner", "endpoint_id", "function_id", "directory", "pattern", "max_per_minute",
                     "created"), row))


def create(db: sqlite3.Connection, owner: str, endpoint_id: str, function_id: str, directory: str, pattern: str,
           max_per_minute: int) -> dict[str, Any]:
    row = (str(uuid.uuid4()), owner, endpoint_id, function_id, directory, pattern, max_per_minute, time.time())
    db.execute(f"INSERT INTO triggers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
    return _record(row)


def listed(db: sqlite3.Connection, owner: str, endpoint_id: str | None) -> list[dict[str, Any]]:
    if endpoint_id is None:
        rows = db.execute(f"SELECT {_COLUMNS} FROM triggers WHERE owner = ? ORDER BY created", (owner,))
    else:
        rows = db.execute(f"SELECT {_COLUMNS} FROM triggers WHERE owner = ? AND endpoint_id = ? ORDER BY created",
                          (owner, endpoint_id))
    return [_record(row) for row in rows]


def delete(db: sqlite3.Connection, owner: str, trigger_id: str) -> bool:
    return db.execute("DELETE FROM triggers WHERE id = ? AND owner = ?", (trigger_id, owner)).rowcount > 0
