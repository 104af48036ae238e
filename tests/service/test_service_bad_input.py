"""Bodies no route can store get 400 naming the field, never a 500: nesting far too deep,
lone surrogates, integers beyond 64 bits, NaN and Infinity, walltimes no timer can hold.
Each request goes to a real service process; nothing accepted before is lost."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.support.service import Api, ServiceProcess


@dataclass
class World:
    service: ServiceProcess
    api: Api
    endpoint_id: str
    spare_endpoint: str
    function_id: str
    group: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    service = ServiceProcess(tmp_path_factory.mktemp("bad-input"), rate_limit=0)
    try:
        api = Api(service.url, service.add_user("prober"))
        service.add_user("friend")
        endpoint_id = api.register_endpoint("target")["endpoint_id"]
        spare = api.register_endpoint("spare")["endpoint_id"]
        function_id = api.register_function(b"function body")
        group = api.post("/v1/groups", json_body={"name": "team"}).json()["group_id"]
        yield World(service, api, endpoint_id, spare, function_id, group)
    finally:
        log = service.read_log()
        assert service.stop() == 0
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]


def raw_json(api: Api, method: str, path: str, text: bytes) -> Any:
    return api.call(method, path, body=text, content_type="application/json")


def refused(reply: Any, field: str) -> None:
    """A 400 whose JSON body names ``field``."""
    assert reply.status == 400, reply
    error = reply.json()["error"]
    assert error["type"] == "bad_request" and error["field"] == field, error
    assert repr(field) in error["message"] or field in error["message"], error


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/v1/groups", DEEP, "(the body)"),
    ("POST", "/v1/groups", b'{"name": ' + DEEP + b"}", "name"),
    ("POST", "/v1/endpoints", b'{"name": "x", "allowed_functions": ' + b"[" * 40 + b"]" * 40 + b"}",
     "allowed_functions" + "[0]" * 31),
    ("POST", "/v1/groups", b'{"name": "\\ud800"}', "name"),
    ("POST", "/v1/endpoints", b'{"name": "laptop\\udfff"}', "name"),
    ("POST", "/v1/functions", b'{"body": "' + base64.b64encode(b"f") + b'", "name": "\\udc00"}', "name"),
    ("PUT", "/v1/endpoints/{endpoint}/sharing", b'{"public": false, "users": ["friend", "\\udc00"]}', "users[1]"),
    ("PUT", "/v1/functions/{function}/sharing", b'{"users": ["\\ud83d"]}', "users[0]"),
    ("POST", "/v1/groups/{group}/members", b'{"users": ["\\ud800x"]}', "users[0]"),
    ("PUT", "/v1/endpoints/{spare}/allowed_functions", b'{"allowed_functions": ["\\udc00"]}',
     "allowed_functions[0]"),
    ("POST", "/v1/groups", b'{"name": "x", "\\ud800": 1}', "\\ud800"),
    ("POST", "/v1/groups", b'{"name": NaN}', "name"),
    ("POST", "/v1/endpoints", b'{"name": "x", "extra": {"a": -Infinity}}', "extra.a"),
    ("POST", "/v1/groups", b'{"name": "x", "big": 18446744073709551615}', "big"),
], ids=lambda value: value.decode("ascii", "replace")[:24] if isinstance(value, bytes) else str(value)[:40])
def test_json_no_route_can_store_is_a_400_naming_the_field(world: World, method: str, path: str, body: bytes,
                                                           field: str) -> None:
    path = path.format(endpoint=world.endpoint_id, spare=world.spare_endpoint, function=world.function_id,
                       group=world.group)
    refused(raw_json(world.api, method, path, body), field)


@pytest.mark.parametrize(("spec", "field"), [
    ({"priority": 2**63}, "resource_spec.priority"),
    ({"priority": 2**64 - 1}, "resource_spec.priority"),
    ({"walltime": 1e308}, "resource_spec.walltime"),
    ({"walltime": float("inf")}, "resource_spec.walltime"),
    ({"walltime": float("nan")}, "resource_spec.walltime"),
    ({"memory": float("nan")}, "resource_spec.memory"),
    ({"cores": 2**64 - 1}, "resource_spec.cores"),
    ({"nodes": [1]}, "resource_spec.nodes"),
])
def test_a_batch_with_values_no_store_or_timer_holds_is_a_400_naming_the_field(
        world: World, spec: dict[str, Any], field: str) -> None:
    batch = {"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [b"1"],
             "resource_spec": spec, "batch_id": str(uuid.uuid4())}
    refused(world.api.submit(batch), field)


def test_extreme_values_that_fit_are_stored_and_read_back(world: World) -> None:
    spec = {"priority": -(2**63), "walltime": 366 * 24 * 3600, "tag": "\u00e9\U0001f600"}
    reply = world.api.submit({"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [b"1"],
                              "resource_spec": spec})
    assert reply.status == 201, reply
    task = world.api.get(f"/v1/tasks/{reply.json()['task_ids'][0]}").json()
    assert task["resource_spec"] == spec
    named = raw_json(world.api, "POST", "/v1/groups", json.dumps({"name": "\U0001f600 pair"}).encode())
    assert named.status == 201 and named.json()["name"] == "\U0001f600 pair", named


def test_other_fields_refused_name_themselves(world: World) -> None:
    refused(world.api.submit({"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [],
                              "retries": 0}), "args")
    refused(world.api.submit({"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [b"1"],
                              "retries": 1000}), "retries")
    refused(world.api.submit({"function_id": world.function_id, "args": [b"1"]}), "endpoint_id")
    refused(world.api.submit({"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [b"1"],
                              "batch_id": "not-a-uuid"}), "batch_id")
    refused(raw_json(world.api, "POST", "/v1/groups", b'{"name": 7}'), "name")
