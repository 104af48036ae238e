"""What happens to a task group as a whole: results counted into it, its progress, cancel, retry.

``finish`` is the one place a task becomes finished (a result from its endpoint, or a
cancellation here): the group's counters move and each task gets the group's next seq, in
the same transaction. ``cancel`` and ``retry`` walk the group's tasks in submission order,
a chunk per write transaction, so a group of a million tasks never holds the store's
write lock for long (each chunk re-reads the states it changes).
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fabric.errors import TaskCancelled
from fabric.protocol import RESULT_OK, task_error_result
from service.records import (DISPATCHED, FAILED, RECEIVED, SUCCESS, WAITING, WAITING_FOR_INPUTS, CancelOutcome,
                             GroupCounts, RetryOutcome)
from service.store.schema import CANCELLED_PREFIX, ROWS_PER_STATEMENT, is_cancellation, row_chunks

Write = Callable[[], AbstractContextManager[sqlite3.Connection]]

WALK_CHUNK = 2000
"""Tasks per write transaction when cancelling or retrying a whole group."""

Result = tuple[Any, int, bytes, str | None]
"""``(task id, kind, payload, error)``: a task's result as the forwarder hands it over."""

_SET_SUCCESS = (f"UPDATE tasks SET state = '{SUCCESS}', result_kind = ?, result = ?, error = NULL, completed = ?, "
                "seq = ?, args = NULL WHERE rowid = ?")
_SET_FAILURE = (f"UPDATE tasks SET state = '{FAILED}', result_kind = ?, result = ?, error = ?, completed = ?, seq = ?, "
                "args = CASE WHEN ? THEN args END WHERE rowid = ?")  # kept for a retry, unless cancelled
_FINISH_GROUP = ("UPDATE task_groups SET last_seq = last_seq + ?1, finished_count = finished_count + ?1, "
                 "failed_count = failed_count + ?2, cancelled_count = cancelled_count + ?3, "
                 "sent_count = sent_count - ?4, updated = max(updated, ?5), oldest_result = coalesce(oldest_result, ?5) "
                 "WHERE id = ?6 RETURNING last_seq")


def finish(db: sqlite3.Connection, task_group_id: str, finished: list[tuple[int, Result]], unsent: int,
           now: float) -> None:
    """Commit ``(rowid, result)`` of the group's unfinished tasks (``unsent`` of them never
    dispatched): the group's counters, then each task with the group's next seq, in order."""
    failures = [i for i, (_, result) in enumerate(finished) if result[1] != RESULT_OK]
    cancelled = sum(1 for i in failures if is_cancellation(finished[i][1][1], finished[i][1][3]))
    last = db.execute(_FINISH_GROUP, (len(finished), len(failures), cancelled, len(finished) - unsent, now,
                                      task_group_id)).fetchone()[0]
    first = last - len(finished) + 1
    if not failures:  # the usual case: a statement per chunk, no per-task test
        for start, end in row_chunks(len(finished)):
            chunk = finished[start:end]
            db.execute(_set_successes(len(chunk)), (now, *itertools.chain.from_iterable(
                (rowid, kind, payload, seq) for seq, (rowid, (_, kind, payload, _)) in enumerate(chunk, first + start))))
        return
    db.executemany(_SET_SUCCESS, [(kind, payload, now, seq, rowid) for seq, (rowid, (_, kind, payload, _))
                                  in enumerate(finished, first) if kind == RESULT_OK])
    db.executemany(_SET_FAILURE, [(kind, payload, error, now, seq, not is_cancellation(kind, error), rowid)
                                  for seq, (rowid, (_, kind, payload, error)) in enumerate(finished, first)
                                  if kind != RESULT_OK])


@functools.lru_cache(maxsize=len(ROWS_PER_STATEMENT))
def _set_successes(count: int) -> str:
    """``_SET_SUCCESS`` for ``count`` tasks (one of ``ROWS_PER_STATEMENT``) in one statement:
    ``?1`` the completion time, then rowid, kind, payload and seq of each (40% cheaper than a
    statement per task)."""
    rows = ",".join(["(?,?,?,?)"] * count)
    return (f"UPDATE tasks SET state = '{SUCCESS}', result_kind = v.column2, result = v.column3, error = NULL, "
            f"completed = ?1, seq = v.column4, args = NULL FROM (VALUES {rows}) AS v WHERE tasks.rowid = v.column1")


