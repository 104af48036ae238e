"""What is in a store, read through a read-only connection (``fabric service status``).

It works beside a running service (WAL readers never block its writers, nor the other way
round) and without one. Every figure comes from an index or the per-group counters, never
from reading task rows: users, endpoints (and how many are online), task groups, tasks by
state (finished ones from the groups' counters, unfinished ones from their partial index),
the age of the oldest unfinished task, and the size of the database files on disk.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import urllib.parse
from typing import Any

from service.errors import StoreError
from service.records import FAILED, STATES, SUCCESS, UNFINISHED, WAITING_FOR_INPUTS
from service.store.schema import IN_UNFINISHED, SCHEMA_VERSION

FILE_SUFFIXES = ("", "-wal", "-shm")


@dataclasses.dataclass(frozen=True, slots=True)
class StoreStatus:
    path: str
    file_bytes: dict[str, int]  # file name -> bytes (the database, its -wal and -shm files)
    users: int
    endpoints: int
    endpoints_online: int
    task_groups: int
    tasks: dict[str, int]  # every state -> how many tasks are in it
    oldest_unfinished_age: float | None  # seconds, None without unfinished tasks

    @property
    def size(self) -> int:
        return sum(self.file_bytes.values())

    def to_dict(self) -> dict[str, Any]:
        return {"database": {"path": self.path, "bytes": self.size, "files": self.file_bytes},
                "users": self.users, "endpoints": {"total": self.endpoints, "online": self.endpoints_online},
                "task_groups": self.task_groups, "tasks": {"total": sum(self.tasks.values()), **self.tasks},
                "oldest_unfinished_age": self.oldest_unfinished_age}


def file_sizes(path: str) -> dict[str, int]:
    sizes = {}
    for suffix in FILE_SUFFIXES:
        try:
            sizes[os.path.basename(path) + suffix] = os.stat(path + suffix).st_size
        except FileNotFoundError:
            pass
    return sizes


def read_status(path: str | os.PathLike[str], *, now: float, heartbeat_threshold: float) -> StoreStatus:
    """The store at ``path`` as it is now; ``StoreError`` if there is none or it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise StoreError(f"no store at {path}")
    sizes = file_sizes(path)
    try:
        db = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=10.0,
                             isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    try:
        db.execute("BEGIN")  # one snapshot for every figure
        return _read(db, path, sizes, now, heartbeat_threshold)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the store {path}: {exc}") from exc
    finally:
        db.close()


def _read(db: sqlite3.Connection, path: str, sizes: dict[str, int], now: float,
          heartbeat_threshold: float) -> StoreStatus:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or int(row[0]) != SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {row[0] if row else None} is not {SCHEMA_VERSION} "
                         "(starting the service migrates it)")
    users = db.execute("SELECT count(*) FROM users").fetchone()[0]
    endpoints, online = db.execute("SELECT count(*), total(connected = 1 AND last_heartbeat >= ?) FROM endpoints",
                                   (now - heartbeat_threshold,)).fetchone()
    groups, finished, failed = db.execute("SELECT count(*), total(finished_count - purged_count), "
                                          "total(failed_count - purged_failed) FROM task_groups").fetchone()
    tasks = dict.fromkeys(STATES, 0)
    tasks.update(db.execute(f"SELECT state, count(*) FROM tasks WHERE {IN_UNFINISHED} GROUP BY state").fetchall())
    tasks[SUCCESS], tasks[FAILED] = int(finished - failed), int(failed)
    tasks[WAITING_FOR_INPUTS] = db.execute("SELECT count(DISTINCT task_id) FROM task_inputs").fetchone()[0]
    oldest: float | None = None
    for (endpoint_id,) in db.execute("SELECT id FROM endpoints").fetchall():
        for state in UNFINISHED:  # each an index range in insertion order: its first is its oldest
            first = db.execute(f"SELECT created FROM tasks WHERE endpoint_id = ? AND state = '{state}' "
                               f"AND {IN_UNFINISHED} ORDER BY rowid LIMIT 1", (endpoint_id,)).fetchone()
            if first is not None and (oldest is None or first[0] < oldest):
                oldest = first[0]
    return StoreStatus(path=path, file_bytes=sizes, users=users, endpoints=endpoints, endpoints_online=int(online),
                       task_groups=groups, tasks=tasks,
                       oldest_unfinished_age=max(0.0, now - oldest) if oldest is not None else None)
