"""The forwarder's routing state: what it knows of each endpoint, and tasks of endpoint groups.

The forwarder calls in from its own thread only. It tells the router what it hears
(status reports, results, sessions opening and closing) and asks it, each turn, which
waiting routed tasks to place where (``placements``, decided by the pure
``service.routing.plan`` from live reports and the service's measurements). The tick
measures throughput, re-routes the tasks of endpoints gone offline (those not yet sent at
once, those sent after ``failover_grace``) and lets drained endpoints back in.

An endpoint whose results are system errors (``TaskError`` s other than cancellations:
lost workers, lost managers, timeouts) ``DRAIN_AFTER`` times in a row is drained from
routing for ``drain_seconds``: it keeps its tasks, but no group's tasks are placed on it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from fabric.protocol import RESULT_TASK_ERROR, StatusReport
from service.records import CommitOutcome
from service.routing import Candidate, Hardware, Measured, Placement, RoutingSpec, plan
from service.store import Store
from service.store.schema import is_cancellation

logger = logging.getLogger(__name__)

DRAIN_AFTER = 20
"""System errors in a row that drain an endpoint from routing."""
RATE_SAMPLE = 0.5
"""Seconds between throughput samples of an endpoint that has work."""
ROUTES_REFRESH = 5.0
"""Seconds between looks in the store for routes with waiting tasks (another process's, or missed)."""


@dataclasses.dataclass(slots=True)
class _Known:
    """What the router knows of one endpoint (kept across its sessions)."""

    measured: Measured = dataclasses.field(default_factory=Measured)
    hardware: Hardware | None = None
    report: dict[str, Any] = dataclasses.field(default_factory=dict)
    completed: int = 0  # results since the last rate sample
    sampled_at: float = 0.0
    busy: bool = False  # had tasks in flight at the last sample
    status_sent: tuple[int, float] = (-1, 0.0)
    offline_since: float | None = None
    moved_unsent: bool = False  # its routed tasks not yet sent were re-routed since it went offline
    drained_until: float = 0.0


class Router:
    """Routing state and decisions for the forwarder; ``in_flight(endpoint id)`` is the
    session's count of dispatched unfinished tasks, None while offline."""

    def __init__(self, store: Store, in_flight: Callable[[str], int | None], *, failover_grace: float,
                 drain_seconds: float, now: float) -> None:
        self.store = store
        self.in_flight = in_flight
        self.failover_grace = failover_grace
        self.drain_seconds = drain_seconds
        self.known: dict[str, _Known] = {}
        self.waiting: dict[str, int] = {}  # route id -> tasks waiting to be placed (about)
        self.routes: dict[str, tuple[RoutingSpec, tuple[str, ...]]] = {}
        self.routes_checked = 0.0
        for endpoint_id in store.routed_endpoints():  # a restart: nobody is connected yet
            self._of(endpoint_id).offline_since = now

    def _of(self, endpoint_id: str) -> _Known:
        known = self.known.get(endpoint_id)
        if known is None:
            known = self.known[endpoint_id] = _Known()
        return known

    # -- what the forwarder hears --------------------------------------------------------
    def route_added(self, route_id: str, count: int) -> None:
        self.waiting[route_id] = self.waiting.get(route_id, 0) + count

    def online(self, endpoint_id: str) -> None:
        self._of(endpoint_id).offline_since = None

    def offline(self, endpoint_id: str, now: float) -> None:
        known = self._of(endpoint_id)
        known.offline_since, known.moved_unsent = now, False

    def status_sent(self, endpoint_id: str, request_id: int, now: float) -> None:
        self._of(endpoint_id).status_sent = (request_id, now)

    def on_report(self, endpoint_id: str, message: StatusReport, now: float) -> None:
        known = self._of(endpoint_id)
        request_id, sent = known.status_sent
        if message.request_id == request_id:
            known.measured.observe_rtt(now - sent)
        managers = [_manager(m) for m in message.managers if isinstance(m, dict)]
        labels = _labels(message.labels)
        known.hardware = Hardware(tuple(managers), labels)
        workers = known.hardware.workers
        busy = sum(min(m["outstanding"], m["workers"]) for m in managers)
        known.report = {"managers": managers, "labels": labels, "workers": workers,
                        "idle_workers": max(0, workers - busy), "queued_tasks": message.queued_tasks,
                        "outstanding_tasks": message.outstanding_tasks,
                        "accelerators": known.hardware.accelerators,
                        "python_versions": known.hardware.python_versions}
        self.store.record_report(endpoint_id, known.report, self.measured(endpoint_id, now), time.time())

    def on_results(self, endpoint_id: str, results: Sequence[tuple[Any, int, bytes, str | None]],
                   outcome: CommitOutcome, now: float) -> None:
        known = self._of(endpoint_id)
        committed = len(outcome.committed)
        system = sum(1 for _, kind, _, error in results
                     if kind == RESULT_TASK_ERROR and not is_cancellation(kind, error))
        known.completed += committed
        known.measured.observe_results(len(results), system, outcome.round_trip)
        if known.measured.consecutive_failures >= DRAIN_AFTER and known.drained_until <= now:
            known.drained_until = now + self.drain_seconds
            known.measured.consecutive_failures = 0
            logger.warning("endpoint %s: %d system errors in a row; drained from routing for %.0f s",
                           endpoint_id, DRAIN_AFTER, self.drain_seconds)

    def measured(self, endpoint_id: str, now: float) -> dict[str, Any]:
        """The measurements, and how many more seconds the endpoint is drained for."""
        known = self._of(endpoint_id)
        return {**known.measured.to_dict(), "drained_for": max(0.0, round(known.drained_until - now, 3))}

    # -- deciding ------------------------------------------------------------------------
    def placements(self, limit: int, now: float) -> list[tuple[str, Placement]]:
        """(route id, placement) for routes with waiting tasks, as room allows now."""
        if not self.waiting:
            return []
        decided: list[tuple[str, Placement]] = []
        pending: dict[str, int] = {}  # placed this turn, not yet counted in flight
        for route_id, waiting in list(self.waiting.items()):
            route = self._route(route_id)
            if route is None:
                del self.waiting[route_id]
                continue
            spec, members = route
            for placement in plan(spec, self._candidates(members, now, pending), min(limit, waiting)):
                decided.append((route_id, placement))
                pending[placement.endpoint_id] = pending.get(placement.endpoint_id, 0) + placement.count
        return decided

    def plan_now(self, route_id: str, spec: RoutingSpec, members: Sequence[str], count: int,
                 now: float) -> list[Placement]:
        """Placements for a new batch of the route (dispatch at submit), unless tasks of the
        route wait already (these must not overtake them): then none. Any thread, under the
        forwarder's lock (``in_flight`` then counts what other submits reserved)."""
        if route_id in self.waiting:
            return []
        return plan(spec, self._candidates(members, now, {}), count)

    def _candidates(self, members: Sequence[str], now: float, pending: dict[str, int]) -> list[Candidate]:
        """The connected, undrained members as ``plan`` sees them."""
        candidates = []
        for endpoint_id in members:
            in_flight = self.in_flight(endpoint_id)
            known = self.known.get(endpoint_id)
            if in_flight is None or known is None or known.drained_until > now:
                continue
            candidates.append(Candidate(endpoint_id, known.hardware or Hardware(), known.measured,
                                        in_flight + pending.get(endpoint_id, 0)))
        return candidates

    def _route(self, route_id: str) -> tuple[RoutingSpec, tuple[str, ...]] | None:
        route = self.routes.get(route_id)
        if route is None:
            record = self.store.get_route(route_id)
            if record is None:
                return None
            route = self.routes[route_id] = (RoutingSpec.parse(record.spec), record.members)
        return route

    def placed(self, route_id: str, asked: int, got: int) -> None:
        """``got`` of ``asked`` tasks were placed; fewer: none wait any more."""
        left = self.waiting.get(route_id, 0) - got
        if got < asked or left <= 0:
            self.waiting.pop(route_id, None)
        else:
            self.waiting[route_id] = left

    # -- timer ---------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Throughput samples, failover of offline endpoints, a look for waiting routes."""
        for endpoint_id, known in list(self.known.items()):
            self._sample(endpoint_id, known, now)
            if known.offline_since is not None:
                self._fail_over(endpoint_id, known, now)
        if now - self.routes_checked >= ROUTES_REFRESH:
            self.routes_checked = now
            self.waiting.update(self.store.waiting_routes())  # the store's counts are the truth

    def _sample(self, endpoint_id: str, known: _Known, now: float) -> None:
        if now - known.sampled_at < RATE_SAMPLE:
            return
        if known.busy and known.completed:
            known.measured.observe_rate(known.completed / (now - known.sampled_at))
        in_flight = self.in_flight(endpoint_id)
        known.busy = bool(in_flight)
        known.completed, known.sampled_at = 0, now

    def _fail_over(self, endpoint_id: str, known: _Known, now: float) -> None:
        assert known.offline_since is not None
        late = now - known.offline_since >= self.failover_grace
        if not late and known.moved_unsent:
            return
        known.moved_unsent = True
        reason = (f"failover: endpoint {endpoint_id} offline for {now - known.offline_since:.1f} s"
                  if late else f"failover: endpoint {endpoint_id} went offline before sending")
        moved = self.store.reroute(endpoint_id, late, reason)
        if moved:
            logger.info("endpoint %s offline: its routed tasks%s wait for another member", endpoint_id,
                        " (also those sent)" if late else " not yet sent")
            for route_id, count in moved.items():
                self.waiting[route_id] = self.waiting.get(route_id, 0) + count
        if late:
            known.offline_since = None  # all moved; nothing more to do until it connects again


def _manager(summary: dict[str, Any]) -> dict[str, Any]:
    """The hardware part of a manager's status summary (counts checked: endpoints are not trusted)."""
    accelerators = summary.get("accelerators")
    ids = [str(a)[:128] for a in accelerators[:1024]] if isinstance(accelerators, list) else []
    return {"manager_id": str(summary.get("manager_id", ""))[:128], "workers": _count(summary.get("workers")),
            "outstanding": _count(summary.get("outstanding")), "cores": _count(summary.get("cores")),
            "memory": _count(summary.get("memory")), "accelerators": ids,
            "accelerator_kind": "gpu" if ids else None,
            "python_version": str(summary.get("python_version") or "")[:32] or None}


MAX_LABELS, MAX_LABEL_TEXT = 64, 256


def _labels(labels: Any) -> dict[str, Any]:
    """The labels an endpoint reports, kept only as far as they are small plain data."""
    if not isinstance(labels, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, value in list(labels.items())[:MAX_LABELS]:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_LABEL_TEXT:
            continue
        if isinstance(value, list):
            value = [v for v in value[:MAX_LABELS] if isinstance(v, str) and len(v) <= MAX_LABEL_TEXT]
        elif isinstance(value, str):
            value = value[:MAX_LABEL_TEXT]
        elif not (isinstance(value, (int, float)) and math.isfinite(value) and abs(value) < 2**53):
            continue
        kept[key] = value
    return kept


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62 else 0
