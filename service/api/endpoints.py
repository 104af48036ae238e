"""``/v1/endpoints``: register an endpoint (its CurveZMQ keys and where to connect), status."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from service.api.common import current_user, field, json_body, services
from service.errors import BadRequest, NotFound
from service.keys import new_key_pair
from service.openapi import operation
from service.store import DISPATCHED, RECEIVED, RUNNING, WAITING, EndpointRecord

blueprint = Blueprint("endpoints", __name__)


def _summary(record: EndpointRecord) -> dict[str, Any]:
    config = services().config
    online = (record.connected and record.last_heartbeat is not None
              and time.time() - record.last_heartbeat <= config.heartbeat_threshold)
    return {"endpoint_id": record.endpoint_id, "name": record.name, "status": "online" if online else "offline",
            "last_heartbeat": record.last_heartbeat, "created": record.created}


@blueprint.post("/endpoints")
@operation("Register an endpoint (or get the caller's endpoint of that name): its id, the forwarder's "
           "address and the CurveZMQ keys to connect with", request="json", status=201, errors=(400, 413, 415))
def register_endpoint() -> tuple[dict[str, Any], int]:
    name = field(json_body(), "name", str)
    if not 0 < len(name) <= 128:
        raise BadRequest("name must have 1 to 128 characters")
    keys = new_key_pair()
    record, created = services().store.register_endpoint(current_user().user_id, name, keys.public, keys.secret)
    reply = {"endpoint_id": record.endpoint_id, "name": record.name,
             "forwarder_address": services().forwarder_address, "server_public_key": services().server_public_key,
             "public_key": record.public_key, "secret_key": record.secret_key}
    return reply, 201 if created else 200


@blueprint.get("/endpoints")
@operation("The caller's endpoints")
def list_endpoints() -> dict[str, Any]:
    return {"endpoints": [_summary(r) for r in services().store.list_endpoints(current_user().user_id)]}


@blueprint.get("/endpoints/<endpoint_id>")
@operation("Status of one endpoint: online or offline, last heartbeat, managers, workers, tasks", errors=(404,))
def endpoint_status(endpoint_id: str) -> dict[str, Any]:
    record = services().store.get_endpoint(current_user().user_id, endpoint_id)
    if record is None:
        raise NotFound(f"no endpoint {endpoint_id!r}")
    counts = services().store.unfinished_counts(endpoint_id)
    return {**_summary(record), "hostname": record.hostname, "managers": record.managers,
            "workers": record.workers, "outstanding_tasks": counts.get(DISPATCHED, 0) + counts.get(RUNNING, 0),
            "waiting_tasks": counts.get(RECEIVED, 0) + counts.get(WAITING, 0),
            "interchange_queued_tasks": record.interchange_queued}