def counts(db: sqlite3.Connection, task_group_id: str) -> GroupCounts | None:
    row = db.execute("SELECT task_count, finished_count, failed_count, cancelled_count, sent_count, memo_hits "
                     "FROM task_groups WHERE id = ?", (task_group_id,)).fetchone()
    if row is None:
        return None
    tasks, finished, failed, cancelled, sent, memo_hits = row
    return GroupCounts(tasks=tasks, success=finished - failed, failed=failed, pending=tasks - finished,
                       waiting=tasks - finished - sent, running=sent, cancelled=cancelled, memo_hits=memo_hits)


Row = tuple[int, str, str, str, Any, Any, int]
"""``rowid, id, endpoint_id, state, result_kind, error, has arguments`` of one task."""


def _walk(write: Write, task_group_id: str, step: Callable[[sqlite3.Connection, list[Row]], None]) -> None:
    """``step(db, rows)`` on the group's tasks in submission order, a chunk per write transaction."""
    after = 0
    while True:
        with write() as db:
            rows = db.execute("SELECT rowid, id, endpoint_id, state, result_kind, error, args IS NOT NULL FROM tasks "
                              "WHERE task_group_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
                              (task_group_id, after, WALK_CHUNK)).fetchall()
            if rows:
                step(db, rows)
        if len(rows) < WALK_CHUNK:
            return
        after = rows[-1][0]


def cancel(write: Write, task_group_id: str, now: float) -> CancelOutcome:
    """Tasks not yet sent fail with ``TaskCancelled`` (committed with seqs, so result
    streams deliver them); dispatched ones are named per endpoint; running ones go on."""
    cancelled = 0
    dispatched: dict[str, list[str]] = defaultdict(list)

    def step(db: sqlite3.Connection, rows: list[Row]) -> None:
        nonlocal cancelled
        unsent: list[tuple[int, Result]] = []
        for rowid, task_id, endpoint_id, state, *_ in rows:
            if state == RECEIVED or state == WAITING or state == WAITING_FOR_INPUTS:
                error = TaskCancelled(task_id=task_id)
                _, kind, payload = task_error_result(task_id, error)
                unsent.append((rowid, (task_id, kind, payload, f"{CANCELLED_PREFIX} {error}")))
            elif state == DISPATCHED:
                dispatched[endpoint_id].append(task_id)
        if unsent:
            finish(db, task_group_id, unsent, len(unsent), now)
            cancelled += len(unsent)
            from service.store import dependencies  # noqa: PLC0415 - it builds on this module
            dependencies.release(db, [result[0] for _, result in unsent], now)  # their dependents fail

    _walk(write, task_group_id, step)
    return CancelOutcome(cancelled, dict(dispatched))


def retry(write: Write, task_group_id: str, is_online: Callable[[str], bool], now: float) -> RetryOutcome:
    """Failed tasks (not cancelled ones, and only those whose arguments were kept) wait to
    run again: result cleared, out of the group's finished counts, a new seq when they finish."""
    retried = 0
    online: dict[str, bool] = {}

    def step(db: sqlite3.Connection, rows: list[Row]) -> None:
        nonlocal retried
        again = []
        for rowid, _, endpoint_id, state, kind, error, has_args in rows:
            if state == FAILED and has_args and not is_cancellation(kind, error):
                if endpoint_id not in online:
                    online[endpoint_id] = is_online(endpoint_id)
                again.append((RECEIVED if online[endpoint_id] else WAITING, rowid))
        if again:
            db.executemany("UPDATE tasks SET state = ?, result_kind = NULL, result = NULL, error = NULL, "
                           "started = NULL, completed = NULL, seq = NULL WHERE rowid = ?", again)
            db.execute("UPDATE task_groups SET finished_count = finished_count - ?1, failed_count = failed_count - ?1, "
                       "updated = max(updated, ?2) WHERE id = ?3", (len(again), now, task_group_id))
            retried += len(again)

    _walk(write, task_group_id, step)
    return RetryOutcome(retried, set(online))
