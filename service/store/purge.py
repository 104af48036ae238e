"""Deleting what nobody needs any more, off the request path, in short transactions.

A purge step (``purge``, run by ``service.purger.Purger`` every few seconds) does, in turn:

1. ``record_acknowledged``: the cursors clients acknowledged (``results?after=N``, kept in
   memory by the store until now) become the groups' ``acked_seq``, in one transaction.
2. ``_purge_acknowledged``: finished tasks with seq <= ``acked_seq`` are deleted, a seq
   range of each group's results index from ``purged_seq`` per statement. Failed tasks (not
   cancelled ones) stay, with their arguments, so ``retry`` can run them again, until they
   expire.
3. ``_purge_expired``: finished tasks completed more than the time to live ago are deleted,
   fetched or not, walking each group's results in seq order (the order they finished) from
   the oldest; ``oldest_result`` says which groups have any.
4. ``_delete_empty_groups``: a group with every task purged and nothing added or finished
   for the time to live is deleted, with its batch ids. (Not sooner: a client may still
   add to it, and its result cursor must keep counting up.)

Every step is at most ``ROWS_PER_TRANSACTION`` rows per write transaction, repeated (with
as long a pause) while there is work and the step's time budget lasts; each finds its work
through a partial index of ``task_groups`` that holds only the groups with something to do.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from service.records import FAILED, SUCCESS, PurgeOutcome
from service.store import batches
from service.store.schema import CANCELLED

Write = Callable[[], AbstractContextManager[sqlite3.Connection]]

ROWS_PER_TRANSACTION = 1000
"""At most this many rows deleted (or seqs looked at) per write transaction (about 10 ms); a
step leaves the write lock free at least as long as it held it, so submits and results
waiting for it get in between."""
GROUPS_PER_TRANSACTION = 100


def record_acknowledged(write: Write, acknowledged: dict[str, int]) -> None:
    """Groups' acknowledged cursors (never past the last seq handed out, never backwards)."""
    if acknowledged:
        with write() as db:
            db.executemany("UPDATE task_groups SET acked_seq = min(?1, last_seq) WHERE id = ?2 "
                           "AND acked_seq < min(?1, last_seq)", [(seq, g) for g, seq in acknowledged.items()])


def purge(write: Write, now: float, result_ttl: float, budget: float) -> PurgeOutcome:
    """One purge step; each kind of deletion runs at least once, then while work and ``budget`` last."""
    deadline = time.monotonic() + budget
    cutoff = now - result_ttl
    acknowledged, more_acknowledged = _repeat(lambda: _purge_acknowledged(write), deadline)
    expired, more_expired = _repeat(lambda: _purge_expired(write, cutoff), deadline)
    groups, more_groups = _repeat(lambda: _delete_empty_groups(write, cutoff), deadline)
    return PurgeOutcome(acknowledged, expired, groups, more_acknowledged or more_expired or more_groups)


def _repeat(step: Callable[[], tuple[int, bool]], deadline: float) -> tuple[int, bool]:
    total = 0
    while True:
        started = time.monotonic()
        done, more = step()
        total += done
        if not more or time.monotonic() >= deadline:
            return total, more
        time.sleep(time.monotonic() - started)  # as long again without the write lock: writers waiting get in


def _purge_acknowledged(write: Write) -> tuple[int, bool]:
    deleted = 0
    room = ROWS_PER_TRANSACTION
    with write() as db:
        groups = db.execute("SELECT id, acked_seq, purged_seq FROM task_groups WHERE acked_seq > purged_seq LIMIT ?",
                            (GROUPS_PER_TRANSACTION,)).fetchall()
        for group_id, acked, purged in groups:
            upto = min(acked, purged + room)  # seqs are dense: at most ``room`` rows
            states = db.execute(f"DELETE FROM tasks WHERE task_group_id = ? AND seq > ? AND seq <= ? "
                                f"AND (state = '{SUCCESS}' OR {CANCELLED}) RETURNING state",  # failed ones: kept
                                (group_id, purged, upto)).fetchall()
            failed = sum(1 for (state,) in states if state == FAILED)
            db.execute("UPDATE task_groups SET purged_seq = ?, purged_count = purged_count + ?, "
                       "purged_failed = purged_failed + ? WHERE id = ?", (upto, len(states), failed, group_id))
            deleted += len(states)
            room -= upto - purged
            if room <= 0:
                return deleted, True
    return deleted, len(groups) == GROUPS_PER_TRANSACTION


def _purge_expired(write: Write, cutoff: float) -> tuple[int, bool]:
    deleted = 0
    room = ROWS_PER_TRANSACTION
    with write() as db:
        groups = db.execute("SELECT id FROM task_groups WHERE oldest_result IS NOT NULL AND oldest_result < ? "
                            "ORDER BY oldest_result LIMIT ?", (cutoff, GROUPS_PER_TRANSACTION)).fetchall()
        for (group_id,) in groups:
            rows = db.execute("SELECT rowid, seq, state, completed FROM tasks "
                              "WHERE task_group_id = ? AND seq IS NOT NULL ORDER BY seq LIMIT ?",
                              (group_id, room + 1)).fetchall()
            expired = 0
            while expired < min(len(rows), room) and rows[expired][3] < cutoff:
                expired += 1
            oldest = rows[expired][3] if expired < len(rows) else None  # of the first row left, if any
            _delete(db, group_id, rows[:expired], oldest)
            deleted += expired
            room -= expired
            if room <= 0:
                return deleted, True
    return deleted, len(groups) == GROUPS_PER_TRANSACTION


def _delete(db: sqlite3.Connection, group_id: str, rows: list[tuple[Any, ...]], oldest_result: float | None) -> None:
    """Delete task rows ``(rowid, seq, state, ...)`` of a group, count them into it, and set
    its ``oldest_result`` (of the first finished task left)."""
    db.executemany("DELETE FROM tasks WHERE rowid = ?", [(r[0],) for r in rows])
    failed = sum(1 for r in rows if r[2] == FAILED)
    db.execute("UPDATE task_groups SET oldest_result = ?, purged_count = purged_count + ?, "
               "purged_failed = purged_failed + ? WHERE id = ?", (oldest_result, len(rows), failed, group_id))


def _delete_empty_groups(write: Write, cutoff: float) -> tuple[int, bool]:
    with write() as db:
        groups = db.execute("SELECT id FROM task_groups WHERE purged_count = task_count AND updated < ? "
                            "ORDER BY updated LIMIT ?", (cutoff, GROUPS_PER_TRANSACTION)).fetchall()
        db.executemany(batches.FORGET_GROUPS, groups)
        db.executemany("DELETE FROM batches WHERE task_group_id = ?", groups)
        db.executemany("DELETE FROM placements WHERE task_group_id = ?", groups)
        db.executemany("DELETE FROM task_groups WHERE id = ?", groups)
    return len(groups), len(groups) == GROUPS_PER_TRANSACTION
