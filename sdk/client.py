"""``Client``: the service's REST API from Python.

::

    from fabric import Client
    client = Client("http://127.0.0.1:8470", token)      # or FABRIC_SERVICE_URL / FABRIC_TOKEN / fabric login
    function_id = client.register_function(double)
    endpoint_id = client.get_endpoint_by_name("laptop")["endpoint_id"]   # `fabric endpoint start laptop`'s
    batch = client.submit_batch(endpoint_id, function_id, [serialize_arguments((21,), {})])
    print(client.get_result(batch.task_ids[0]))          # TaskPending until it is done

Every refusal of the service becomes a typed exception of ``fabric.errors``
(``AuthError``, ``Forbidden``, ``NotFound``, ``InvalidRequest``, ``PayloadTooLarge``, ``BatchGone``,
``RateLimited``, ``ServiceUnavailable``, ``ServiceInternalError``); a task's own failure is re-raised
as the task's exception (``RemoteExecutionError``, ``TaskTimeout``, ...). Only what can succeed
when sent again is retried, with backoff for up to ``retry_for`` seconds: no connection,
502/503/504, and 429 with a ``Retry-After``. Anything else, a 500 included (the service failed
on this very request), is raised at once with the service's message; a batch is
sent with a ``batch_id`` so a retried upload never adds its tasks twice, and compressed
(zlib) when it is large and that helps.

The client is safe to use from several threads (a pool of keep-alive connections; urllib3
directly, which costs a third of what ``requests`` adds per call).
"""

from __future__ import annotations

import base64
import contextlib
import json as _json_module
import dataclasses
import enum
import random
import threading
import time
import urllib.parse
import uuid
import zlib
from urllib.parse import quote, urlencode
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgpack
import urllib3

from fabric.errors import (AuthError, BatchGone, ConfigError, Forbidden, InvalidRequest, NoEligibleEndpoint, NotFound,
                           PayloadTooLarge, RateLimited, ServiceError, ServiceInternalError, ServiceUnavailable,
                           TaskPending)
from fabric.serialize import serialize_function
from sdk.credentials import resolve
from sdk.progress import Progress
from sdk.results import outcome
from sdk.watcher import ResultWatcher

MSGPACK = "application/msgpack"
TRANSIENT_STATUSES = frozenset({502, 503, 504})
FINISHED_STATES = frozenset({"success", "failed"})
COMPRESS_FROM = 64 * 1024


class Unset(enum.Enum):
    """The type of ``UNSET``: an argument left out (where None means something)."""

    UNSET = "unset"


UNSET = Unset.UNSET
"""Batch bodies from this size on are uploaded compressed."""


@dataclasses.dataclass(frozen=True, slots=True)
class SubmittedBatch:
    """What the service answered for a batch: its task group and the new task ids, in order."""

    task_group_id: str
    task_ids: list[str]
    warnings: tuple[str, ...] = ()  # e.g. the endpoint's workers run another Python


@dataclasses.dataclass(frozen=True, slots=True)
class TaskResult:
    """One finished task: ``ok`` and its value, or not ``ok`` and the exception it raised."""

    task_id: str
    ok: bool
    value: Any

    def result(self) -> Any:
        """The value, or raise the task's exception."""
        if not self.ok:
            raise self.value
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class ResultPage:
    """Results of a task group after a cursor: columns, the next cursor, how many are unfinished."""

    task_ids: list[str]
    kinds: list[int]
    payloads: list[bytes]
    cursor: int
    pending: int
    poll_after: float = 0.0
    """Seconds to let pass before the next poll (> 0 when the service could not let this one wait)."""

    def outcomes(self) -> list[tuple[str, bool, Any]]:
        """``(task id, ok, value or exception)`` for each result (deserialized here, client side)."""
        return [(task_id, *outcome(kind, payload))
                for task_id, kind, payload in zip(self.task_ids, self.kinds, self.payloads)]


