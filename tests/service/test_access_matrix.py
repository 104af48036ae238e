"""The access-control matrix: every route of the API, asked by the owner of what it names, by
a user it is shared with, by a stranger, without a token and with a bad token.

Each cell runs against a fresh world (a real service process, a real SQLite file): alice
owns an endpoint (shared with her group, of which bob is a member), a function (shared with
bob by name), the group, and a task group she submitted. ``shared`` is bob; ``stranger`` is
carol, who has nothing shared with her. The matrix must name every route the service
serves (its OpenAPI document), so a new route cannot ship without its row.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.service import Api, ServiceProcess

ROLES = ("owner", "shared", "stranger", "no token", "bad token")
UNAUTHORIZED = (401, 401)

# (method, OpenAPI path): (owner, shared, stranger); no token and a bad token are 401 unless a
# row names all five roles.
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/v1/auth/whoami"): (200, 200, 200),
    ("get", "/v1/auth/tokens"): (200, 200, 200),
    ("delete", "/v1/auth/tokens/{token_id}"): (204, 404, 404),  # alice's token: only alice revokes it
    ("get", "/v1/openapi.json"): (200, 200, 200),
    ("post", "/v1/functions"): (200, 200, 200),
    ("get", "/v1/functions"): (200, 200, 200),
    ("get", "/v1/functions/{function_id}"): (200, 200, 404),
    ("delete", "/v1/functions/{function_id}"): (204, 403, 404),
    ("get", "/v1/functions/{function_id}/sharing"): (200, 403, 404),
    ("put", "/v1/functions/{function_id}/sharing"): (200, 403, 404),
    ("post", "/v1/endpoints"): (200, 201, 201),  # the owner gets hers again; others make their own
    ("get", "/v1/endpoints"): (200, 200, 200),
    ("get", "/v1/endpoints/{endpoint_id}"): (200, 200, 404),
    ("get", "/v1/endpoints/{endpoint_id}/sharing"): (200, 403, 404),
    ("put", "/v1/endpoints/{endpoint_id}/sharing"): (200, 403, 404),
    ("put", "/v1/endpoints/{endpoint_id}/allowed_functions"): (200, 403, 404),
    ("post", "/v1/endpoint_groups"): (201, 201, 404),  # bob groups alice's endpoint shared with him
    ("get", "/v1/endpoint_groups"): (200, 200, 200),
    ("get", "/v1/endpoint_groups/{endpoint_group_id}"): (200, 200, 404),
    ("delete", "/v1/endpoint_groups/{endpoint_group_id}"): (204, 403, 404),
    ("get", "/v1/endpoint_groups/{endpoint_group_id}/sharing"): (200, 403, 404),
    ("put", "/v1/endpoint_groups/{endpoint_group_id}/sharing"): (200, 403, 404),
    ("post", "/v1/groups"): (201, 201, 201),
    ("get", "/v1/groups"): (200, 200, 200),
    ("get", "/v1/groups/{group_id}"): (200, 200, 404),
    ("delete", "/v1/groups/{group_id}"): (204, 403, 404),
    ("post", "/v1/groups/{group_id}/members"): (200, 403, 404),
    ("delete", "/v1/groups/{group_id}/members/{user}"): (204, 204, 404),  # bob may leave; carol is no one there
    ("post", "/v1/batches"): (201, 201, 404),
    ("get", "/v1/tasks/{task_id}"): (200, 404, 404),
    ("get", "/v1/task_groups/{task_group_id}"): (200, 404, 404),
    ("get", "/v1/task_groups/{task_group_id}/tasks"): (200, 404, 404),
    ("get", "/v1/task_groups/{task_group_id}/results"): (200, 404, 404),
    ("post", "/v1/task_groups/{task_group_id}/cancel"): (200, 404, 404),
    ("post", "/v1/task_groups/{task_group_id}/retry"): (200, 404, 404),
    ("post", "/v1/results"): (200, 200, 200),  # another's group is answered as missing (test_service_long_polls)
    ("delete", "/v1/memo"): (200, 200, 200),  # each forgets their own memo
    ("put", "/v1/blobs/{digest}"): (201, 201, 201),  # each stores their own copy (the bytes are kept once)
    ("get", "/v1/blobs/{digest}/info"): (200, 404, 404),
    ("get", "/v1/blobs/{digest}"): (200, 404, 404),  # a worker holds a capability instead (test_e2e_data)
    ("post", "/v1/triggers"): (201, 201, 404),  # bob reaches the endpoint and the function; carol neither
    ("get", "/v1/triggers"): (200, 200, 200),
    ("delete", "/v1/triggers/{trigger_id}"): (200, 404, 404),
    ("get", "/metrics"): (403, 403, 403),  # only the metrics_users setting's (test_service_metrics)
    ("get", "/v1/dashboard"): (200, 200, 200),  # each sees only their own (test_dashboard_browser)
    # the dashboard's page, script and style hold no data: served to anyone, token or not
    ("get", "/dashboard"): (200, 200, 200, 200, 200),
    ("get", "/dashboard/dashboard.js"): (200, 200, 200, 200, 200),
    ("get", "/dashboard/dashboard.css"): (200, 200, 200, 200, 200),
}


class World:
    """What alice owns and shares, made afresh for one cell."""

    def __init__(self, service: ServiceProcess, users: dict[str, Api], names: dict[str, str]) -> None:
        alice, self.names, self.service = users["owner"], names, service
        tag = uuid.uuid4().hex[:8]
        self.endpoint_name = f"cluster-{tag}"
        self.endpoint_id = alice.register_endpoint(self.endpoint_name)["endpoint_id"]
        self.function_body = f"body {tag}".encode()
        self.function_id = alice.register_function(self.function_body)
        group = alice.post("/v1/groups", json_body={"name": f"team-{tag}"})
        assert group.status == 201, group
        self.group_id = group.json()["group_id"]
        ok(alice.post(f"/v1/groups/{self.group_id}/members", json_body={"users": [names["shared"]]}))
        ok(alice.call("PUT", f"/v1/endpoints/{self.endpoint_id}/sharing", json_body={"groups": [self.group_id]}))
        ok(alice.call("PUT", f"/v1/functions/{self.function_id}/sharing", json_body={"users": [names["shared"]]}))
        made = alice.post("/v1/endpoint_groups", json_body={"name": f"fleet-{tag}", "endpoint_ids": [self.endpoint_id]})
        assert made.status == 201, made
        self.endpoint_group_id = made.json()["endpoint_group_id"]
        ok(alice.call("PUT", f"/v1/endpoint_groups/{self.endpoint_group_id}/sharing",
                      json_body={"groups": [self.group_id]}))
        submitted = alice.submit(self.batch())
        assert submitted.status == 201, submitted
        self.task_group_id = submitted.json()["task_group_id"]
        self.task_id = submitted.json()["task_ids"][0]
        self.blob = f"blob {tag}".encode()
        self.digest = hashlib.sha256(self.blob).hexdigest()
        stored = alice.call("PUT", f"/v1/blobs/{self.digest}", body=self.blob, content_type="application/octet-stream")
        assert stored.status == 201, stored
        trigger = alice.post("/v1/triggers", json_body=self.trigger())
        assert trigger.status == 201, trigger
        self.trigger_id = trigger.json()["trigger_id"]

    def trigger(self) -> dict[str, Any]:
        return {"endpoint_id": self.endpoint_id, "function_id": self.function_id, "directory": "/tmp"}

    def batch(self) -> dict[str, Any]:
        return {"endpoint_id": self.endpoint_id, "function_id": self.function_id, "args": [b"x"]}

    def path(self, template: str) -> str:
        token_id = ""
        if "{token_id}" in template:  # another token of alice's: revoking it leaves hers in use
            token_id = self.service.add_user(self.names["owner"]).partition(".")[0]
        return template.format(function_id=self.function_id, endpoint_id=self.endpoint_id, group_id=self.group_id,
                               task_id=self.task_id, task_group_id=self.task_group_id, user=self.names["shared"],
                               token_id=token_id, endpoint_group_id=self.endpoint_group_id, digest=self.digest,
                               trigger_id=self.trigger_id)

    def body(self, method: str, template: str) -> dict[str, Any]:
        """The request's body, if it has one (a valid one: the matrix is about who, not what)."""
        if template == "/v1/batches":
            return {"body": _msgpack(self.batch()), "content_type": "application/msgpack"}
        if template == "/v1/blobs/{digest}" and method == "put":
            return {"body": self.blob, "content_type": "application/octet-stream"}
        if template == "/v1/triggers" and method == "post":
            return {"json_body": self.trigger()}
        if template == "/v1/results":
            return {"body": _msgpack({"groups": {self.task_group_id: 0}}), "content_type": "application/msgpack"}
        bodies = {
            "/v1/functions": {"body": base64.b64encode(self.function_body).decode(), "name": "again"},
            "/v1/endpoints": {"name": self.endpoint_name},
            "/v1/groups": {"name": f"another-{uuid.uuid4().hex[:6]}"},
            "/v1/endpoint_groups": {"name": f"another-{uuid.uuid4().hex[:6]}", "endpoint_ids": [self.endpoint_id]},
            "/v1/endpoint_groups/{endpoint_group_id}/sharing": {"public": True},
            "/v1/functions/{function_id}/sharing": {"public": True},
            "/v1/endpoints/{endpoint_id}/sharing": {"public": True},
            "/v1/endpoints/{endpoint_id}/allowed_functions": {"allowed_functions": [self.function_id]},
            "/v1/groups/{group_id}/members": {"users": [self.names["stranger"]]},
        }
        return {"json_body": bodies[template]} if template in bodies else {}


