"""``/v1/endpoints``: register an endpoint (its CurveZMQ keys and where to connect), status,
sharing and the allow-list of functions.

Registering a new name makes the endpoint and its CurveZMQ key pair: the reply is the only
place its secret key ever appears (the service keeps the public key only). Registering a
name the caller already registered returns that endpoint without touching its keys (a
lookup, 200, no ``secret_key``) unless the request asks ``"rotate_keys": true`` (as
``fabric endpoint start`` does): then the reply carries a new key pair, and a connection
made with the old one is closed (a process holding it cannot connect again).
``GET /v1/endpoints?name=NAME`` finds endpoints by name without registering anything.
``allowed_functions`` (a list of function ids, or null for any function; left out:
unchanged) is the endpoint's allow-list: a batch for another function is refused with 403
``function_not_allowed``. The endpoint's own configuration enforces its list again before
anything runs.

An endpoint is private to its owner until shared (``PUT /v1/endpoints/<id>/sharing``, see
``service.api.sharing``): a user it is shared with (directly, through a group, or because
it is public) may see its status and submit tasks to it; only the owner sees its host,
changes its sharing or allow-list, or rotates its keys. Listing shows the caller's
endpoints and those shared with them or their groups (public ones are reached by id).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, request

from service.api import sharing
from service.api.common import current_user, field, json_body, services
from service.errors import InvalidField, NotFound
from service.keys import new_key_pair
from service.openapi import operation
from service.records import OWNER, UNSET, Unset
from service.store import DISPATCHED, RECEIVED, RUNNING, WAITING, EndpointRecord, access

blueprint = Blueprint("endpoints", __name__)


MAX_ALLOWED_FUNCTIONS = 10_000


def _summary(record: EndpointRecord, how: str, owner_name: str | None) -> dict[str, Any]:
    config = services().config
    online = (record.connected and record.last_heartbeat is not None
              and time.time() - record.last_heartbeat <= config.heartbeat_threshold)
    return {"endpoint_id": record.endpoint_id, "name": record.name, "owner": owner_name, "access": how,
            "status": "online" if online else "offline", "last_heartbeat": record.last_heartbeat,
            "created": record.created,
            "allowed_functions": None if record.allowed_functions is None else list(record.allowed_functions)}


def _allowed_functions(data: dict[str, Any], name: str) -> list[str] | None | Unset:
    if name not in data:
        return UNSET
    if data[name] is None:
        return None
    ids: list[Any] = field(data, name, list)
    if len(ids) > MAX_ALLOWED_FUNCTIONS or not all(isinstance(i, str) and 0 < len(i) <= 256 for i in ids):
        raise InvalidField(name, f"must be null or a list of at most {MAX_ALLOWED_FUNCTIONS} function ids")
    return ids


def _visible(endpoint_id: str) -> tuple[EndpointRecord, str]:
    found = services().store.endpoint_access(current_user().user_id, endpoint_id)
    if found is None:
        raise NotFound(f"no endpoint {endpoint_id!r}")
    return found


def _owned(endpoint_id: str, action: str) -> EndpointRecord:
    found = services().store.endpoint_access(current_user().user_id, endpoint_id)
    record: EndpointRecord = sharing.owned(found, f"endpoint {endpoint_id!r}", action=action)
    return record


@blueprint.post("/endpoints")
@operation("Register an endpoint: its id, the forwarder's address and the CurveZMQ keys to connect with "
           "(the secret key in this reply only). The caller's endpoint of that name is returned as it is "
           "(200, no secret key) unless \"rotate_keys\": true", request="json", status=201, errors=(400, 413, 415))
def register_endpoint() -> tuple[dict[str, Any], int]:
    data = json_body()
    name = field(data, "name", str)
    if not 0 < len(name) <= 128:
        raise InvalidField("name", "must have 1 to 128 characters")
    allowed = _allowed_functions(data, "allowed_functions")
    rotate: bool = field(data, "rotate_keys", bool, required=False, default=False)
    keys = new_key_pair()  # used if the endpoint is new or asks for new keys; the secret is never stored
    record, created = services().store.register_endpoint(current_user().user_id, name, keys.public,
                                                         rotate_keys=rotate, allowed_functions=allowed)
    issued = record.public_key == keys.public
    if issued and not created:
        services().dispatcher.keys_rotated(record.endpoint_id)
    reply = {"endpoint_id": record.endpoint_id, "name": record.name,
             "forwarder_address": services().forwarder_address, "server_public_key": services().server_public_key,
             "public_key": record.public_key, "keys_rotated": issued and not created,
             "allowed_functions": None if record.allowed_functions is None else list(record.allowed_functions)}
    if issued:
        reply["secret_key"] = keys.secret
    return reply, 201 if created else 200


@blueprint.get("/endpoints")
@operation("The caller's endpoints and those shared with them or their groups",
           query=(("name", "string", "only the endpoints of this name"),))
def list_endpoints() -> dict[str, Any]:
    found = services().store.visible_endpoints(current_user().user_id)
    name = request.args.get("name")
    if name is not None:
        found = [(record, how) for record, how in found if record.name == name]
    names = sharing.owner_names([record.owner for record, _ in found])
    return {"endpoints": [_summary(record, how, names.get(record.owner)) for record, how in found]}


@blueprint.get("/endpoints/<endpoint_id>")
@operation("Status of one endpoint: online or offline, last heartbeat, managers, workers, tasks (the host "
           "only for its owner)", errors=(404,))
def endpoint_status(endpoint_id: str) -> dict[str, Any]:
    record, how = _visible(endpoint_id)
    counts = services().store.unfinished_counts(endpoint_id)
    owner_name = sharing.owner_names([record.owner]).get(record.owner)
    return {**_summary(record, how, owner_name), "hostname": record.hostname if how == OWNER else None,
            "managers": record.managers,
            "workers": record.workers, "outstanding_tasks": counts.get(DISPATCHED, 0) + counts.get(RUNNING, 0),
            "waiting_tasks": counts.get(RECEIVED, 0) + counts.get(WAITING, 0),
            "interchange_queued_tasks": record.interchange_queued, **_report(record.endpoint_id)}


def _report(endpoint_id: str) -> dict[str, Any]:
    """The endpoint's last hardware report (per manager: workers, cores, memory, accelerators,
    Python) with its labels and live load, and the service's measurements of it."""
    found = services().store.endpoint_reports([endpoint_id]).get(endpoint_id)
    if found is None:
        return {"report": None, "measured": None}
    return {"report": {**found.report, "updated": found.updated}, "measured": found.measured}


