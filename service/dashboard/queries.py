"""What the dashboard shows one user, read from the store: only what that user may see.

Endpoints are those the store says the user may see (``Store.visible_endpoints``: owned,
shared, public), with the host only for their owner; task groups, failures and the
last hour's series are the user's own tasks (``owner`` = the user). Task, group and
failure figures come from a read-only SQLite connection of their own (WAL readers never
block the forwarder's writes); each refresh scans the user's tasks of the last hour.
A failure's traceback is read from its error payload, which is msgpack (the worker's
``remote_type``, ``message``, ``traceback``): never unpickled.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import msgpack

from service.records import OWNER
from service.store import DISPATCHED, RECEIVED, RUNNING, WAITING, Store

WINDOW = 3600
"""Seconds of history the charts show."""
BUCKET = 60
"""Seconds per point of the charts."""
MAX_GROUPS = 20
MAX_FAILURES = 10
MAX_TRACEBACK = 8192


def endpoints(store: Store, user_id: str, heartbeat_threshold: float) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for record, how in store.visible_endpoints(user_id):
        counts = store.unfinished_counts(record.endpoint_id)
        outstanding = counts.get(DISPATCHED, 0) + counts.get(RUNNING, 0)
        online = bool(record.connected and record.last_heartbeat and now - record.last_heartbeat <= heartbeat_threshold)
        rows.append({"endpoint_id": record.endpoint_id, "name": record.name, "access": how, "online": online,
                     "managers": record.managers if online else 0, "workers": record.workers if online else 0,
                     "outstanding": outstanding, "waiting": counts.get(RECEIVED, 0) + counts.get(WAITING, 0),
                     "load": round(outstanding / record.workers, 2) if online and record.workers else None,
                     "hostname": record.hostname if how == OWNER else None,
                     "last_heartbeat": record.last_heartbeat})
    return sorted(rows, key=lambda row: (not row["online"], row["name"]))


def user_tasks(database: str, user_id: str) -> dict[str, Any]:
    """The user's task groups with progress, recent failures and the last hour's series."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5.0)
    try:
        return {"task_groups": _groups(db, user_id), "failures": _failures(db, user_id),
                "series": _series(db, user_id, time.time())}
    finally:
        db.close()


def _groups(db: sqlite3.Connection, user_id: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT id, created, task_count, finished_count, failed_count, cancelled_count, "
                      "purged_count, updated FROM task_groups WHERE owner = ? ORDER BY created DESC LIMIT ?",
                      (user_id, MAX_GROUPS)).fetchall()
    return [{"task_group_id": r[0], "created": r[1], "tasks": r[2], "finished": r[3], "failed": r[4],
             "cancelled": r[5], "updated": r[7]} for r in rows]


def _failures(db: sqlite3.Connection, user_id: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT id, task_group_id, endpoint_id, completed, error, result FROM tasks "
                      "WHERE owner = ? AND state = 'failed' ORDER BY completed DESC LIMIT ?",
                      (user_id, MAX_FAILURES)).fetchall()
    failures = []
    for task_id, group_id, endpoint_id, completed, error, payload in rows:
        summary, traceback = _described(payload)
        failures.append({"task_id": task_id, "task_group_id": group_id, "endpoint_id": endpoint_id,
                         "completed": completed, "error": summary or error, "traceback": traceback})
    return failures


def _described(payload: bytes | None) -> tuple[str, str]:
    """``("type: message", traceback)`` from a worker's error payload (msgpack; its pickled
    ``exception`` field is read as bytes and left alone)."""
    if not payload:
        return "", ""
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=False, max_bin_len=len(payload))
    except Exception:  # noqa: BLE001 - a payload that is not a worker's error has no traceback
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    kind, message, traceback = data.get("remote_type"), data.get("message"), data.get("traceback")
    summary = f"{kind}: {message}"[:4096] if isinstance(kind, str) and isinstance(message, str) else ""
    return summary, traceback[-MAX_TRACEBACK:] if isinstance(traceback, str) else ""


def _series(db: sqlite3.Connection, user_id: str, now: float) -> dict[str, Any]:
    """Per minute of the last hour: tasks finished per second and the mean round trip (s)."""
    start = (int(now) // BUCKET) * BUCKET - WINDOW + BUCKET
    rows = db.execute(
            "SELECT CAST((completed - ?) / ? AS INTEGER) AS slot, COUNT(*), AVG(completed - created) FROM tasks "
            "WHERE owner = ? AND completed >= ? GROUP BY slot", (start, BUCKET, user_id, start)).fetchall()
    points = WINDOW // BUCKET
    rate = [0.0] * points
    round_trip: list[float | None] = [None] * points
    for slot, count, mean in rows:
        if 0 <= slot < points:
            rate[slot] = round(count / BUCKET, 3)
            round_trip[slot] = round(mean, 6)
    return {"start": start, "step": BUCKET, "tasks_per_second": rate, "round_trip_seconds": round_trip}
