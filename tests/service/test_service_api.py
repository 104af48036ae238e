"""The REST API through a real service process (waitress on 127.0.0.1, a real SQLite file)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from tests.support.service import Api, ServiceProcess

from service.app import create_app
from service.config import ServiceConfig
from service.openapi import openapi_path

LIMITS = {"max_task_bytes": 64 * 1024, "max_function_bytes": 64 * 1024, "max_batch_tasks": 100,
          "max_request_bytes": 1024 * 1024, "rate_limit": 50.0, "rate_burst": 100, "max_wait": 2.0}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path_factory.mktemp("api"), **LIMITS)
    yield process
    assert process.stop() == 0


@pytest.fixture
def alice(service: ServiceProcess) -> Api:
    return Api(service.url, service.add_user(f"alice-{uuid.uuid4().hex[:6]}"))


@pytest.fixture
def bob(service: ServiceProcess) -> Api:
    return Api(service.url, service.add_user(f"bob-{uuid.uuid4().hex[:6]}"))


def batch(endpoint_id: str, function_id: str, args: list[Any], **extra: Any) -> dict[str, Any]:
    return {"endpoint_id": endpoint_id, "function_id": function_id, "args": args, **extra}


@pytest.fixture
def submitted(alice: Api) -> dict[str, Any]:
    """alice's endpoint, function and a batch of 3 tasks (the endpoint is offline)."""
    endpoint = alice.register_endpoint("laptop")
    function_id = alice.register_function(b"function body")
    reply = alice.submit(batch(endpoint["endpoint_id"], function_id, [b"a", b"b", b"c"]))
    assert reply.status == 201, reply
    return {"endpoint": endpoint, "function_id": function_id, **reply.json()}


def test_every_route_needs_a_valid_bearer_token(service: ServiceProcess, alice: Api) -> None:
    for token, headers in ((None, {}), ("nope.nope", {}), (None, {"Authorization": "Basic abc"}),
                           (None, {"Authorization": "Bearer "})):
        for path in ("/v1/auth/whoami", "/v1/functions", "/v1/openapi.json", "/v1/no/such/route"):
            reply = Api(service.url, token).get(path, headers=headers)
            assert reply.status == 401, (path, reply)
            error = reply.json()["error"]
            assert error["type"] == "unauthorized" and error["request_id"] == reply.headers["X-Request-Id"]
            assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert alice.get("/v1/auth/whoami").json()["name"].startswith("alice")


def test_functions_register_get_delete(alice: Api, bob: Api) -> None:
    body = b"\x03serialized function"
    encoded = base64.b64encode(body).decode()
    first = alice.post("/v1/functions", json_body={"body": encoded, "name": "f", "description": "doc"})
    assert first.status == 200
    function_id = first.json()["function_id"]
    again = alice.post("/v1/functions", json_body={"body": encoded, "name": "f", "description": "doc",
                                                     "function_id": function_id})
    assert again.status == 200 and again.json()["function_id"] == function_id
    got = alice.get(f"/v1/functions/{function_id}").json()
    assert base64.b64decode(got["body"]) == body and got["description"] == "doc"
    assert [f["function_id"] for f in alice.get("/v1/functions").json()["functions"]] == [function_id]
    assert bob.get(f"/v1/functions/{function_id}").status == 404
    assert bob.delete(f"/v1/functions/{function_id}").status == 404
    assert bob.get("/v1/functions").json()["functions"] == []
    assert alice.delete(f"/v1/functions/{function_id}").status == 204
    assert alice.get(f"/v1/functions/{function_id}").status == 404
    assert alice.delete(f"/v1/functions/{function_id}").status == 404


def test_bad_function_registrations(alice: Api) -> None:
    cases = [({"body": "not base64!"}, 400), ({"name": "no body"}, 400), ({"body": 7}, 400), ({"body": ""}, 400),
             ({"body": base64.b64encode(b"x").decode(), "function_id": "wrong"}, 400),
             ({"body": base64.b64encode(b"x" * (64 * 1024 + 1)).decode()}, 413)]
    for data, status in cases:
        reply = alice.post("/v1/functions", json_body=data)
        assert reply.status == status, (data, reply)
    for raw in (b"{", b"[1, 2]", b"\xff\xfe", b""):
        reply = alice.post("/v1/functions", body=raw, content_type="application/json")
        assert reply.status == 400 and reply.error_type() == "bad_request", reply