@blueprint.get("/endpoints/<endpoint_id>/sharing")
@operation("Whom the endpoint is shared with (owner only)", errors=(403, 404))
def get_sharing(endpoint_id: str) -> dict[str, Any]:
    record = _owned(endpoint_id, "see its sharing")
    return sharing.read(access.ENDPOINT, record.endpoint_id, record.owner)


@blueprint.put("/endpoints/<endpoint_id>/sharing")
@operation("Share the endpoint: public, users, groups (replaces the sharing; owner only)", request="json",
           errors=(400, 403, 404, 413, 415))
def put_sharing(endpoint_id: str) -> dict[str, Any]:
    record = _owned(endpoint_id, "share it")
    return sharing.replace(access.ENDPOINT, record.endpoint_id, record.owner)


@blueprint.put("/endpoints/<endpoint_id>/allowed_functions")
@operation("Set the endpoint's allow-list: {\"allowed_functions\": [function ids] or null for any} (owner only)",
           request="json", errors=(400, 403, 404, 413, 415))
def put_allowed_functions(endpoint_id: str) -> dict[str, Any]:
    record = _owned(endpoint_id, "change its allowed functions")
    data = json_body()
    if "allowed_functions" not in data:
        raise InvalidField("allowed_functions", "is missing (null allows any function)")
    allowed = _allowed_functions(data, "allowed_functions")
    assert not isinstance(allowed, Unset)
    services().store.set_allowed_functions(record.endpoint_id, allowed)
    return {"endpoint_id": record.endpoint_id, "allowed_functions": None if allowed is None else sorted(set(allowed))}
