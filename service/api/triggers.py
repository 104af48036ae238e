"""``/v1/triggers``: directories an endpoint's watcher turns new files in into tasks (``endpoint.triggers``).

``POST /v1/triggers`` ``{"endpoint_id", "function_id", "directory", "pattern": "*",
"max_per_minute": 600}``: 201 with the trigger's record; the caller must reach the endpoint and
the function (404). ``GET /v1/triggers[?endpoint_id=]`` lists the caller's; ``DELETE
/v1/triggers/<id>`` removes one (404 if not theirs). Whether the endpoint may read the
directory is checked where it runs (``fabric trigger create`` on the endpoint's machine).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from service.api.common import current_user, field, json_body, services
from service.errors import InvalidField, NotFound
from service.openapi import operation

blueprint = Blueprint("triggers", __name__)


@blueprint.post("/triggers")
@operation("Create a trigger: new files in a directory at an endpoint start a function", status=201,
           errors=(400, 404))
def create() -> tuple[dict[str, Any], int]:
    parts, owner = services(), current_user().user_id
    data = json_body()
    endpoint_id, function_id = field(data, "endpoint_id", str), field(data, "function_id", str)
    directory = field(data, "directory", str)
    pattern = field(data, "pattern", str, required=False, default="*")
    rate = field(data, "max_per_minute", int, required=False, default=600)
    if not directory.startswith("/") or len(directory) > 4096 or "\0" in directory:
        raise InvalidField("directory", "must be an absolute path")
    if not 0 < rate <= 1_000_000 or not 0 < len(pattern) <= 256:
        raise InvalidField("max_per_minute", "must be between 1 and 1,000,000 (and pattern 1 to 256 characters)")
    if parts.store.endpoint_access(owner, endpoint_id) is None:
        raise NotFound(f"no endpoint {endpoint_id!r}")
    if parts.store.function_access(owner, function_id) is None:
        raise NotFound(f"no function {function_id!r}")
    return parts.store.create_trigger(owner, endpoint_id, function_id, directory, pattern, rate), 201


@blueprint.get("/triggers")
@operation("The caller's triggers (?endpoint_id= for one endpoint's)")
def listed() -> dict[str, Any]:
    endpoint_id = request.args.get("endpoint_id") or None
    return {"triggers": services().store.list_triggers(current_user().user_id, endpoint_id)}


@blueprint.delete("/triggers/<trigger_id>")
@operation("Delete a trigger", errors=(404,))
def delete(trigger_id: str) -> dict[str, Any]:
    if not services().store.delete_trigger(current_user().user_id, trigger_id):
        raise NotFound(f"no trigger {trigger_id!r}")
    return {"deleted": trigger_id}
