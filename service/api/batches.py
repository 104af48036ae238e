"""``/v1/batches`` and ``/v1/tasks``: submit many tasks in one binary request, look one up.

A batch body is a msgpack map::

    {"endpoint_id": str, "function_id": str,      # or "function_ids": [str, ...], one per task
     "endpoint_group": str,                        # instead of endpoint_id: the service picks a member
     "routing": {"policy": str, "requires": {...}, # with endpoint_group (see service.routing)
                 "weights": {...}, "near": str},
     "python_version": str,                        # optional: the client's, compared with the workers'

     "args": [bytes, ...],                         # each task's serialized arguments
     "task_group_id": str,                         # optional: add to this group (a UUID)
     "batch_id": str,                              # optional: a UUID naming this request, so a
                                                   # retry of it adds nothing (same reply; 409
                                                   # if its content differs, 410 once its
                                                   # tasks were purged: service.store.batches)
     "depends_on": [[str, ...], ...],              # optional: per task, the ids of tasks whose
                                                   # results its arguments refer to; it waits
                                                   # for them (service.api.dependencies)
     "memoize": true | {"ttl": s},                 # optional: answer from earlier results of
                                                   # the same call (service.api.memo)
     "retries": int,                               # optional, default 0
     "resource_spec": {"walltime": s, "priority": n, ...}}   # optional, applies to every task

Every value must be storable (``service.api.common.checked``: integers within 64 bits, finite
numbers, nesting at most 32 deep); ``walltime`` is at most ``MAX_WALLTIME`` (a year).

The caller must reach the endpoint and every function (their own, shared with them or
their groups, or public; 404 otherwise), and the endpoint's allow-list, if it has one, must
name every function (403 ``function_not_allowed``); nothing of a refused batch is stored.
The tasks belong to the caller, whoever owns the endpoint.

Routing. With ``endpoint_group`` the service places each task (per chunk) on a member at
dispatch time (at submit for as many as the members have room for; the rest wait in the
store and the forwarder places them as room frees), by ``routing.policy`` (``least-loaded``,
the default, ``fastest``, ``cheapest``, ``closest``) or ``routing.weights``, among the
members that meet ``routing.requires`` and that the caller reaches (and whose allow-list
names every function). A group the caller cannot see is 404; a bad policy, constraint or
weight is 400 with the ``field``; when no member meets the constraints (by their last
reports) the batch is refused with 409 ``no_eligible_endpoint`` and nothing is stored.

The body may be compressed (``Content-Encoding: gzip`` or ``deflate``; see
``service.api.common``). The reply (201) is JSON: ``{"task_group_id": str, "task_ids":
[str, ...]}``, sent only once every task is in the store, with ``"warnings": [str]`` when
the workers run another Python than ``python_version``.

``GET /v1/tasks/<id>`` is one task's record. A finished task is deleted once its client
fetched its result through its group's results stream (or ``result_ttl`` after it
finished); from then on it answers 404, like a task that never existed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from service import routing
from service.api import dependencies, endpoint_groups, memo
from service.api.common import b64encode, current_user, field, msgpack_body, services, uuid_text
from service.errors import FunctionNotAllowed, InvalidField, NoEligibleEndpoint, NotFound, PayloadTooLarge
from service.records import ROUTE_PREFIX
from service.store.routes import route_id_of
from service.openapi import operation
from service.store import RECEIVED, WAITING, NewTasks

blueprint = Blueprint("batches", __name__)

MAX_RETRIES = 100
MAX_WALLTIME = 366 * 24 * 3600
"""The longest walltime a task may ask for (seconds): far past any real job, and small enough
that every deadline computed from it stays a finite number of milliseconds."""


def _function_ids(data: dict[str, Any], count: int) -> list[str]:
    if "function_ids" in data:
        ids: list[str] = field(data, "function_ids", list)
        if len(ids) != count or not all(isinstance(i, str) for i in ids):
            raise InvalidField("function_ids", "must be a list of strings, one per task")
        return ids
    return [field(data, "function_id", str)] * count


def _resource_spec(data: dict[str, Any]) -> tuple[dict[str, Any] | None, float | None, int]:
    spec = field(data, "resource_spec", dict, required=False)
    if spec is None:
        return None, None, 0
    for name, value in spec.items():
        if not (isinstance(value, (str, int, float, bool)) or value is None):
            raise InvalidField(f"resource_spec.{name}", "must be a string, number, boolean or nil")
    walltime = spec.get("walltime")
    if walltime is not None and (not isinstance(walltime, (int, float)) or isinstance(walltime, bool)
                                 or not 0 < walltime <= MAX_WALLTIME):
        raise InvalidField("resource_spec.walltime", f"must be a positive number of seconds, at most {MAX_WALLTIME}")
    priority = spec.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidField("resource_spec.priority", "must be an integer")
    return spec, walltime, priority


def _parse_batch(data: dict[str, Any]) -> NewTasks:
    config = services().config
    args = field(data, "args", list)
    if not args:
        raise InvalidField("args", "is empty: a batch needs at least one task")
    if len(args) > config.max_batch_tasks:
        raise PayloadTooLarge("batch", len(args), config.max_batch_tasks, "tasks")
    for payload in args:
        if not isinstance(payload, bytes):
            raise InvalidField("args", "must be a list of binary payloads")
        if len(payload) > config.max_task_bytes:
            raise PayloadTooLarge("task arguments", len(payload), config.max_task_bytes)
    retries = field(data, "retries", int, required=False, default=0)
    if not 0 <= retries <= MAX_RETRIES:
        raise InvalidField("retries", f"must be between 0 and {MAX_RETRIES}")
    group = field(data, "task_group_id", str, required=False)
    batch_id = field(data, "batch_id", str, required=False)
    spec, walltime, priority = _resource_spec(data)
    routed = data.get("endpoint_group") is not None
    if routed == (data.get("endpoint_id") is not None):
        raise InvalidField("endpoint_id", "or endpoint_group must be given, not both nor neither")
    return NewTasks(endpoint_id="" if routed else field(data, "endpoint_id", str),
                    function_ids=_function_ids(data, len(args)), payloads=args,
                    task_group_id=uuid_text(group, "task_group_id") if group else None,
                    retries=retries, walltime=walltime, priority=priority, resource_spec=spec,
                    batch_id=uuid_text(batch_id, "batch_id") if batch_id else None)


@blueprint.post("/batches")
@operation("Submit a batch of tasks (binary msgpack body); tasks are stored before the reply",
           request="msgpack", status=201, errors=(400, 403, 404, 409, 410, 413, 415))
def submit_batch() -> tuple[dict[str, Any], int]:
    parts = services()
    owner = current_user().user_id
    data = msgpack_body(parts.config.max_request_bytes)
    tasks = _parse_batch(data)
    python = field(data, "python_version", str, required=False)
    if not tasks.endpoint_id:
        return _submit_routed(owner, data, tasks, python)
    reached = parts.store.endpoint_access(owner, tasks.endpoint_id)
    if reached is None:
        raise NotFound(f"no endpoint {tasks.endpoint_id!r}")
    allowed = reached[0].allowed_functions
    for function_id in set(tasks.function_ids):
        if parts.store.function_access(owner, function_id) is None:
            raise NotFound(f"no function {function_id!r}")
        if allowed is not None and function_id not in allowed:
            raise FunctionNotAllowed(f"endpoint {tasks.endpoint_id!r} does not allow function {function_id!r}")
    count = len(tasks.payloads)
    inputs = dependencies.depends_on(data, count) if "depends_on" in data else None
    memoize_ttl = memo.memoize_ttl(data) if "memoize" in data else None
    if inputs is not None:
        added = dependencies.submit_dependent(parts, owner, tasks, inputs)
    elif memoize_ttl is not None:
        added = memo.submit_memoized(parts, owner, tasks, memoize_ttl)
    elif parts.dispatcher.reserve(tasks.endpoint_id, count):  # dispatch at submit (see service.events)
        dispatched = None
        try:
            dispatched = parts.store.add_dispatched(owner, tasks)
        finally:
            parts.dispatcher.hand_over(tasks.endpoint_id, count, dispatched[2] if dispatched else [])
        added = dispatched[:2] if dispatched else None
    else:
        state = RECEIVED if parts.dispatcher.is_online(tasks.endpoint_id) else WAITING
        added = parts.store.add_tasks(owner, tasks, state)
        if added is not None:
            parts.dispatcher.tasks_added(tasks.endpoint_id)
    if added is None:
        raise NotFound(f"no task group {tasks.task_group_id!r}, or batch_id {tasks.batch_id!r} is taken")
    group_id, task_ids = added
    return _reply(group_id, task_ids, python, [tasks.endpoint_id]), 201


def _reply(group_id: str, task_ids: list[str], python: str | None, endpoint_ids: list[str]) -> dict[str, Any]:
    reply: dict[str, Any] = {"task_group_id": group_id, "task_ids": task_ids}
    if python is not None:  # sent with a client's first batch only: no cost on the others
        reports = services().store.endpoint_reports(endpoint_ids)
        warnings = [f"endpoint {e}: {w}" for e in endpoint_ids
                    if (w := routing.python_mismatch(python, routing.Hardware.from_report(
                        reports[e].report if e in reports else None)))]
        if warnings:
            reply["warnings"] = warnings
    return reply


def _submit_routed(owner: str, data: dict[str, Any], tasks: NewTasks,
                   python: str | None) -> tuple[dict[str, Any], int]:
    """A batch for an endpoint group: stored under a route over the eligible members."""
    parts = services()
    for option in ("depends_on", "memoize"):
        if option in data:  # dependencies and the memo are kept per endpoint so far
            raise InvalidField(option, "is not supported with an endpoint_group yet: submit to an endpoint_id")
    group_id = field(data, "endpoint_group", str)
    try:
        spec = routing.RoutingSpec.parse(data.get("routing"))
    except routing.RoutingError as exc:
        raise InvalidField(exc.field, exc.message) from None
    group, _ = endpoint_groups.visible(group_id)
    if not group.members:
        raise InvalidField("endpoint_group", "the group has no endpoints")
    function_ids = set(tasks.function_ids)
    for function_id in function_ids:
        if parts.store.function_access(owner, function_id) is None:
            raise NotFound(f"no function {function_id!r}")
    members = []
    for endpoint_id in group.members:
        reached = parts.store.endpoint_access(owner, endpoint_id)
        allowed = reached[0].allowed_functions if reached else None
        if reached is not None and (allowed is None or function_ids <= set(allowed)):
            members.append(endpoint_id)
    reports = parts.store.endpoint_reports(members)
    eligible = [e for e in members if routing.meets(spec.requires, routing.Hardware.from_report(
        reports[e].report if e in reports else None))]
    if not eligible:
        raise NoEligibleEndpoint(group.endpoint_group_id, dict(spec.requires))
    route_id = route_id_of(owner, group.endpoint_group_id, spec.to_dict(), eligible)
    placed = parts.dispatcher.reserve_routed(route_id, spec, eligible, len(tasks.payloads))  # dispatch at submit
    added = None
    try:
        added = parts.store.add_routed(owner, tasks, group.endpoint_group_id, spec.to_dict(), eligible, placed)
    finally:
        for placement in placed:
            parts.dispatcher.hand_over(placement.endpoint_id, placement.count,
                                       added.sent.get(placement.endpoint_id, []) if added else [])
    if added is None:
        raise NotFound(f"no task group {tasks.task_group_id!r}, or batch_id {tasks.batch_id!r} is taken")
    if added.waiting:
        parts.dispatcher.route_added(added.route_id, added.waiting)
    return _reply(added.task_group_id, added.task_ids, python, eligible), 201


@blueprint.get("/tasks/<task_id>")
@operation("One task: its state, and its result payload (base64) once finished; 404 once purged", errors=(404,))
def get_task(task_id: str) -> dict[str, Any]:
    record = services().store.get_task(current_user().user_id, task_id)
    if record is None:
        raise NotFound(f"no task {task_id!r}")
    placed = not record.endpoint_id.startswith(ROUTE_PREFIX)
    return {"task_id": record.task_id, "state": record.state, "function_id": record.function_id,
            "endpoint_id": record.endpoint_id if placed else None, "route_id": record.route_id,
            "route_reason": record.route_reason, "task_group_id": record.task_group_id, "created": record.created,
            "dispatched": record.dispatched, "started": record.started, "completed": record.completed,
            "retries": record.retries, "resource_spec": record.resource_spec, "result_kind": record.result_kind,
            "result": b64encode(record.result), "error": record.error, "memoized": bool(record.memo_hit)}
