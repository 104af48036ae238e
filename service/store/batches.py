"""Batch ids: a batch sent again adds nothing and gets the first answer; another batch under
the same id is refused.

A batch sent with a ``batch_id`` is remembered in ``batches`` (owner, task group, its first
task rowid and how many tasks) and ``batch_digests`` (a hash of what it asked for:
endpoint, functions, arguments, group, retries, resource spec; a table of its own so that it
is added to stores of any schema version without a migration). When the same id comes again:

* from another user: ``answer`` is None (the route says 404, as for an unknown group);
* with other content (its digest differs): ``HTTPBatchConflict`` (409), nothing is added;
* the same content, every task still in the store: the first request's group and task ids;
* the same content, but some of its tasks were purged since (their results were fetched or
  expired): ``HTTPBatchGone`` (410), since the first answer can no longer be given whole.

Batches remembered before digests were kept have none and are answered as if identical. A
batch id is forgotten with its task group (``purge``); after that it is a new batch.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import msgpack

from service.errors import HTTPBatchConflict, HTTPBatchGone
from service.records import NewTasks

TABLE = """
CREATE TABLE IF NOT EXISTS batch_digests (id TEXT PRIMARY KEY, digest BLOB NOT NULL) WITHOUT ROWID
"""


def content_digest(tasks: NewTasks) -> bytes:
    """A hash of everything ``tasks`` asks for but its batch id (computed outside any transaction)."""
    spec = sorted(tasks.resource_spec.items()) if tasks.resource_spec is not None else None
    packed = msgpack.packb([tasks.endpoint_id, list(tasks.function_ids), tasks.task_group_id, tasks.retries,
                            tasks.walltime, tasks.priority, spec, list(tasks.payloads)], use_bin_type=True)
    return hashlib.sha1(packed, usedforsecurity=False).digest()  # tells batches apart, not an adversary's


def find(db: sqlite3.Connection, batch_id: str) -> tuple[Any, ...] | None:
    """``(owner, task group id, first task rowid, task count)`` of a batch id seen before."""
    row: tuple[Any, ...] | None = db.execute(
        "SELECT owner, task_group_id, first_task, task_count FROM batches WHERE id = ?", (batch_id,)).fetchone()
    return row


def answer(db: sqlite3.Connection, owner: str, batch_id: str, seen: tuple[Any, ...],
           digest: bytes) -> tuple[str, list[str]] | None:
    """The first answer to a batch sent again (see the module docstring); None if not ``owner``'s."""
    batch_owner, group_id, first, count = seen
    if batch_owner != owner:
        return None
    stored = db.execute("SELECT digest FROM batch_digests WHERE id = ?", (batch_id,)).fetchone()
    if stored is not None and bytes(stored[0]) != digest:
        raise HTTPBatchConflict(f"batch_id {batch_id!r} was used for a batch with other content; "
                            "send a new batch under a new batch_id")
    rows = db.execute("SELECT id FROM tasks WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                      (first, first + count - 1)).fetchall()
    if len(rows) != count:
        raise HTTPBatchGone(f"batch {batch_id!r} was stored ({count} tasks in task group {group_id!r}), but "
                        f"{count - len(rows)} of its tasks were purged since: its task ids cannot be given again",
                        task_group_id=group_id)
    return group_id, [r[0] for r in rows]


def remember(db: sqlite3.Connection, batch_id: str, owner: str, group_id: str, first: int, count: int, now: float,
             digest: bytes) -> None:
    db.execute("INSERT INTO batches (id, owner, task_group_id, first_task, task_count, created) "
               "VALUES (?, ?, ?, ?, ?, ?)", (batch_id, owner, group_id, first, count, now))
    db.execute("INSERT INTO batch_digests (id, digest) VALUES (?, ?)", (batch_id, digest))


FORGET_GROUPS = "DELETE FROM batch_digests WHERE id IN (SELECT id FROM batches WHERE task_group_id = ?)"
"""Forget the digests of a task group's batches (before its ``batches`` rows go)."""
