"""Fuzzing every route that takes a body (POST and PUT) of a real service process (hypothesis).

Each example sends one request built from random or mutated parts: a body (random JSON or
msgpack values, hostile ones among them: lone surrogates, integers past 64 bits, NaN,
nesting 30 to 100,000 deep; valid bodies with fields removed, replaced or added, random bytes, valid
encodings with bytes flipped, cut or inserted), a content type, sometimes a
``Content-Encoding`` (applied or only claimed), an ``Authorization`` header that is mostly
valid, a ``Content-Length`` that sometimes undercounts, and for the routes of one task group,
endpoint, function or group a random, foreign or own id. Whatever it is:

* the service answers, never with a 5xx, and every error is the JSON error body with no
  traceback in it;
* a valid request right after it succeeds (the service keeps serving);
* nothing accepted before is lost: another user's task group keeps its tasks, and every
  task the valid requests added is in its group at the end; another user's endpoint,
  function and group keep their sharing, allow-list and members.

Examples are bounded (``max_examples``, no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import http.client
import json
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import msgpack
import pytest
from tests.support.fuzz_strategies import damaged, deep_json, deep_msgpack, hostile_values, mutated_map
from tests.support.fuzz_strategies import values as msgpack_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support import TIMEOUT
from tests.support.service import Api, ServiceProcess

from fabric.serialize import SourceCode

EXAMPLES = 150
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KEPT_TASKS = 40


def double(x: int) -> int:
    return 2 * x


BODY = SourceCode.header + SourceCode.dumps(double)


@dataclasses.dataclass
class World:
    """The service, the fuzzing user's valid ids, and another user's group that must survive."""

    service: ServiceProcess
    api: Api
    endpoint_id: str
    function_id: str
    own_group: str
    pulse_group: str
    keeper: Api
    kept_group: str
    spare_endpoint: str  # the fuzzer's, for the sharing and allow-list routes (the pulses use endpoint_id)
    user_group: str
    kept_endpoint: str
    kept_user_group: str
    pulses: int = 0
    batch_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))  # fixed: replays are exact
    unknown_group: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    endpoint_group: str = ""  # the fuzzer's endpoint group (of endpoint_id), and the keeper's
    kept_endpoint_group: str = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    service = ServiceProcess(tmp_path_factory.mktemp("fuzz"), rate_limit=0, max_task_bytes=4096,
                             max_batch_tasks=64, max_request_bytes=256 * 1024,
                             max_wait=0.05)  # fuzzed long-polls stay short
    try:
        keeper = Api(service.url, service.add_user("keeper"))
        keeper_endpoint = keeper.register_endpoint("kept")["endpoint_id"]
        kept = keeper.submit({"endpoint_id": keeper_endpoint, "function_id": keeper.register_function(BODY),
                              "args": [b"%d" % i for i in range(KEPT_TASKS)]})
        assert kept.status == 201, kept
        api = Api(service.url, service.add_user("fuzzer"))
        endpoint_id = api.register_endpoint("target")["endpoint_id"]
        function_id = api.register_function(BODY)
        groups = []
        for _ in range(2):
            reply = api.submit({"endpoint_id": endpoint_id, "function_id": function_id, "args": [b"0"]})
            assert reply.status == 201, reply
            groups.append(reply.json()["task_group_id"])
        kept_user_group = keeper.post("/v1/groups", json_body={"name": "kept"}).json()["group_id"]
        kept_endpoint_group = keeper.post("/v1/endpoint_groups", json_body={
            "name": "kept", "endpoint_ids": [keeper_endpoint]}).json()["endpoint_group_id"]
        endpoint_group = api.post("/v1/endpoint_groups", json_body={
            "name": "fuzzers", "endpoint_ids": [endpoint_id]}).json()["endpoint_group_id"]
        yield World(service, api, endpoint_id, function_id, groups[0], groups[1], keeper, kept.json()["task_group_id"],
                    spare_endpoint=api.register_endpoint("spare")["endpoint_id"],
                    user_group=api.post("/v1/groups", json_body={"name": "fuzzers"}).json()["group_id"],
                    kept_endpoint=keeper_endpoint, kept_user_group=kept_user_group, pulses=1,
                    endpoint_group=endpoint_group, kept_endpoint_group=kept_endpoint_group)
        assert group_counts(keeper, kept.json()["task_group_id"]) == (KEPT_TASKS, KEPT_TASKS)
        private = {"public": False, "users": [], "groups": []}
        assert keeper.get(f"/v1/endpoints/{keeper_endpoint}/sharing").json() == private
        assert keeper.get(f"/v1/endpoints/{keeper_endpoint}").json()["allowed_functions"] is None
        assert keeper.get(f"/v1/functions/{keeper.register_function(BODY)}/sharing").json() == private
        assert keeper.get(f"/v1/groups/{kept_user_group}").json()["members"] == ["keeper"]
        assert keeper.get(f"/v1/endpoint_groups/{kept_endpoint_group}").json()["endpoint_ids"] == [keeper_endpoint]
        assert keeper.get(f"/v1/endpoint_groups/{kept_endpoint_group}/sharing").json() == private
    finally:
        log = service.read_log()
        assert service.stop() == 0
    assert "Traceback" not in log, log[-4000:]


def group_counts(api: Api, group: str) -> tuple[int, int]:
    reply = api.get(f"/v1/task_groups/{group}")
    assert reply.status == 200, reply
    return reply.json()["tasks"], reply.json()["pending"]


# -- what a request is made of ---------------------------------------------------------------
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
           | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


def templates(world: World) -> dict[str, dict[str, Any]]:
    """A valid body of each route (field values as the route expects them)."""
    return {
        "/v1/batches": {"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [b"1", b"2"],
                        "task_group_id": world.own_group, "retries": 1, "batch_id": world.batch_id,
                        "resource_spec": {"walltime": 5.0, "priority": 1}},
        "/v1/functions": {"body": base64.b64encode(BODY).decode(), "name": "double", "description": "x2"},
        "/v1/endpoints": {"name": "fuzzed", "allowed_functions": [world.function_id]},
        "/v1/task_groups/{group}/cancel": {},
        "/v1/task_groups/{group}/retry": {},
        "/v1/endpoints/{endpoint}/sharing": {"public": True, "users": ["keeper"], "groups": [world.user_group]},
        "/v1/endpoints/{endpoint}/allowed_functions": {"allowed_functions": [world.function_id]},
        "/v1/functions/{function}/sharing": {"public": False, "users": ["keeper"], "groups": [world.user_group]},
        "/v1/groups": {"name": "team"},
        "/v1/groups/{user_group}/members": {"users": ["keeper"]},
        "/v1/endpoint_groups": {"name": "fleet", "endpoint_ids": [world.endpoint_id]},
        "/v1/endpoint_groups/{endpoint_group}/sharing": {"public": False, "users": ["keeper"],
                                                         "groups": [world.user_group]},
        "/v1/results": {"groups": {world.own_group: 0, world.kept_group: 0}, "wait": 0.01, "limit": 10,
                        "watcher": "fuzzer"},
        "/v1/triggers": {"endpoint_id": world.endpoint_id, "function_id": world.function_id, "directory": "/tmp",
                         "pattern": "*.h5", "max_per_minute": 60},
        "/v1/blobs/{digest}": {"any": "bytes"},  # the body is the blob: whatever arrives is hashed and checked
    }


ROUTES = [("POST", "/v1/batches"), ("POST", "/v1/functions"), ("POST", "/v1/endpoints"),
          ("POST", "/v1/task_groups/{group}/cancel"), ("POST", "/v1/task_groups/{group}/retry"),
          ("PUT", "/v1/endpoints/{endpoint}/sharing"), ("PUT", "/v1/endpoints/{endpoint}/allowed_functions"),
          ("PUT", "/v1/functions/{function}/sharing"), ("POST", "/v1/groups"),
          ("POST", "/v1/groups/{user_group}/members"), ("POST", "/v1/endpoint_groups"),
          ("PUT", "/v1/endpoint_groups/{endpoint_group}/sharing"), ("POST", "/v1/results"), ("POST", "/v1/triggers"),
          ("PUT", "/v1/blobs/{digest}")]


def ids(world: World) -> dict[str, list[str]]:
    """For each placeholder of a route: the fuzzer's own id, another user's, an unknown one."""
    unknown = str(uuid.uuid4())
    return {"group": [world.own_group, world.kept_group, world.unknown_group],
            "endpoint": [world.spare_endpoint, world.kept_endpoint, unknown],
            "function": [world.function_id, "0" * 64, unknown],  # the keeper holds the same id: its own record
            "user_group": [world.user_group, world.kept_user_group, unknown],
            "endpoint_group": [world.endpoint_group, world.kept_endpoint_group, unknown],
            "digest": [hashlib.sha256(b"").hexdigest(), "0" * 64, unknown]}


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any], values: st.SearchStrategy[Any]) -> Any:
    """``template`` with up to three fields removed, changed or added (or a random value)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    return draw(mutated_map(template, values, fewest=0))


