"""``SQLiteStore``'s routing methods (``service.store.routes`` holds their SQL), mixed in to
keep the store's module to its core: endpoint groups, endpoint reports, routes, placing and
re-routing tasks."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from fabric.protocol import Task
from service.records import (DISPATCHED, RECEIVED, RUNNING, WAITING, EndpointGroupRecord, EndpointReport, NewTasks,
                             RoutedBatch, RouteRecord)
from service.routing import Placement
from service.store import access, routes


class RoutingMethods:
    """The routing part of the ``Store`` interface over SQLite (see ``service.store.base``)."""

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _insert(self, owner: str, tasks: NewTasks, state: str, route_id: str | None = None,
                placed: Sequence[Placement] = ()) -> tuple[str, list[str], bool] | None:
        raise NotImplementedError

    def record_report(self, endpoint_id: str, report: dict[str, Any], measured: dict[str, Any], now: float) -> None:
        with self._write() as db:
            routes.record_report(db, endpoint_id, report, measured, now)

    def endpoint_reports(self, endpoint_ids: Iterable[str]) -> dict[str, EndpointReport]:
        with self._read() as db:
            return routes.reports(db, endpoint_ids)

    def create_endpoint_group(self, owner: str, name: str, members: Sequence[str]) -> EndpointGroupRecord | None:
        with self._write() as db:
            return routes.create_group(db, owner, name, list(members))

    def endpoint_group_access(self, user_id: str, group_id: str) -> tuple[EndpointGroupRecord, str] | None:
        with self._read() as db:
            found = access.object_access(db, routes.ENDPOINT_GROUP, "endpoint_groups", routes.GROUP_COLUMNS, user_id,
                                         group_id)
        return (routes.group_record(found[0]), found[1]) if found else None

    def visible_endpoint_groups(self, user_id: str) -> list[tuple[EndpointGroupRecord, str]]:
        with self._read() as db:
            rows = access.visible(db, routes.ENDPOINT_GROUP, "endpoint_groups", routes.GROUP_COLUMNS, user_id)
        return [(routes.group_record(row), how) for row, how in rows]

    def delete_endpoint_group(self, owner: str, group_id: str) -> bool:
        with self._write() as db:
            return routes.delete_group(db, owner, group_id)

    def add_routed(self, owner: str, tasks: NewTasks, endpoint_group_id: str, spec: dict[str, Any],
                   members: Sequence[str], placed: Sequence[Placement] = ()) -> RoutedBatch | None:
        with self._write() as db:
            route = routes.put_route(db, owner, endpoint_group_id, spec, list(members))
        routed = dataclasses.replace(tasks, endpoint_id=routes.route_endpoint(route.route_id))
        added = self._insert(owner, routed, WAITING, route.route_id, placed)
        if added is None:
            return None
        group_id, task_ids, fresh = added
        if not fresh:
            return RoutedBatch(group_id, task_ids, route.route_id, {}, 0)
        sent: dict[str, list[Task]] = {}
        start = 0
        for placement in placed:
            end = start + placement.count
            sent[placement.endpoint_id] = [
                Task(task_ids[i], tasks.function_ids[i], tasks.payloads[i], tasks.walltime, tasks.retries,
                     tasks.priority) for i in range(start, end)]
            start = end
        return RoutedBatch(group_id, task_ids, route.route_id, sent, len(task_ids) - start)

    def get_route(self, route_id: str) -> RouteRecord | None:
        with self._read() as db:
            return routes.route(db, route_id)

    def waiting_routes(self) -> dict[str, int]:
        with self._read() as db:
            return routes.waiting_routes(db)

    def take_routed(self, route_id: str, endpoint_id: str, limit: int, reason: str, now: float) -> list[Task]:
        with self._write() as db:
            return routes.take(db, route_id, endpoint_id, limit, reason, now)

    def reroute(self, endpoint_id: str, dispatched: bool, reason: str) -> dict[str, int]:
        states = (RECEIVED, WAITING, DISPATCHED, RUNNING) if dispatched else (RECEIVED, WAITING)
        with self._write() as db:
            return routes.reroute(db, endpoint_id, states, reason)

    def routed_endpoints(self) -> set[str]:
        with self._read() as db:
            return routes.routed_endpoints(db)

    def placements(self, task_group_id: str) -> dict[str, int]:
        with self._read() as db:
            return routes.placements(db, task_group_id)