def test_endpoints_register_and_status(alice: Api, bob: Api) -> None:
    created = alice.post("/v1/endpoints", json_body={"name": "cluster"})
    assert created.status == 201
    endpoint = created.json()
    assert {"endpoint_id", "forwarder_address", "server_public_key", "public_key", "secret_key"} <= set(endpoint)
    assert len(endpoint["public_key"]) == len(endpoint["secret_key"]) == len(endpoint["server_public_key"]) == 40
    again = alice.post("/v1/endpoints", json_body={"name": "cluster"})  # a lookup: same keys, no secret
    found = again.json()
    assert again.status == 200 and found["endpoint_id"] == endpoint["endpoint_id"]
    assert found["public_key"] == endpoint["public_key"] and "secret_key" not in found and not found["keys_rotated"]
    rotated = alice.post("/v1/endpoints", json_body={"name": "cluster", "rotate_keys": True})
    assert rotated.status == 200 and rotated.json()["endpoint_id"] == endpoint["endpoint_id"]
    assert rotated.json()["keys_rotated"] and len(rotated.json()["secret_key"]) == 40
    assert (rotated.json()["public_key"], rotated.json()["secret_key"]) != (endpoint["public_key"],
                                                                            endpoint["secret_key"])
    refused = alice.post("/v1/endpoints", json_body={"name": "x", "rotate_keys": "yes"})
    assert refused.status == 400 and refused.json()["error"]["field"] == "rotate_keys", refused
    status = alice.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()
    assert (status["status"], status["outstanding_tasks"], status["waiting_tasks"]) == ("offline", 0, 0)
    assert bob.get(f"/v1/endpoints/{endpoint['endpoint_id']}").status == 404
    assert bob.post("/v1/endpoints", json_body={"name": "cluster"}).json()["endpoint_id"] != endpoint["endpoint_id"]
    assert [e["endpoint_id"] for e in alice.get("/v1/endpoints").json()["endpoints"]] == [endpoint["endpoint_id"]]
    for data in ({}, {"name": ""}, {"name": 5}):
        assert alice.post("/v1/endpoints", json_body=data).status == 400
    assert alice.post("/v1/endpoints", body=b"name=x", content_type="text/plain").status == 400


def test_batches_are_stored_and_owned(alice: Api, bob: Api, submitted: dict[str, Any]) -> None:
    task_ids, group = submitted["task_ids"], submitted["task_group_id"]
    assert isinstance(task_ids, list) and len(task_ids) == 3 and all(uuid.UUID(t) for t in task_ids)
    task = alice.get(f"/v1/tasks/{task_ids[0]}").json()
    assert (task["state"], task["task_group_id"], task["result"]) == ("waiting-for-endpoint", group, None)
    assert alice.get(f"/v1/endpoints/{submitted['endpoint']['endpoint_id']}").json()["waiting_tasks"] == 3
    counts = alice.get(f"/v1/task_groups/{group}").json()
    assert counts == {"task_group_id": group, "tasks": 3, "success": 0, "failed": 0, "pending": 3, "waiting": 3,
                      "running": 0, "cancelled": 0, "memo_hits": 0}
    page = alice.results(str(group), wait=0.2)  # nothing yet: an empty page after the wait
    assert (page["task_ids"], page["cursor"], page["pending"]) == ([], 0, 3)
    more = alice.submit(batch(submitted["endpoint"]["endpoint_id"], str(submitted["function_id"]), [b"d"],
                              task_group_id=group, retries=2, resource_spec={"walltime": 5, "priority": 1}))
    assert more.status == 201 and more.json()["task_group_id"] == group
    added = alice.get(f"/v1/tasks/{more.json()['task_ids'][0]}").json()
    assert added["resource_spec"] == {"walltime": 5, "priority": 1}
    for path in (f"/v1/tasks/{task_ids[0]}", f"/v1/task_groups/{group}", f"/v1/task_groups/{group}/results"):
        assert bob.get(path).status == 404, path
    # bob can use neither alice's endpoint, nor her function, nor her task group
    bob_endpoint = bob.register_endpoint("mine")["endpoint_id"]
    bob_function = bob.register_function(b"bob's body")
    assert bob.submit(batch(submitted["endpoint"]["endpoint_id"], bob_function, [b"x"])).status == 404
    assert bob.submit(batch(bob_endpoint, str(submitted["function_id"]), [b"x"])).status == 404
    assert bob.submit(batch(bob_endpoint, bob_function, [b"x"], task_group_id=group)).status == 404


