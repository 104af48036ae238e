"""Routing in the store: endpoint groups, endpoint reports, routes, placing and re-routing tasks.

A task submitted to an endpoint group is stored ``waiting-for-endpoint`` with endpoint id
``route:<route id>`` (``records.ROUTE_PREFIX``) and its ``route_id``: it waits in the same
index range as an endpoint's waiting tasks. ``take`` places some on an endpoint in one
transaction (endpoint id, ``dispatched``, the policy's reason, the group's per-endpoint
``placements``); ``reroute`` puts an endpoint's routed unfinished tasks back under their
route in one transaction, so a late result from that endpoint matches no task of it and
is ignored (``commit_results`` only takes results of the endpoint a task is on).

A route is one submitter's way of placing tasks on one group (policy, constraints and the
members they may reach); its id is a hash of those, so repeated batches share it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fabric.protocol import Task
from service.records import (DISPATCHED, RUNNING, ROUTE_PREFIX, WAITING, EndpointGroupRecord,
                             EndpointReport, RouteRecord)
from service.store import access
from service.store.schema import IN_UNFINISHED, chunks, marks

ENDPOINT_GROUP = "endpoint_group"
"""The ``grants.kind`` of an endpoint group."""
GROUP_COLUMNS = "id, owner, name, members, created"
SEND_COLUMNS = "id, function_id, args, walltime, retries, priority, task_group_id"


def group_record(row: tuple[Any, ...]) -> EndpointGroupRecord:
    return EndpointGroupRecord(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4])


def route_endpoint(route_id: str) -> str:
    return ROUTE_PREFIX + route_id


# -- endpoint groups ------------------------------------------------------------------------
def create_group(db: sqlite3.Connection, owner: str, name: str, members: list[str]) -> EndpointGroupRecord | None:
    group_id, now = str(uuid.uuid4()), time.time()
    unique = json.dumps(list(dict.fromkeys(members)))
    cursor = db.execute("INSERT OR IGNORE INTO endpoint_groups (id, owner, name, members, created) "
                        "VALUES (?, ?, ?, ?, ?)", (group_id, owner, name, unique, now))
    if cursor.rowcount == 0:
        return None
    row = db.execute(f"SELECT {GROUP_COLUMNS} FROM endpoint_groups WHERE id = ?", (group_id,)).fetchone()
    return group_record(row)


def delete_group(db: sqlite3.Connection, owner: str, group_id: str) -> bool:
    deleted = db.execute("DELETE FROM endpoint_groups WHERE id = ? AND owner = ?", (group_id, owner)).rowcount > 0
    access.forget_grants(db, ENDPOINT_GROUP, group_id, owner)
    return deleted


# -- reports --------------------------------------------------------------------------------
def record_report(db: sqlite3.Connection, endpoint_id: str, report: dict[str, Any], measured: dict[str, Any],
                  now: float) -> None:
    db.execute("INSERT INTO endpoint_reports (endpoint_id, report, measured, updated) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (endpoint_id) DO UPDATE SET report = excluded.report, measured = excluded.measured, "
               "updated = excluded.updated", (endpoint_id, json.dumps(report), json.dumps(measured), now))


def reports(db: sqlite3.Connection, endpoint_ids: Iterable[str]) -> dict[str, EndpointReport]:
    found: dict[str, EndpointReport] = {}
    for chunk in chunks(list(dict.fromkeys(endpoint_ids))):
        for endpoint_id, report, measured, updated in db.execute(
                f"SELECT endpoint_id, report, measured, updated FROM endpoint_reports "
                f"WHERE endpoint_id IN ({marks(len(chunk))})", chunk):
            found[endpoint_id] = EndpointReport(endpoint_id, json.loads(report), json.loads(measured), updated)
    return found


# -- routes ---------------------------------------------------------------------------------
def route_id_of(owner: str, endpoint_group_id: str, spec: dict[str, Any], members: Iterable[str]) -> str:
    """A route's id: a hash of who routes, over which group and members, by which spec."""
    text = "\0".join((owner, endpoint_group_id, json.dumps(spec, sort_keys=True), json.dumps(sorted(members))))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def put_route(db: sqlite3.Connection, owner: str, endpoint_group_id: str, spec: dict[str, Any],
              members: list[str]) -> RouteRecord:
    spec_text, members_text = json.dumps(spec, sort_keys=True), json.dumps(sorted(members))
    route_id = route_id_of(owner, endpoint_group_id, spec, members)
    db.execute("INSERT OR IGNORE INTO routes (id, owner, endpoint_group_id, spec, members, created) "
               "VALUES (?, ?, ?, ?, ?, ?)", (route_id, owner, endpoint_group_id, spec_text, members_text, time.time()))
    return RouteRecord(route_id, owner, endpoint_group_id, spec, tuple(sorted(members)))


