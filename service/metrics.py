"""``GET /metrics``: the service in Prometheus's text format (``prometheus-client``).

What it exports (no label ever carries a user's data: routes are Flask endpoint names,
states and status codes are fixed vocabularies)::

    fabric_http_requests_total{route, method, status}   counter, one increment per HTTP request
    fabric_tasks{state}                                  tasks in the store by state (gauge)
    fabric_tasks_submitted_total                         tasks accepted since this process started
    fabric_results_total                                 results committed since this process started
    fabric_task_round_trip_seconds                       histogram: result committed - task accepted
    fabric_endpoints_online / fabric_endpoints           endpoints online, and registered
    fabric_managers / fabric_workers                     capacity reported by online endpoints
    fabric_store_bytes                                   the SQLite file with its WAL

The hot path pays nothing: everything but the request counter is computed when
``/metrics`` is read, with one pass over the store's ``tasks`` table and one over
``endpoints`` (a read-only connection of its own; WAL readers never block writers).
Submissions, results and round trips since the previous read are folded into
cumulative counters and histogram buckets kept here, so rates (``rate(...[5m])``) work as
Prometheus expects; a task purged between two reads (``result_ttl``, days by default) is
not counted. The first read counts what the store holds from this process's start.

Who may read it: the users named in the service setting ``metrics_users`` (with their
bearer token, as for the API; anyone else gets 403), or anyone without a token when
``metrics_public`` is true (for a Prometheus on a private network). The numbers are
service-wide totals, so the default is no one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fabric.untrusted import printable
from service.api.common import services
from service.errors import Forbidden
from service.openapi import operation
from service.records import STATES

logger = logging.getLogger(__name__)
blueprint = Blueprint("metrics", __name__)

ROUND_TRIP_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                      300.0, 3600.0)


class StoreCollector(Collector):
    """Task, endpoint and store figures read from the SQLite store when scraped."""

    def __init__(self, database: str, heartbeat_threshold: float) -> None:
        self.database, self.heartbeat_threshold = database, heartbeat_threshold
        self._lock = threading.Lock()
        self._since = time.time()
        self._submitted = 0
        self._results = 0
        self._buckets = [0] * (len(ROUND_TRIP_BUCKETS) + 1)  # the last is +Inf
        self._sum = 0.0

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=5.0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            db = self._connect()
            try:
                states = self._fold_tasks(db)
                endpoints = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(online), 0), COALESCE(SUM(managers * online), 0), "
                    "COALESCE(SUM(workers * online), 0) FROM (SELECT managers, workers, "
                    "(connected AND last_heartbeat >= ?) AS online FROM endpoints)",
                    (time.time() - self.heartbeat_threshold,)).fetchone()
            finally:
                db.close()
            yield from self._families(states, endpoints)

    def _fold_tasks(self, db: sqlite3.Connection) -> dict[str, int]:
        """One pass over ``tasks``: counts by state, and what was submitted and finished since
        the previous read, folded into the cumulative counters."""
        now = time.time()
        round_trip = "(completed - created)"
        bucket_sums = ", ".join(f"SUM(completed > :since AND completed <= :now AND {round_trip} <= {bound})"
                                for bound in ROUND_TRIP_BUCKETS)
        rows = db.execute(
            f"SELECT state, COUNT(*), SUM(created > :since AND created <= :now), "
            f"SUM(completed > :since AND completed <= :now), "
            f"SUM(CASE WHEN completed > :since AND completed <= :now THEN {round_trip} END), {bucket_sums} "
            f"FROM tasks GROUP BY state", {"since": self._since, "now": now}).fetchall()
        states = dict.fromkeys(STATES, 0)
        for state, count, submitted, finished, total, *buckets in rows:
            states[state] = count
            self._submitted += submitted or 0
            self._results += finished or 0
            self._sum += total or 0.0
            for i, value in enumerate(buckets):
                self._buckets[i] += value or 0
            self._buckets[-1] += finished or 0
        self._since = now
        return states

    def _families(self, states: dict[str, int], endpoints: tuple[int, int, int, int]) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("fabric_tasks", "Tasks in the store, by state", labels=["state"])
        for state, count in states.items():
            tasks.add_metric([state], count)
        yield tasks
        yield CounterMetricFamily("fabric_tasks_submitted", "Tasks accepted since the service started",
                                  value=self._submitted)
        yield CounterMetricFamily("fabric_results", "Results committed since the service started",
                                  value=self._results)
        cumulative = [(str(bound), count) for bound, count in zip(ROUND_TRIP_BUCKETS, self._buckets)]
        yield HistogramMetricFamily("fabric_task_round_trip_seconds",
                                    "From a task's acceptance to its result's commit, at the service",
                                    buckets=[*cumulative, ("+Inf", self._buckets[-1])], sum_value=self._sum)
        registered, online, managers, workers = endpoints
        yield GaugeMetricFamily("fabric_endpoints", "Endpoints registered", value=registered)
        yield GaugeMetricFamily("fabric_endpoints_online", "Endpoints online", value=online)
        yield GaugeMetricFamily("fabric_managers", "Managers of the online endpoints", value=managers)
        yield GaugeMetricFamily("fabric_workers", "Workers of the online endpoints", value=workers)
        size = sum(os.path.getsize(path) for path in (self.database, f"{self.database}-wal")
                   if os.path.exists(path))
        yield GaugeMetricFamily("fabric_store_bytes", "The store's size on disk (database and WAL)", value=size)


class Metrics:
    """The service's registry: the request counter and the store collector."""

    def __init__(self, database: str, heartbeat_threshold: float) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("fabric_http_requests", "HTTP requests answered, by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.store = StoreCollector(database, heartbeat_threshold)
        self.registry.register(self.store)

    def count(self, response: Response) -> Response:
        """``after_request``: count the request under its route's name (never its path), and
        log it at DEBUG (the access log: ``--log-level DEBUG``)."""
        route = request.endpoint or "unknown"
        self.requests.labels(route, request.method, str(response.status_code)).inc()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s (%s) -> %d", request.method, printable(request.path, 256), route,
                         response.status_code)
        return response


def install(app: Flask) -> Metrics:
    """Add ``/metrics`` and the request counter to ``app``."""
    config = app.extensions["fabric"].config
    metrics = Metrics(str(config.database_path), config.heartbeat_threshold)
    app.extensions["fabric_metrics"] = metrics
    app.register_blueprint(blueprint)
    app.after_request(metrics.count)
    return metrics


@blueprint.get("/metrics")
@operation("Prometheus metrics of the whole service (users in the metrics_users setting, or anyone "
           "when metrics_public is set)", response="text", errors=(403,))
def metrics_view() -> Response:
    config = services().config
    user = g.get("user")
    if not config.metrics_public and (user is None or user.name not in config.metrics_users):
        raise Forbidden("only the users in the service's metrics_users setting may read /metrics")
    metrics: Metrics = current_app.extensions["fabric_metrics"]
    return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)