@dataclasses.dataclass(frozen=True, slots=True)
class GroupsResultPage:
    """Results of several task groups (``Client.poll_results``): a page per group, the groups
    that are not yours (or no longer exist), and ``poll_after`` as in ``ResultPage``."""

    pages: dict[str, ResultPage]
    missing: list[str]
    poll_after: float


class Client:
    """One user's connection to the service.

    ``service_url`` and ``token`` default to ``FABRIC_SERVICE_URL`` / ``FABRIC_TOKEN``,
    then to what ``fabric login`` stored. ``timeout`` bounds one HTTP request (long polls
    add their wait); ``retry_for`` is how long transient failures are retried.
    """

    def __init__(self, service_url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 retry_for: float = 30.0) -> None:
        credentials = resolve(service_url, token)
        if credentials.service_url is None:
            raise ConfigError("no service URL: pass service_url, set FABRIC_SERVICE_URL, or run `fabric login`")
        if credentials.token is None:
            raise ConfigError(f"no token for {credentials.service_url}: pass token, set FABRIC_TOKEN, "
                              "or run `fabric login`")
        self.service_url = credentials.service_url
        self._token = credentials.token
        self.timeout = timeout
        self.retry_for = retry_for
        self._pool = urllib3.PoolManager(maxsize=8, block=False)  # keep-alive connections, thread-safe
        self._headers = {"Authorization": f"Bearer {self._token}", "User-Agent": "fabric-sdk"}
        self._functions: dict[Any, str] = {}  # function object -> id, registered with this service
        self._functions_lock = threading.Lock()
        self._watcher: ResultWatcher | None = None
        self._watcher_lock = threading.Lock()

    def results_watcher(self) -> ResultWatcher:
        """The one thread that long-polls results for all executors of this client (``sdk.watcher``)."""
        with self._watcher_lock:
            if self._watcher is None:
                self._watcher = ResultWatcher(self)
            return self._watcher

    def __repr__(self) -> str:
        return f"Client({self.service_url!r})"

    # -- identity ----------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """``{"user_id", "name"}`` of the token's user."""
        return self._json("GET", "/v1/auth/whoami")

    def list_tokens(self) -> list[dict[str, Any]]:
        """Your tokens: ``token_id`` (the part of a token before its dot), ``name``, ``created``."""
        return list(self._json("GET", "/v1/auth/tokens")["tokens"])

    def revoke_token(self, token_id: str) -> None:
        """Revoke one of your tokens (this client's own too): refused from the next request on."""
        self._request("DELETE", f"/v1/auth/tokens/{quote(token_id.partition('.')[0], safe='')}")

    # -- functions ---------------------------------------------------------------------
    def register_function(self, function: Callable[..., Any], *, name: str | None = None,
                          description: str = "") -> str:
        """Register ``function`` (again: free) and return its id, the hash of its body."""
        with self._functions_lock:
            known = _cached(self._functions, function)
        if known is not None:
            return known
        function_id, body = serialize_function(function)
        self.register_function_body(body, name=name or function_name(function),
                                    description=description or (getattr(function, "__doc__", None) or "")[:4096],
                                    function_id=function_id)
        with self._functions_lock, contextlib.suppress(TypeError):  # an unhashable callable is not cached
            self._functions[function] = function_id
        return function_id

    def register_function_body(self, body: bytes, *, name: str = "", description: str = "",
                               function_id: str | None = None) -> str:
        """Register an already serialized function body; returns its id."""
        data: dict[str, Any] = {"body": base64.b64encode(body).decode("ascii"), "name": name[:256],
                                "description": description}
        if function_id is not None:
            data["function_id"] = function_id
        return str(self._json("POST", "/v1/functions", json=data)["function_id"])

    def get_function(self, function_id: str) -> dict[str, Any]:
        """Name, description, creation time and the serialized body (bytes) of a function."""
        record = self._json("GET", f"/v1/functions/{function_id}")
        record["body"] = base64.b64decode(record["body"])
        return record

    def list_functions(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/functions")["functions"])

    def delete_function(self, function_id: str) -> None:
        self._request("DELETE", f"/v1/functions/{function_id}")
        with self._functions_lock:
            self._functions = {f: i for f, i in self._functions.items() if i != function_id}

    # -- endpoints ---------------------------------------------------------------------
    def register_endpoint(self, name: str, *, allowed_functions: Sequence[str] | None | Unset = UNSET,
                          rotate_keys: bool = False) -> dict[str, Any]:
        """Register a new endpoint: ``endpoint_id``, ``forwarder_address``, ``server_public_key``,
        and the endpoint's ``public_key`` and ``secret_key`` (only in this reply: the service
        keeps no secret key). Your endpoint of that name, if you have one, is returned as it
        is (no ``secret_key``; a running endpoint keeps its connection) unless ``rotate_keys``:
        then it gets a new key pair and the old one can no longer connect (what ``fabric
        endpoint start`` does). ``allowed_functions``: the only function ids the service will
        accept tasks for on this endpoint (None: any function; left out: unchanged).
        To find an endpoint's id, ``get_endpoint_by_name``."""
        body: dict[str, Any] = {"name": name}
        if not isinstance(allowed_functions, Unset):
            body["allowed_functions"] = None if allowed_functions is None else list(allowed_functions)
        if rotate_keys:
            body["rotate_keys"] = True
        return self._json("POST", "/v1/endpoints", json=body)

    def list_endpoints(self, name: str | None = None) -> list[dict[str, Any]]:
        """Your endpoints and those shared with you or your groups (only those called ``name``)."""
        query = "" if name is None else "?" + urlencode({"name": name})
        return list(self._json("GET", f"/v1/endpoints{query}")["endpoints"])

    def get_endpoint_by_name(self, name: str) -> dict[str, Any]:
        """Your endpoint called ``name`` (``endpoint_id``, ``status``, ...); ``NotFound`` if you
        have none. A lookup: it registers nothing and never touches the endpoint's keys."""
        for endpoint in self.list_endpoints(name):
            if endpoint["access"] == "owner":
                return endpoint
        raise NotFound(f"you have no endpoint called {name!r}", error_type="not_found")

    def get_endpoint_status(self, endpoint_id: str) -> dict[str, Any]:
        """``status`` (online/offline), ``last_heartbeat``, ``managers``, ``workers``, task counts;
        ``report``: the endpoint's last hardware report (``managers``: per manager ``workers``,
        ``cores``, ``memory``, ``accelerators``, ``python_version``; ``labels``; live load:
        ``idle_workers``, ``queued_tasks``, ``outstanding_tasks``); ``measured``: the service's
        averages (``round_trip`` and ``rtt`` in seconds, ``tasks_per_s``, ``failure_rate``)."""
        return self._json("GET", f"/v1/endpoints/{endpoint_id}")

    def set_allowed_functions(self, endpoint_id: str, function_ids: Sequence[str] | None) -> list[str] | None:
        """Only these functions may run on your endpoint (None: any); the service refuses a
        batch for another one with ``Forbidden`` (``error_type`` ``function_not_allowed``).
        The endpoint's own configuration (``fabric endpoint configure --allow-function``)
        is enforced again on the endpoint and replaces this list at its next start."""
        body = {"allowed_functions": None if function_ids is None else list(function_ids)}
        reply = self._json("PUT", f"/v1/endpoints/{endpoint_id}/allowed_functions", json=body)
        return reply["allowed_functions"]  # type: ignore[no-any-return]

    # -- endpoint groups -----------------------------------------------------------------
    def create_endpoint_group(self, name: str, endpoint_ids: Sequence[str]) -> dict[str, Any]:
        """A named set of endpoints (yours or shared with you) to submit to at once:
        ``{"endpoint_group_id", "name", "owner", "access", "endpoint_ids", "created"}``."""
        return self._json("POST", "/v1/endpoint_groups", json={"name": name, "endpoint_ids": list(endpoint_ids)})

    def list_endpoint_groups(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/v1/endpoint_groups")["endpoint_groups"])

    def get_endpoint_group(self, endpoint_group_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/endpoint_groups/{endpoint_group_id}")

    def share_endpoint_group(self, endpoint_group_id: str, *, users: Sequence[str] = (), groups: Sequence[str] = (),
                             public: bool = False) -> dict[str, Any]:
        """Let these users, groups' members or everyone submit to your endpoint group (their
        tasks go to the members they reach themselves); replaces its sharing."""
        return self._json("PUT", f"/v1/endpoint_groups/{endpoint_group_id}/sharing",
                          json=_sharing(users, groups, public))

    def delete_endpoint_group(self, endpoint_group_id: str) -> None:
        self._request("DELETE", f"/v1/endpoint_groups/{endpoint_group_id}")

    # -- sharing and groups ------------------------------------------------------------
    def share_endpoint(self, endpoint_id: str, *, users: Sequence[str] = (), groups: Sequence[str] = (),
                       public: bool = False) -> dict[str, Any]:
        """Let these users (names or ids), the members of these groups (ids), or everyone
        (``public``) see your endpoint and submit tasks to it. Replaces the endpoint's
        sharing (``share_endpoint(id)`` makes it private again); returns the sharing now."""
        return self._json("PUT", f"/v1/endpoints/{endpoint_id}/sharing", json=_sharing(users, groups, public))

    def get_endpoint_sharing(self, endpoint_id: str) -> dict[str, Any]:
        """``{"public", "users", "groups"}`` of your endpoint."""
        return self._json("GET", f"/v1/endpoints/{endpoint_id}/sharing")

    def share_function(self, function_id: str, *, users: Sequence[str] = (), groups: Sequence[str] = (),
                       public: bool = False) -> dict[str, Any]:
        """Let these users, groups' members, or everyone read your function and run tasks
        with it; replaces its sharing and returns the sharing now."""
        return self._json("PUT", f"/v1/functions/{function_id}/sharing", json=_sharing(users, groups, public))

    def get_function_sharing(self, function_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/functions/{function_id}/sharing")

    def create_group(self, name: str, members: Sequence[str] = ()) -> dict[str, Any]:
        """A new group you own (you are its first member), with these users (names or ids) in it:
        ``{"group_id", "name", "owner", "role", "members"}``."""
        group = self._json("POST", "/v1/groups", json={"name": name})
        return self.add_group_members(group["group_id"], members) if members else group

    def list_groups(self) -> list[dict[str, Any]]:
        """The groups you own or are a member of."""
        return list(self._json("GET", "/v1/groups")["groups"])

    def get_group(self, group_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/groups/{group_id}")

    def add_group_members(self, group_id: str, users: Sequence[str]) -> dict[str, Any]:
        return self._json("POST", f"/v1/groups/{group_id}/members", json={"users": list(users)})

    def remove_group_member(self, group_id: str, user: str) -> None:
        """Remove a member of your group, or leave someone else's (``user`` = your name)."""
        self._request("DELETE", f"/v1/groups/{group_id}/members/{quote(user, safe='')}")

    def delete_group(self, group_id: str) -> None:
        """Delete your group; whatever was shared with it is shared with nobody now."""
        self._request("DELETE", f"/v1/groups/{group_id}")

    # -- tasks -------------------------------------------------------------------------
    def submit_batch(self, endpoint_id: str | None, function_ids: str | Sequence[str], arguments: Sequence[bytes], *,
                     task_group_id: str | None = None, retries: int = 0,
                     resource_spec: dict[str, Any] | None = None, batch_id: str | None = None,
                     endpoint_group: str | None = None, routing: dict[str, Any] | None = None,
                     python_version: str | None = None, depends_on: Sequence[Sequence[str]] | None = None,
                     memoize: bool | float | None = None) -> SubmittedBatch:
        """Submit tasks in one request: ``arguments`` are serialized ``(args, kwargs)`` payloads
        (``fabric.serialize.serialize_arguments``), one per task; ``function_ids`` one id for
        all, or one per task. Safe to retry: the batch carries ``batch_id`` (new if None).

        ``endpoint_group`` instead of ``endpoint_id``: the service picks a member per task,
        by ``routing`` (``{"policy", "requires", "weights", "near"}``, see the README);
        ``NoEligibleEndpoint`` if no member meets ``requires``. ``python_version``: the
        answer's ``warnings`` say if the workers run another Python. ``depends_on``: per
        task, the ids of the tasks its arguments refer to (``fabric.dependencies``); it runs
        once they finished. ``memoize``: True or a ttl in seconds (``sdk.memo``)."""
        if (endpoint_id is None) == (endpoint_group is None):
            raise ValueError("submit to an endpoint_id or to an endpoint_group")
        body: dict[str, Any] = {"args": list(arguments), "batch_id": batch_id or str(uuid.uuid4()),
                                "retries": retries}
        if endpoint_group is not None:
            body["endpoint_group"] = endpoint_group
            if routing is not None:
                body["routing"] = routing
        else:
            body["endpoint_id"] = endpoint_id
        if python_version is not None:
            body["python_version"] = python_version
        if isinstance(function_ids, str):
            body["function_id"] = function_ids
        else:
            body["function_ids"] = list(function_ids)
        if task_group_id is not None:
            body["task_group_id"] = task_group_id
        if resource_spec is not None:
            body["resource_spec"] = resource_spec
        if depends_on is not None:
            body["depends_on"] = [list(ids) for ids in depends_on]
        if memoize is not None and memoize is not False:
            body["memoize"] = True if memoize is True else {"ttl": float(memoize)}
        encoded, headers = compress(msgpack.packb(body, use_bin_type=True))
        reply = self._json("POST", "/v1/batches", body=encoded, headers={"Content-Type": MSGPACK, **headers})
        return SubmittedBatch(reply["task_group_id"], list(reply["task_ids"]), tuple(reply.get("warnings", ())))

    def submit_many(self, endpoint_id: str, function_id: str, arguments: Iterable[bytes], *,
                    task_group_id: str | None = None, batch_tasks: int = 4096, batch_bytes: int = 16 * 2**20,
                    retries: int = 0, resource_spec: dict[str, Any] | None = None,
                    progress: bool | None = None) -> tuple[str, int]:
        """Stream any number of tasks (serialized arguments, e.g. a generator) in batches, each
        uploaded before more arguments are read; returns (task group id, tasks submitted).
        Stream the results with ``iter_results``."""
        group = task_group_id or str(uuid.uuid4())
        count = 0
        bar = Progress(progress, "uploaded")
        chunk: list[bytes] = []
        size = 0
        try:
            for payload in arguments:
                chunk.append(payload)
                size += len(payload)
                if len(chunk) >= batch_tasks or size >= batch_bytes:
                    count += self._submit_chunk(endpoint_id, function_id, chunk, group, retries, resource_spec, bar)
                    chunk, size = [], 0
            if chunk:
                count += self._submit_chunk(endpoint_id, function_id, chunk, group, retries, resource_spec, bar)
        finally:
            bar.close()
        return group, count

    def _submit_chunk(self, endpoint_id: str, function_id: str, chunk: list[bytes], group: str, retries: int,
                      resource_spec: dict[str, Any] | None, bar: Progress) -> int:
        self.submit_batch(endpoint_id, function_id, chunk, task_group_id=group, retries=retries,
                          resource_spec=resource_spec)
        bar.add_submitted(len(chunk))
        bar.add_done(len(chunk))
        return len(chunk)

    def get_task(self, task_id: str) -> dict[str, Any]:
        """A task's record: ``state``, times, and (once finished) ``result`` bytes and ``result_kind``;
        ``endpoint_id`` where it runs (None while a group's task waits to be placed) and, for
        a group's task, ``route_reason``: why the routing policy put it there."""
        record = self._json("GET", f"/v1/tasks/{task_id}")
        if record.get("result") is not None:
            record["result"] = base64.b64decode(record["result"])
        return record

    def get_result(self, task_id: str) -> Any:
        """The task's value; raises ``TaskPending`` while it runs, or the task's own exception."""
        record = self.get_task(task_id)
        if record["state"] not in FINISHED_STATES:
            raise TaskPending(task_id, record["state"])
        ok, value = outcome(record["result_kind"], record["result"] or b"")
        if not ok:
            raise value
        return value

    def create_trigger(self, endpoint_id: str, function_id: str, directory: str, *, pattern: str = "*",
                       max_per_minute: int = 600) -> dict[str, Any]:
        """New files in ``directory`` (matching ``pattern``) at the endpoint each start the function
        once, with the file's path (run ``fabric trigger watch`` beside the endpoint)."""
        return self._json("POST", "/v1/triggers", json={
            "endpoint_id": endpoint_id, "function_id": function_id, "directory": directory, "pattern": pattern,
            "max_per_minute": max_per_minute})

    def list_triggers(self, endpoint_id: str | None = None) -> list[dict[str, Any]]:
        params = {"endpoint_id": endpoint_id} if endpoint_id else None
        return list(self._json("GET", "/v1/triggers", params=params)["triggers"])

    def delete_trigger(self, trigger_id: str) -> None:
        self._json("DELETE", "/v1/triggers/" + urllib.parse.quote(trigger_id, safe=""))

    def put_blob(self, digest: str, data: bytes) -> dict[str, Any]:
        """Store bytes in the service's data store under their SHA-256 (``fabric.data``):
        ``{"hash", "size", "capability"}``."""
        return self._json("PUT", f"/v1/blobs/{digest}", body=data,
                          headers={"Content-Type": "application/octet-stream"})

    def blob_info(self, digest: str) -> dict[str, Any] | None:
        """What the service holds for you under this hash (``size``, ``downloads``, ``capability``), or None."""
        try:
            return self._json("GET", f"/v1/blobs/{digest}/info")
        except NotFound:
            return None

    def forget(self, function: str | Callable[..., Any] | None = None) -> int:
        """Forget your memoized results (``sdk.memo``) of one function (a callable, or its id), or
        of all; returns how many were forgotten."""
        if function is None:
            return int(self._json("DELETE", "/v1/memo")["forgotten"])
        function_id = function if isinstance(function, str) else serialize_function(function)[0]
        return int(self._json("DELETE", "/v1/memo?function_id=" + urllib.parse.quote(function_id, safe=""))["forgotten"])

    def get_task_group(self, task_group_id: str) -> dict[str, Any]:
        """How many tasks the group has: ``tasks``, ``success``, ``failed``, ``pending``;
        ``endpoints``: how many were placed on each endpoint (tasks of endpoint groups)."""
        return self._json("GET", f"/v1/task_groups/{task_group_id}")

    def cancel_task_group(self, task_group_id: str) -> int:
        """Cancel the group's unfinished tasks: those not yet sent to the endpoint at once, those
        queued there as the endpoint gets to it (running ones finish). Their futures and results
        say ``TaskCancelled``. Returns how many were cancelled at the service."""
        return int(self._json("POST", f"/v1/task_groups/{task_group_id}/cancel")["cancelled"])

    def retry_task_group(self, task_group_id: str) -> int:
        """Run the group's failed tasks (not the cancelled ones) again; returns how many."""
        return int(self._json("POST", f"/v1/task_groups/{task_group_id}/retry")["retried"])

    def iter_results(self, task_group_id: str, *, after: int = 0, wait: float = 10.0) -> Iterator[TaskResult]:
        """Every result of the group from cursor ``after`` on, as they finish, until none is pending."""
        cursor = after
        while True:
            page = self.get_results(task_group_id, after=cursor, wait=wait)
            for task_id, ok, value in page.outcomes():
                yield TaskResult(task_id, ok, value)
            cursor = page.cursor
            if not page.pending and not page.task_ids:
                return
            if page.poll_after and not page.task_ids:  # the service could not let the poll wait
                time.sleep(page.poll_after)

    def get_task_group_tasks(self, task_group_id: str) -> list[str]:
        """Every task id of the group, in submission order."""
        task_ids: list[str] = []
        cursor = 0
        while True:
            page = self._msgpack("GET", f"/v1/task_groups/{task_group_id}/tasks", params={"after": cursor})
            if not page["task_ids"]:
                return task_ids
            task_ids += page["task_ids"]
            cursor = page["cursor"]

    def get_results(self, task_group_id: str, *, after: int = 0, wait: float = 0.0,
                    limit: int | None = None) -> ResultPage:
        """Results of the group after cursor ``after``, waiting up to ``wait`` s for a first one."""
        params: dict[str, Any] = {"after": after, "wait": wait}
        if limit is not None:
            params["limit"] = limit
        page = self._msgpack("GET", f"/v1/task_groups/{task_group_id}/results", params=params,
                             timeout=self.timeout + wait)
        return ResultPage(page["task_ids"], page["kinds"], page["payloads"], page["cursor"], page["pending"],
                          float(page.get("poll_after", 0.0)))

    def poll_results(self, cursors: dict[str, int], *, wait: float = 0.0, limit: int | None = None,
                     watcher: str | None = None) -> GroupsResultPage:
        """Results of several task groups, each after its cursor, waiting up to ``wait`` s for a
        first one (``POST /v1/results``); a new poll with the same ``watcher`` id ends the
        previous one."""
        body: dict[str, Any] = {"groups": cursors, "wait": wait}
        if limit is not None:
            body["limit"] = limit
        if watcher is not None:
            body["watcher"] = watcher
        answer = self._msgpack("POST", "/v1/results", body=msgpack.packb(body, use_bin_type=True),
                               headers={"Content-Type": MSGPACK}, timeout=self.timeout + wait)
        pages = {group: ResultPage(page["task_ids"], page["kinds"], page["payloads"], page["cursor"], page["pending"])
                 for group, page in answer["groups"].items()}
        return GroupsResultPage(pages, list(answer["missing"]), float(answer.get("poll_after", 0.0)))

    # -- HTTP --------------------------------------------------------------------------
    def _json(self, method: str, path: str, *, json: Any = None, **options: Any) -> dict[str, Any]:
        if json is not None:
            options["body"] = _json_module.dumps(json).encode()
            options["headers"] = {"Content-Type": "application/json"}
        response = self._request(method, path, **options)
        try:
            data = _json_module.loads(response.data)
        except ValueError as exc:
            raise ServiceError(f"{method} {path}: undecodable answer: {exc}") from exc
        if not isinstance(data, dict):
            raise ServiceError(f"{method} {path}: the service answered with a non-object")
        return data

    def _msgpack(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        response = self._request(method, path, **options)
        try:
            data = msgpack.unpackb(response.data, raw=False)
        except Exception as exc:  # noqa: BLE001 - any undecodable answer is the service's fault
            raise ServiceError(f"{method} {path}: undecodable answer: {exc}") from exc
        if not isinstance(data, dict):
            raise ServiceError(f"{method} {path}: the service answered with a non-map")
        return data

    def _request(self, method: str, path: str, *, timeout: float | None = None,
                 **options: Any) -> urllib3.BaseHTTPResponse:
        """One request, retried for up to ``retry_for`` seconds while the failure is one a retry
        can get past (``ServiceUnavailable``; ``RateLimited`` that says when to come back)."""
        deadline = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            try:
                return self._attempt(method, path, timeout or self.timeout, **options)
            except (ServiceUnavailable, RateLimited) as exc:
                if isinstance(exc, RateLimited):
                    if exc.retry_after is None:
                        raise
                    pause = exc.retry_after
                else:
                    pause = min(2.0, 0.05 * 2 ** attempt)
                pause *= 0.5 + random.random()
                if time.monotonic() + pause > deadline:
                    raise
                attempt += 1
                time.sleep(pause)

    def _attempt(self, method: str, path: str, timeout: float, *, body: bytes | None = None,
                 headers: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> urllib3.BaseHTTPResponse:
        url = self.service_url + path + (f"?{urlencode(params)}" if params else "")
        try:
            response = self._pool.request(method, url, body=body, headers={**self._headers, **(headers or {})},
                                          timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
                                          retries=False, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(f"cannot reach the service at {self.service_url}: {exc}") from exc
        if response.status < 400:
            return response
        raise _error(response)


def compress(body: bytes) -> tuple[bytes, dict[str, str]]:
    """A request body and its headers: zlib (``Content-Encoding: deflate``, the fastest level)
    from ``COMPRESS_FROM`` bytes on, when that makes it smaller; as it is otherwise."""
    if len(body) < COMPRESS_FROM:
        return body, {}
    packed = zlib.compress(body, 1)
    if len(packed) >= len(body) * 0.9:  # already compressed data (pickled arrays of noise...)
        return body, {}
    return packed, {"Content-Encoding": "deflate"}


def function_name(function: Callable[..., Any]) -> str:
    """A readable name for a callable (``partial`` and callable objects have no ``__name__``)."""
    return str(getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
               or type(function).__name__)[:256]


def _cached(cache: dict[Any, str], function: Callable[..., Any]) -> str | None:
    try:
        return cache.get(function)
    except TypeError:  # unhashable
        return None


def _error(response: urllib3.BaseHTTPResponse) -> Exception:
    """The typed exception for an error response (``{"error": {"type", "message", "request_id", ...}}``)."""
    status = response.status
    try:
        body = _json_module.loads(response.data)["error"]
        message, error_type, request_id = str(body["message"]), str(body["type"]), str(body.get("request_id", ""))
    except (ValueError, KeyError, TypeError):
        text = response.data[:500].decode("utf-8", errors="replace")
        body, message, error_type, request_id = {}, text or str(response.reason), "", ""
    if status == 413:
        error = PayloadTooLarge(int(body.get("size") or 0), int(body.get("limit") or 0), str(body.get("what", "request")))
        error.request_id = request_id  # type: ignore[attr-defined]
        return error
    kind: type[ServiceError] = ServiceError
    if status == 429:
        return RateLimited(message, retry_after=_retry_after(response, body), status=status,
                           error_type=error_type, request_id=request_id)
    if status == 401:
        kind = AuthError
    elif status == 403:
        kind = Forbidden
    elif status == 404:
        kind = NotFound
    elif status == 410:
        kind = BatchGone
    elif status in TRANSIENT_STATUSES:
        kind = ServiceUnavailable
    elif status >= 500:
        kind = ServiceInternalError
    elif error_type == "no_eligible_endpoint":
        kind = NoEligibleEndpoint
    elif 400 <= status < 500:
        kind = InvalidRequest
    return kind(message, status=status, error_type=error_type, request_id=request_id)


def _retry_after(response: urllib3.BaseHTTPResponse, body: dict[str, Any]) -> float | None:
    """Seconds a 429 asks the client to wait (``Retry-After``, or ``retry_after`` in the body);
    None when it does not say: then it is not retried."""
    for value in (body.get("retry_after"), response.headers.get("Retry-After")):
        with contextlib.suppress(TypeError, ValueError):
            seconds = float(value)  # type: ignore[arg-type]
            if 0 <= seconds < 3600:
                return seconds
    return None


def _sharing(users: Sequence[str], groups: Sequence[str], public: bool) -> dict[str, Any]:
    if isinstance(users, str) or isinstance(groups, str):
        raise TypeError("users and groups are lists of names or ids, not one string")
    return {"public": bool(public), "users": list(users), "groups": list(groups)}