def route(db: sqlite3.Connection, route_id: str) -> RouteRecord | None:
    row = db.execute("SELECT id, owner, endpoint_group_id, spec, members FROM routes WHERE id = ?",
                     (route_id,)).fetchone()
    return None if row is None else RouteRecord(row[0], row[1], row[2], json.loads(row[3]), tuple(json.loads(row[4])))


def waiting_routes(db: sqlite3.Connection) -> dict[str, int]:
    """Routes with tasks waiting to be placed, and how many."""
    counts = {}
    for (route_id,) in db.execute("SELECT id FROM routes").fetchall():
        count = db.execute(f"SELECT count(*) FROM tasks WHERE endpoint_id = ? AND state = '{WAITING}' "
                           f"AND {IN_UNFINISHED}", (route_endpoint(route_id),)).fetchone()[0]
        if count:
            counts[route_id] = count
    return counts


def take(db: sqlite3.Connection, route_id: str, endpoint_id: str, limit: int, reason: str, now: float) -> list[Task]:
    """Place up to ``limit`` of the route's waiting tasks (oldest first) on the endpoint, ``dispatched``
    (one statement: the rows are found by the unfinished index and changed in the same pass)."""
    rows = db.execute(f"UPDATE tasks SET endpoint_id = ?, state = '{DISPATCHED}', dispatched = ?, "
                      f"dispatch_count = dispatch_count + 1, "
                      f"route_reason = ? || coalesce('; after ' || route_reason, '') "
                      f"WHERE rowid IN (SELECT rowid FROM tasks WHERE endpoint_id = ? AND state = '{WAITING}' "
                      f"AND {IN_UNFINISHED} ORDER BY rowid LIMIT ?) RETURNING rowid, {SEND_COLUMNS}",
                      (endpoint_id, now, reason, route_endpoint(route_id), limit)).fetchall()
    rows.sort()  # RETURNING's order is not promised: send in submission order
    per_group = Counter(r[7] for r in rows)
    db.executemany("UPDATE task_groups SET sent_count = sent_count + ? WHERE id = ?",
                   [(count, group_id) for group_id, count in per_group.items()])
    for group_id, count in per_group.items():
        count_placed(db, group_id, {endpoint_id: count})
    return [Task(r[1], r[2], r[3] if r[3] is not None else b"", r[4], r[5], r[6]) for r in rows]


def count_placed(db: sqlite3.Connection, task_group_id: str, counts: dict[str, int]) -> None:
    db.executemany("INSERT INTO placements (task_group_id, endpoint_id, count) VALUES (?, ?, ?) "
                   "ON CONFLICT (task_group_id, endpoint_id) DO UPDATE SET count = count + excluded.count",
                   [(task_group_id, endpoint_id, count) for endpoint_id, count in counts.items()])


def reroute(db: sqlite3.Connection, endpoint_id: str, states: tuple[str, ...], reason: str) -> dict[str, int]:
    """Put the endpoint's routed tasks in these unfinished states back under their routes,
    waiting; returns the routes that have tasks to place again, and how many."""
    rows = db.execute(f"SELECT rowid, route_id, task_group_id, state FROM tasks WHERE endpoint_id = ? "
                      f"AND state IN ({marks(len(states))}) AND {IN_UNFINISHED} AND route_id IS NOT NULL",
                      (endpoint_id, *states)).fetchall()
    for chunk in chunks(rows):
        db.executemany(f"UPDATE tasks SET endpoint_id = '{ROUTE_PREFIX}' || route_id, state = '{WAITING}', "
                       f"route_reason = ? WHERE rowid = ?", [(reason, r[0]) for r in chunk])
    sent = Counter(r[2] for r in rows if r[3] in (DISPATCHED, RUNNING))
    db.executemany("UPDATE task_groups SET sent_count = sent_count - ? WHERE id = ?",
                   [(count, group_id) for group_id, count in sent.items()])
    placed = Counter(r[2] for r in rows)
    db.executemany("UPDATE placements SET count = max(0, count - ?) WHERE task_group_id = ? AND endpoint_id = ?",
                   [(count, group_id, endpoint_id) for group_id, count in placed.items()])
    return dict(Counter(r[1] for r in rows))


def routed_endpoints(db: sqlite3.Connection) -> set[str]:
    """Endpoints holding routed unfinished tasks (placed on them, not under a route)."""
    return {r[0] for r in db.execute(f"SELECT DISTINCT endpoint_id FROM tasks WHERE {IN_UNFINISHED} "
                                     f"AND route_id IS NOT NULL AND endpoint_id NOT LIKE '{ROUTE_PREFIX}%'")}


def placements(db: sqlite3.Connection, task_group_id: str) -> dict[str, int]:
    return {e: n for e, n in db.execute("SELECT endpoint_id, count FROM placements WHERE task_group_id = ? "
                                        "ORDER BY endpoint_id", (task_group_id,)) if n}