def test_malformed_batches_are_refused(alice: Api, submitted: dict[str, Any]) -> None:
    endpoint_id, function_id = submitted["endpoint"]["endpoint_id"], submitted["function_id"]
    bodies = [b"", b"\xc1", b"not msgpack at all \xff", msgpack.packb([1, 2]), msgpack.packb({1: 2}),
              msgpack.packb(b"x" * 10)[:5]]
    for body in bodies:
        reply = alice.post("/v1/batches", body=body, content_type="application/msgpack")
        assert reply.status == 400 and reply.error_type() == "bad_request", (body, reply)
    cases = [
        batch(endpoint_id, function_id, []), batch(endpoint_id, function_id, ["text"]),
        batch(endpoint_id, function_id, [b"x"], retries=-1), batch(endpoint_id, function_id, [b"x"], retries="2"),
        batch(endpoint_id, function_id, [b"x"], resource_spec={"walltime": -1}),
        batch(endpoint_id, function_id, [b"x"], resource_spec={"nested": {"a": 1}}),
        batch(endpoint_id, function_id, [b"x"], task_group_id="not-a-uuid"),
        {"endpoint_id": endpoint_id, "args": [b"x"]}, {"function_id": function_id, "args": [b"x"]},
        {"endpoint_id": endpoint_id, "function_ids": [function_id], "args": [b"x", b"y"]},
    ]
    for data in cases:
        assert alice.submit(data).status == 400, data
    assert alice.submit(batch(str(uuid.uuid4()), function_id, [b"x"])).status == 404
    assert alice.submit(batch(endpoint_id, "0" * 32, [b"x"])).status == 404
    assert alice.get(f"/v1/tasks/{uuid.uuid4()}").status == 404
    assert alice.get(f"/v1/task_groups/{submitted['task_group_id']}/results?after=x").status == 400


def test_limits_answer_413(alice: Api, submitted: dict[str, Any]) -> None:
    endpoint_id, function_id = submitted["endpoint"]["endpoint_id"], submitted["function_id"]
    too_big = alice.submit(batch(endpoint_id, function_id, [b"x", b"y" * (64 * 1024 + 1)]))
    assert too_big.status == 413 and too_big.error_type() == "payload_too_large"
    assert "task arguments" in too_big.json()["error"]["message"]
    too_many = alice.submit(batch(endpoint_id, function_id, [b"x"] * 101))
    assert too_many.status == 413 and "101 tasks" in too_many.json()["error"]["message"]
    request_too_big = alice.submit(batch(endpoint_id, function_id, [b"z" * 60_000] * 20))
    assert request_too_big.status == 413 and request_too_big.error_type() == "payload_too_large"
    group = submitted["task_group_id"]
    assert alice.get(f"/v1/task_groups/{group}").json()["tasks"] == 3  # nothing of the refused batches was stored


def test_rate_limit_answers_429(alice: Api, bob: Api) -> None:
    statuses = [alice.get("/v1/auth/whoami") for _ in range(200)]
    limited = [r for r in statuses if r.status == 429]
    assert limited and all(r.status in (200, 429) for r in statuses)
    assert limited[0].error_type() == "rate_limited" and int(limited[0].headers["Retry-After"]) >= 1
    assert bob.get("/v1/auth/whoami").status == 200  # the limit is per user


def test_unknown_routes_and_methods_answer_json(alice: Api) -> None:
    missing = alice.get("/v1/nothing/here")
    assert missing.status == 404 and missing.error_type() == "not_found"
    wrong_method = alice.call("PUT", "/v1/functions")
    assert wrong_method.status == 405 and wrong_method.error_type() == "method_not_allowed"


def test_openapi_document_matches_the_routes(service: ServiceProcess, alice: Api, tmp_path: Path) -> None:
    document = alice.get("/v1/openapi.json").json()
    served = {(path, method.upper()) for path, methods in document["paths"].items() for method in methods}
    app = create_app(ServiceConfig(data_dir=str(tmp_path)))
    registered = {(openapi_path(rule.rule), method) for rule in app.url_map.iter_rules()
                  for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert served == registered
    assert {"/v1/functions", "/v1/endpoints", "/v1/endpoints/{endpoint_id}", "/v1/batches", "/v1/tasks/{task_id}",
            "/v1/task_groups/{task_group_id}/results", "/v1/openapi.json"} <= {path for path, _ in served}
    for path, methods in document["paths"].items():
        for method, described in methods.items():
            assert described["summary"] and "401" in described["responses"], (path, method)
            # the running service really has this route: no routing 404 or 405 for it
            concrete = path.replace("{", "").replace("}", "")
            reply = alice.call(method.upper(), concrete, body=b"", content_type="application/json")
            assert reply.status != 405, (path, method, reply)
            assert not (reply.status == 404 and "requested URL" in reply.json()["error"]["message"]), (path, method)
