"""``GET /metrics``: Prometheus text parsed by ``prometheus_client``'s own parser, with values
checked against the store (a real service, a real endpoint, real tasks, the real SQLite file)."""

from __future__ import annotations

import sqlite3
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.support import TIMEOUT, poll_until
from tests.support.sdk_functions import double, fail
from tests.support.service import Api

from fabric import Executor, RemoteExecutionError


def scrape(api: Api) -> dict[str, list[Any]]:
    reply = api.get("/metrics")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].startswith("text/plain")
    families = text_string_to_metric_families(reply.body.decode())
    return {family.name: family.samples for family in families}


def value(samples: list[Any], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples)
    return found[0]  # type: ignore[no-any-return]


def test_metrics_agree_with_the_store(cluster: Any) -> None:
    service = cluster.service(metrics_users=["ops"])
    operator = Api(service.url, service.add_user("ops"))
    from tests.support.service import user
    client = user(service)
    registration = client.register_endpoint("laptop")
    cluster.endpoint(registration)
    endpoint_id = registration["endpoint_id"]
    poll_until(lambda: client.get_endpoint_status(endpoint_id)["status"] == "online", "the endpoint online")
    before = scrape(operator)
    assert value(before["fabric_tasks_submitted"], "fabric_tasks_submitted_total") == 0

    with Executor(endpoint_id, client=client) as executor:
        assert list(executor.map(double, range(200))) == [2 * i for i in range(200)]
        failing = executor.submit(fail, "on purpose")
        try:
            failing.result(TIMEOUT)
        except RemoteExecutionError:
            pass
    metrics = scrape(operator)
    with sqlite3.connect(service.data_dir / "fabric.db") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
        (finished,) = db.execute("SELECT COUNT(*) FROM tasks WHERE completed IS NOT NULL").fetchone()
        round_trips = [r for (r,) in db.execute("SELECT completed - created FROM tasks WHERE completed IS NOT NULL")]
    assert states == {"success": 200, "failed": 1}
    for state, count in states.items():
        assert value(metrics["fabric_tasks"], "fabric_tasks", state=state) == count
    assert value(metrics["fabric_tasks"], "fabric_tasks", state="running") == 0
    assert value(metrics["fabric_tasks_submitted"], "fabric_tasks_submitted_total") == 201
    assert value(metrics["fabric_results"], "fabric_results_total") == finished == 201
    histogram = metrics["fabric_task_round_trip_seconds"]
    assert value(histogram, "fabric_task_round_trip_seconds_count") == 201
    assert abs(value(histogram, "fabric_task_round_trip_seconds_sum") - sum(round_trips)) < 1e-6
    assert value(histogram, "fabric_task_round_trip_seconds_bucket", le="60.0") == \
        sum(1 for r in round_trips if r <= 60.0)
    assert value(metrics["fabric_endpoints_online"], "fabric_endpoints_online") == 1
    assert value(metrics["fabric_workers"], "fabric_workers") == 2
    assert value(metrics["fabric_store_bytes"], "fabric_store_bytes") >= (service.data_dir / "fabric.db").stat().st_size
    submits = value(metrics["fabric_http_requests"], "fabric_http_requests_total", route="batches.submit_batch",
                    method="POST", status="201")
    assert submits >= 1

    again = scrape(operator)  # the counters keep what they counted; nothing new since
    assert value(again["fabric_tasks_submitted"], "fabric_tasks_submitted_total") == 201
    assert value(again["fabric_task_round_trip_seconds"], "fabric_task_round_trip_seconds_count") == 201


def test_who_may_read_metrics(cluster: Any) -> None:
    service = cluster.service(metrics_users=["ops"])
    alice_token = service.add_user("alice")
    Api(service.url, alice_token).register_endpoint("alices-secret-laptop")
    stranger = Api(service.url, alice_token).get("/metrics")
    assert stranger.status == 403 and stranger.error_type() == "forbidden"
    assert Api(service.url, None).get("/metrics").status == 401
    text = Api(service.url, service.add_user("ops")).get("/metrics").body.decode()
    assert "alice" not in text and "alices-secret-laptop" not in text  # no user's data in labels


def test_metrics_public_needs_no_token(cluster: Any) -> None:
    service = cluster.service(metrics_public=True)
    reply = Api(service.url, None).get("/metrics")
    assert reply.status == 200 and "fabric_tasks" in reply.body.decode()