@st.composite
def encoded(draw: st.DrawFn, value: Any, as_msgpack: bool) -> bytes:
    """``value`` as msgpack or JSON, sometimes damaged; or random bytes."""
    kind = draw(st.sampled_from(["msgpack", "json", "damaged", "random", "deep"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        return draw(deep_msgpack if as_msgpack else deep_json)
    try:
        if kind == "json" or (kind == "damaged" and not as_msgpack):
            data = json.dumps(value, default=lambda v: base64.b64encode(v).decode()).encode()
        else:  # lone surrogates travel as the invalid UTF-8 they encode to
            data = msgpack.packb(value, use_bin_type=True, unicode_errors="surrogatepass")
    except (TypeError, ValueError, OverflowError, RecursionError):  # bytes keys in JSON, integers too big
        data = repr(value).encode()
    return draw(damaged(data)) if kind == "damaged" else data


@dataclasses.dataclass
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    content_length: int


@st.composite
def requests(draw: st.DrawFn, world: World, method: str, route: str) -> Request:
    as_msgpack = route in ("/v1/batches", "/v1/results")
    template = templates(world)[route]
    value = draw(mutated(template, (msgpack_values if as_msgpack else json_values) | hostile_values))
    body = draw(encoded(value, as_msgpack))
    headers: dict[str, str] = {}
    content_type = draw(st.sampled_from(["application/msgpack", "application/json", "application/x-msgpack",
                                         "text/plain", "application/octet-stream", "multipart/form-data; boundary=x",
                                         "application/json; charset=utf-16", None, "random"]))
    if content_type == "random":
        content_type = draw(header_text)
    if content_type is not None:
        headers["Content-Type"] = content_type
    encoding = draw(st.sampled_from([None, None, "gzip", "deflate", "br", "identity", "gzip, deflate", "random"]))
    if encoding == "random":
        encoding = draw(header_text)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if draw(st.booleans()):
            body = gzip.compress(body, mtime=0) if "gzip" in encoding else zlib.compress(body)
    authorization = draw(st.sampled_from(["valid"] * 6 + ["none", "junk", "basic", "long"]))
    headers["Authorization"] = {
        "valid": f"Bearer {world.api.token}", "junk": f"Bearer {draw(header_text)}", "basic": "Basic Zm9vOmJhcg==",
        "long": "Bearer " + "x" * 6000, "none": ""}[authorization]
    if not headers["Authorization"]:
        del headers["Authorization"]
    for _ in range(draw(st.integers(0, 2))):
        headers[draw(st.sampled_from(["X-Request-Id", "Accept", "Accept-Encoding", "Expect", "X-Forwarded-For"]))] = \
            draw(header_text)
    path = route
    for placeholder, candidates in ids(world).items():
        if f"{{{placeholder}}}" in path:
            chosen = draw(st.sampled_from([*candidates, "random"]))
            if chosen == "random":
                chosen = quote(draw(st.text(min_size=1, max_size=40)), safe="")
            path = path.replace(f"{{{placeholder}}}", chosen)
    if draw(st.integers(0, 4)) == 0:
        path += "?" + quote(draw(header_text), safe="=&")
    length = len(body) - draw(st.integers(0, len(body))) if body and draw(st.integers(0, 9)) == 0 else len(body)
    return Request(method, path, body, headers, length)


def send(url: str, request: Request) -> tuple[int, bytes, str]:
    """Send ``request`` as it is (no header is added or fixed up); status, body, content type."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        connection.putrequest(request.method, request.path, skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(request.content_length))
        connection.putheader("Connection", "close")
        connection.endheaders(request.body[:request.content_length])
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


def check_reply(request: Request, status: int, body: bytes, content_type: str) -> None:
    assert status < 500, (status, body[:500], request)
    assert b"Traceback" not in body and b'File "' not in body, (body[:500], request)
    if status >= 400 and status != 431:  # 431: the HTTP server refused oversized headers before the app
        assert content_type.startswith("application/json"), (status, content_type, body[:200])
        error = json.loads(body)["error"]
        assert error["type"] and error["request_id"], error


def pulse(world: World) -> None:
    """A valid request after the example: the service must still take tasks."""
    reply = world.api.submit({"endpoint_id": world.endpoint_id, "function_id": world.function_id, "args": [b"7"],
                              "task_group_id": world.pulse_group})
    assert reply.status == 201, reply
    world.pulses += 1


def test_the_fuzzed_routes_are_every_route_with_a_body(world: World) -> None:
    spec = world.api.get("/v1/openapi.json").json()
    with_body = {(method.upper(), path) for path, operations in spec["paths"].items()
                 for method in operations if method in ("post", "put")}
    placeholders = {"{task_group_id}": "{group}", "{endpoint_id}": "{endpoint}", "{function_id}": "{function}",
                    "{group_id}": "{user_group}", "{endpoint_group_id}": "{endpoint_group}"}  # {digest} keeps its name
    for name, short in placeholders.items():
        with_body = {(method, path.replace(name, short)) for method, path in with_body}
    assert with_body == set(ROUTES)


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_random_requests_never_break_the_service(world: World, method: str, route: str) -> None:
    statuses: Counter[int] = Counter()

    @SETTINGS
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        request = data.draw(requests(world, method, route))
        status, body, content_type = send(world.service.url, request)
        statuses[status] += 1
        check_reply(request, status, body, content_type)
        pulse(world)

    fuzz()
    print(route, sorted(statuses.items()))
    refusal = 404 if "{" in route else 400  # the examples got past authentication and into the route
    assert {refusal, 401} <= set(statuses), statuses
    assert group_counts(world.api, world.pulse_group)[0] == world.pulses  # every accepted task is still there
    assert group_counts(world.keeper, world.kept_group) == (KEPT_TASKS, KEPT_TASKS)
