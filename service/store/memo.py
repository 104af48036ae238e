"""Memoization in the store: a call's result remembered by (user, function id, hash of its
serialized arguments), never deserialized.

A memoized batch (``memoize`` in the request) is inserted like any other; then, in the same
transaction, each task whose key has an unexpired entry is finished at once with the stored
result (``memo_hit``; its group's ``memo_hits`` counts it) and never sent; each other task gets
a ``memo_pending`` row. When its result commits (``remember``, in the committing
transaction), a success becomes the key's entry, valid ``ttl`` seconds; a failure is never
remembered. ``forget`` drops a user's entries. Tasks not memoized pay one probe of the empty
``memo_pending`` table per committed result batch.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence

from fabric.protocol import RESULT_OK
from service.store import task_groups
from service.store.schema import chunks, marks

DEFAULT_TTL = 7 * 24 * 3600.0
"""Seconds a remembered result stays valid unless the request says otherwise."""
MAX_TTL = 366 * 24 * 3600.0


def args_hash(payload: bytes) -> bytes:
    """The key part of a call's serialized arguments (BLAKE2b-256 of the bytes as they are)."""
    return hashlib.blake2b(payload, digest_size=32).digest()


def answer(db: sqlite3.Connection, owner: str, group_id: str, task_ids: Sequence[str], function_ids: Sequence[str],
           hashes: Sequence[bytes], ttl: float, now: float) -> int:
    """Finish the freshly inserted tasks the memo knows (in the caller's transaction); the
    others are remembered on success. Returns how many were answered (hits)."""
    hits: list[tuple[int, task_groups.Result]] = []
    pending = []
    for task_id, function_id, digest in zip(task_ids, function_ids, hashes):
        row = db.execute("SELECT result_kind, result FROM memo WHERE owner = ? AND function_id = ? AND args_hash = ? "
                         "AND expires > ?", (owner, function_id, digest, now)).fetchone()
        if row is None:
            pending.append((task_id, owner, function_id, digest, ttl))
            continue
        rowid = db.execute("SELECT rowid FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]
        hits.append((rowid, (task_id, row[0], bytes(row[1]), None)))
    db.executemany("INSERT OR REPLACE INTO memo_pending (task_id, owner, function_id, args_hash, ttl) "
                   "VALUES (?, ?, ?, ?, ?)", pending)
    if hits:
        task_groups.finish(db, group_id, hits, len(hits), now)
        for chunk in chunks([rowid for rowid, _ in hits]):
            db.execute(f"UPDATE tasks SET memo_hit = 1 WHERE rowid IN ({marks(len(chunk))})", chunk)
        db.execute("UPDATE task_groups SET memo_hits = memo_hits + ? WHERE id = ?", (len(hits), group_id))
    return len(hits)


def remember(db: sqlite3.Connection, finished: Sequence[str], now: float) -> None:
    """Just-committed memoized tasks (in the caller's transaction): a success becomes its key's entry."""
    if db.execute("SELECT 1 FROM memo_pending LIMIT 1").fetchone() is None:
        return
    for chunk in chunks(finished):
        rows = db.execute(f"SELECT p.owner, p.function_id, p.args_hash, t.result_kind, t.result, p.ttl "
                          f"FROM memo_pending p JOIN tasks t ON t.id = p.task_id "
                          f"WHERE p.task_id IN ({marks(len(chunk))})", chunk).fetchall()
        if not rows:
            continue
        db.executemany("INSERT OR REPLACE INTO memo (owner, function_id, args_hash, result_kind, result, created, "
                       "expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(owner, function_id, digest, kind, result, now, now + ttl)
                        for owner, function_id, digest, kind, result, ttl in rows if kind == RESULT_OK])
        db.execute(f"DELETE FROM memo_pending WHERE task_id IN ({marks(len(chunk))})", chunk)


def forget(db: sqlite3.Connection, owner: str, function_id: str | None, now: float) -> int:
    """Drop the owner's entries (of one function, or all); expired ones of anyone go too. How many of the owner's."""
    if function_id is None:
        count = db.execute("DELETE FROM memo WHERE owner = ?", (owner,)).rowcount
    else:
        count = db.execute("DELETE FROM memo WHERE owner = ? AND function_id = ?", (owner, function_id)).rowcount
    db.execute("DELETE FROM memo WHERE expires <= ?", (now,))
    return int(count)