def ok(reply: Any) -> None:
    assert reply.status == 200, reply


def _msgpack(data: dict[str, Any]) -> bytes:
    import msgpack

    return msgpack.packb(data, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path_factory.mktemp("matrix"), rate_limit=0.0)
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def users(service: ServiceProcess) -> tuple[dict[str, Api], dict[str, str]]:
    names = {role: f"{role}-{uuid.uuid4().hex[:6]}" for role in ("owner", "shared", "stranger")}
    apis = {role: Api(service.url, service.add_user(name)) for role, name in names.items()}
    apis["no token"] = Api(service.url, None)
    apis["bad token"] = Api(service.url, "0123456789abcdef.not-a-real-secret")
    return apis, names


def test_the_matrix_names_every_route(users: tuple[dict[str, Api], dict[str, str]]) -> None:
    spec = users[0]["owner"].get("/v1/openapi.json").json()
    served = {(method, path) for path, operations in spec["paths"].items() for method in operations}
    assert served == set(MATRIX), f"routes without a row: {served - set(MATRIX)}; rows of no route: " \
                                  f"{set(MATRIX) - served}"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda route: f"{route[0].upper()} {route[1]}")
def test_access(service: ServiceProcess, users: tuple[dict[str, Api], dict[str, str]],
                route: tuple[str, str]) -> None:
    apis, names = users
    method, template = route
    cells = MATRIX[route]
    expected = dict(zip(ROLES, cells if len(cells) == len(ROLES) else (*cells, *UNAUTHORIZED)))
    got = {}
    for role in ROLES:
        world = World(service, apis, names)
        reply = apis[role].call(method.upper(), world.path(template), **world.body(method, template))
        got[role] = reply.status
        if reply.status >= 400:
            error = reply.json()["error"]
            assert error["request_id"] == reply.headers["X-Request-Id"] and "Traceback" not in error["message"]
    assert got == expected
