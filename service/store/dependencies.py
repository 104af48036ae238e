"""Tasks that wait for other tasks (dependencies): stored, released and failed in the store.

A task submitted with inputs (``depends_on``: the ids of tasks whose results are among its
arguments) is stored ``waiting-for-dependencies`` with a ``task_inputs`` row per input.
When an input finishes, ``release`` copies its result into those rows *in the transaction
that commits the result*, so no result is ever lost between two transactions (nor to the
purge, which may delete the input's row once its client has the result). A dependent whose
inputs all finished is then, in the same transaction:

- released: its arguments become ``fabric.dependencies.wrap(arguments, inputs' results)``
  (bytes as they are: nothing is unpickled here) and it waits for its endpoint like any task;
- or failed, if an input failed: a ``DependencyFailed`` task error naming the input, which
  in turn fails (or releases nothing of) its own dependents, transitively.

A task can only name inputs that exist when it is submitted, so dependencies never form a
cycle. Inputs must be the submitter's own tasks (``DependencyNotFound`` otherwise, like a
task that never existed). Tasks without inputs never touch this module's table except for one
indexed probe per committed result batch (``release`` returns at once while it is empty).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from fabric.dependencies import wrap
from fabric.errors import DependencyFailed
from fabric.protocol import RESULT_OK, task_error_result
from service.records import WAITING, WAITING_FOR_INPUTS
from service.store import task_groups
from service.store.schema import chunks, marks

class DependencyNotFound(LookupError):
    """An input names no task of the submitter's (never existed, purged, or someone else's)."""

    def __init__(self, input_id: str) -> None:
        super().__init__(f"no task {input_id!r} to depend on")
        self.input_id = input_id


def add_inputs(db: sqlite3.Connection, owner: str, task_ids: Sequence[str], inputs: Sequence[Sequence[str]],
               now: float) -> set[str]:
    """Record the inputs of freshly inserted ``waiting-for-dependencies`` tasks (in the
    caller's write transaction); those whose inputs all finished already are released or
    failed at once. Returns the endpoints with tasks released. Raises ``DependencyNotFound``
    (the caller's transaction then rolls back: nothing of the batch is stored)."""
    wanted = sorted({i for ids in inputs for i in ids})
    known: dict[str, str] = {}
    for chunk in chunks(wanted):
        known.update(db.execute(f"SELECT id, owner FROM tasks WHERE id IN ({marks(len(chunk))})", chunk).fetchall())
    for input_id in wanted:
        if known.get(input_id) != owner:
            raise DependencyNotFound(input_id)
    db.executemany("INSERT OR IGNORE INTO task_inputs (input_id, task_id, position) VALUES (?, ?, ?)",
                   [(input_id, task_id, position) for task_id, ids in zip(task_ids, inputs)
                    for position, input_id in enumerate(ids)])
    return release(db, wanted, now, new=[t for t, ids in zip(task_ids, inputs) if not ids])


def release(db: sqlite3.Connection, finished: Iterable[str], now: float, *, new: Sequence[str] = ()) -> set[str]:
    """Tasks ``finished`` (just committed, in the caller's transaction) reach their dependents:
    each dependent whose inputs are all finished is released or failed. ``new``: dependents
    with no inputs at all (released as they are). Returns the endpoints with tasks released."""
    released: set[str] = set()
    ready = list(new)
    pending = list(finished)
    while pending or ready:
        if pending:
            if db.execute("SELECT 1 FROM task_inputs LIMIT 1").fetchone() is None:
                pending = []
            ready += _record_results(db, pending)
            pending = []
        failed = _settle(db, ready, now, released)
        ready = []
        pending = failed  # a dependent that failed fails its own dependents next
    return released


def _record_results(db: sqlite3.Connection, input_ids: list[str]) -> list[str]:
    """Copy finished inputs' results into their edges; the dependents now without unfinished inputs."""
    dependents: set[str] = set()
    for chunk in chunks(input_ids):
        rows = db.execute(f"SELECT DISTINCT task_id FROM task_inputs WHERE input_id IN ({marks(len(chunk))}) "
                          "AND result_kind IS NULL", chunk).fetchall()
        if not rows:
            continue
        db.execute(f"UPDATE task_inputs SET (result_kind, result, error) = (SELECT t.result_kind, t.result, t.error "
                   f"FROM tasks t WHERE t.id = task_inputs.input_id AND t.seq IS NOT NULL) "
                   f"WHERE input_id IN ({marks(len(chunk))}) AND result_kind IS NULL", chunk)
        dependents.update(r[0] for r in rows)
    return [task_id for task_id in sorted(dependents) if db.execute(
        "SELECT 1 FROM task_inputs WHERE task_id = ? AND result_kind IS NULL LIMIT 1", (task_id,)).fetchone() is None]


def _settle(db: sqlite3.Connection, task_ids: list[str], now: float, released: set[str]) -> list[str]:
    """Release or fail each ready dependent (still waiting); returns the ids of those failed."""
    failed: dict[str, list[tuple[int, task_groups.Result]]] = defaultdict(list)
    for task_id in task_ids:
        row = db.execute("SELECT rowid, endpoint_id, task_group_id, args FROM tasks WHERE id = ? AND state = ?",
                         (task_id, WAITING_FOR_INPUTS)).fetchone()
        inputs = db.execute("SELECT input_id, result_kind, result, error FROM task_inputs WHERE task_id = ? "
                            "ORDER BY position", (task_id,)).fetchall()
        db.execute("DELETE FROM task_inputs WHERE task_id = ?", (task_id,))
        if row is None:
            continue  # cancelled or finished meanwhile
        rowid, endpoint_id, group_id, args = row
        bad = next((i for i in inputs if i[1] != RESULT_OK), None)
        if bad is None:
            payload = wrap(bytes(args), [(i[0], bytes(i[2])) for i in inputs]) if inputs else args
            db.execute(f"UPDATE tasks SET state = '{WAITING}', args = ? WHERE rowid = ?", (payload, rowid))
            released.add(endpoint_id)
            continue
        error = DependencyFailed(task_id=task_id, input_id=bad[0], reason=bad[3])
        _, kind, result = task_error_result(task_id, error)
        failed[group_id].append((rowid, (task_id, kind, result, f"DependencyFailed: {error}")))
    for group_id, results in failed.items():
        task_groups.finish(db, group_id, sorted(results, key=lambda r: r[0]), len(results), now)
        rowids = [rowid for rowid, _ in results]  # no arguments: a retry of the group leaves them failed
        db.execute(f"UPDATE tasks SET args = NULL WHERE rowid IN ({marks(len(rowids))})", rowids)
    return [result[0] for results in failed.values() for _, result in results]


def waiting_inputs(db: sqlite3.Connection, task_id: str) -> list[str]:
    """The inputs a task still waits for (for its record)."""
    return [r[0] for r in db.execute("SELECT input_id FROM task_inputs WHERE task_id = ? AND result_kind IS NULL "
                                     "ORDER BY position", (task_id,)).fetchall()]


def parse_depends_on(value: Any, count: int, max_inputs: int) -> list[list[str]] | None:
    """A batch's ``depends_on`` (one list of task ids per task); None when absent or all empty.
    Raises ``ValueError`` with what is wrong."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != count:
        raise ValueError("must be a list with one list of task ids per task")
    for ids in value:
        if not isinstance(ids, list) or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
            raise ValueError("must hold lists of task ids (strings)")
        if len(ids) > max_inputs:
            raise ValueError(f"a task may depend on at most {max_inputs} tasks")
    return value if any(value) else None
