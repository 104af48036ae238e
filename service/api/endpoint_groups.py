"""``/v1/endpoint_groups``: named sets of endpoints a batch may be submitted to at once.

A batch with ``"endpoint_group"`` instead of ``"endpoint_id"`` lets the service pick an
endpoint of the group per task at dispatch time (``service.routing``; see
``service.api.batches``). A group is JSON ``{"endpoint_group_id", "name", "owner",
"access", "endpoint_ids", "created"}``; its creator must reach every member (own it, or
have it shared with them: 404 otherwise) and it has at least one. It is shared like an
endpoint or a function (``PUT .../sharing``, see ``service.api.sharing``): a user it is
shared with may see it and submit to it (tasks then go only to the members they reach
themselves); only the owner shares or deletes it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from service.api import sharing
from service.api.common import current_user, field, json_body, services
from service.errors import BadRequest, Conflict, NotFound
from service.openapi import operation
from service.records import EndpointGroupRecord
from service.store.routes import ENDPOINT_GROUP

blueprint = Blueprint("endpoint_groups", __name__)

MAX_MEMBERS = 1000


def describe(group: EndpointGroupRecord, how: str) -> dict[str, Any]:
    owner = sharing.owner_names([group.owner]).get(group.owner)
    return {"endpoint_group_id": group.endpoint_group_id, "name": group.name, "owner": owner, "access": how,
            "endpoint_ids": list(group.members), "created": group.created}


def visible(group_id: str) -> tuple[EndpointGroupRecord, str]:
    found = services().store.endpoint_group_access(current_user().user_id, group_id)
    if found is None:
        raise NotFound(f"no endpoint group {group_id!r}")
    return found


def _owned(group_id: str, action: str) -> EndpointGroupRecord:
    found = services().store.endpoint_group_access(current_user().user_id, group_id)
    record: EndpointGroupRecord = sharing.owned(found, f"endpoint group {group_id!r}", action=action)
    return record


@blueprint.post("/endpoint_groups")
@operation("Create an endpoint group: {\"name\", \"endpoint_ids\": [endpoints the caller reaches]}",
           request="json", status=201, errors=(400, 404, 409, 413, 415))
def create_endpoint_group() -> tuple[dict[str, Any], int]:
    data = json_body()
    name = field(data, "name", str)
    if not 0 < len(name) <= 128:
        raise BadRequest("name must have 1 to 128 characters")
    members: list[Any] = field(data, "endpoint_ids", list)
    if not members:
        raise BadRequest("endpoint_ids: an endpoint group needs at least one endpoint")
    if len(members) > MAX_MEMBERS or not all(isinstance(m, str) and 0 < len(m) <= 256 for m in members):
        raise BadRequest(f"endpoint_ids must be a list of at most {MAX_MEMBERS} endpoint ids")
    store, caller = services().store, current_user().user_id
    for endpoint_id in members:
        if store.endpoint_access(caller, endpoint_id) is None:
            raise NotFound(f"no endpoint {endpoint_id!r}")
    group = store.create_endpoint_group(caller, name, members)
    if group is None:
        raise Conflict(f"you already have an endpoint group named {name!r}")
    return describe(group, "owner"), 201


@blueprint.get("/endpoint_groups")
@operation("The caller's endpoint groups and those shared with them or their groups")
def list_endpoint_groups() -> dict[str, Any]:
    found = services().store.visible_endpoint_groups(current_user().user_id)
    return {"endpoint_groups": [describe(group, how) for group, how in found]}


@blueprint.get("/endpoint_groups/<endpoint_group_id>")
@operation("One endpoint group and its members", errors=(404,))
def get_endpoint_group(endpoint_group_id: str) -> dict[str, Any]:
    return describe(*visible(endpoint_group_id))


@blueprint.delete("/endpoint_groups/<endpoint_group_id>")
@operation("Delete the endpoint group and its sharing; tasks already submitted keep their members (owner only)",
           response="empty", status=204, errors=(403, 404))
def delete_endpoint_group(endpoint_group_id: str) -> Response:
    group = _owned(endpoint_group_id, "delete it")
    services().store.delete_endpoint_group(group.owner, group.endpoint_group_id)
    return Response(status=204)


@blueprint.get("/endpoint_groups/<endpoint_group_id>/sharing")
@operation("Whom the endpoint group is shared with (owner only)", errors=(403, 404))
def get_sharing(endpoint_group_id: str) -> dict[str, Any]:
    group = _owned(endpoint_group_id, "see its sharing")
    return sharing.read(ENDPOINT_GROUP, group.endpoint_group_id, group.owner)


@blueprint.put("/endpoint_groups/<endpoint_group_id>/sharing")
@operation("Share the endpoint group: public, users, groups (replaces the sharing; owner only)", request="json",
           errors=(400, 403, 404, 413, 415))
def put_sharing(endpoint_group_id: str) -> dict[str, Any]:
    group = _owned(endpoint_group_id, "share it")
    return sharing.replace(ENDPOINT_GROUP, group.endpoint_group_id, group.owner)
