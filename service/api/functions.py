"""``/v1/functions``: register (id = content hash), list, get, share and delete functions.

A function is private to whoever registered it until they share it (``PUT
/v1/functions/<id>/sharing``, see ``service.api.sharing``). A user it is shared with
(directly, through a group, or because it is public) may read it and submit tasks with it;
only its owner deletes it or changes its sharing. Two users registering the same body hold
the same id, each their own record: a caller always reaches their own record first.
Listing shows the caller's functions and those shared with them or their groups.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from fabric.rest import Oversized
from fabric.serialize import function_id as content_hash
from service.api import sharing
from service.api.common import b64decode, b64encode, current_user, field, json_body, services
from service.errors import HTTPInvalidField, HTTPNotFound, HTTPPayloadTooLarge
from service.openapi import operation
from service.records import OWNER
from service.store import FunctionRecord, access

blueprint = Blueprint("functions", __name__)


def _describe(record: FunctionRecord, how: str = OWNER, owner_name: str | None = None, *,
              body: bool = False) -> dict[str, Any]:
    described: dict[str, Any] = {"function_id": record.function_id, "name": record.name,
                                 "description": record.description, "created": record.created,
                                 "owner": owner_name, "access": how}
    if body:
        described["body"] = b64encode(record.body)
    return described


@blueprint.post("/functions")
@operation("Register a serialized function (registering the same body again is free)", request="json",
           errors=(400, 413, 415))
def register_function() -> dict[str, Any]:
    data = json_body()
    encoded = field(data, "body", str)
    limit = services().config.max_function_bytes
    if len(encoded) > 4 * (limit // 3 + 1):
        raise HTTPPayloadTooLarge(Oversized.FUNCTION_BODY, len(encoded) * 3 // 4, limit)
    body = b64decode(encoded, "body")
    if not body:
        raise HTTPInvalidField("body", "is empty")
    if len(body) > limit:
        raise HTTPPayloadTooLarge(Oversized.FUNCTION_BODY, len(body), limit)
    function_id = content_hash(body)
    claimed = field(data, "function_id", str, required=False)
    if claimed is not None and claimed != function_id:
        raise HTTPInvalidField("function_id", f"{claimed[:64]!r} is not the hash of the body ({function_id})")
    name = field(data, "name", str, required=False, default="")
    description = field(data, "description", str, required=False, default="")
    if len(name) > 256 or len(description) > 4096:
        raise HTTPInvalidField("name" if len(name) > 256 else "description",
                           "is too long (name: 256, description: 4096 characters)")
    user = current_user()
    record = services().store.put_function(user.user_id, function_id, name, description, body)
    return _describe(record, OWNER, user.name)


def _owned(function_id: str, action: str) -> FunctionRecord:
    found = services().store.function_access(current_user().user_id, function_id)
    record: FunctionRecord = sharing.owned(found, f"function {function_id!r}", action=action)
    return record


@blueprint.get("/functions")
@operation("The caller's functions and those shared with them or their groups (without bodies)")
def list_functions() -> dict[str, Any]:
    found = services().store.visible_functions(current_user().user_id)
    names = sharing.owner_names([record.owner for record, _ in found])
    return {"functions": [_describe(record, how, names.get(record.owner)) for record, how in found]}


@blueprint.get("/functions/<function_id>")
@operation("One function the caller owns or may use, with its serialized body (base64)", errors=(404,))
def get_function(function_id: str) -> dict[str, Any]:
    found = services().store.function_access(current_user().user_id, function_id)
    if found is None:
        raise HTTPNotFound(f"no function {function_id!r}")
    record, how = found
    return _describe(record, how, sharing.owner_names([record.owner]).get(record.owner), body=True)


@blueprint.delete("/functions/<function_id>")
@operation("Delete a function and end its sharing (tasks already accepted still run; owner only)",
           response="empty", status=204, errors=(403, 404))
def delete_function(function_id: str) -> Response:
    record = _owned(function_id, "delete it")
    if not services().store.delete_function(record.owner, record.function_id):
        raise HTTPNotFound(f"no function {function_id!r}")
    return Response(status=204)


@blueprint.get("/functions/<function_id>/sharing")
@operation("Whom the function is shared with (owner only)", errors=(403, 404))
def get_sharing(function_id: str) -> dict[str, Any]:
    record = _owned(function_id, "see its sharing")
    return sharing.read(access.FUNCTION, record.function_id, record.owner)


@blueprint.put("/functions/<function_id>/sharing")
@operation("Share the function: public, users, groups (replaces the sharing; owner only)", request="json",
           errors=(400, 403, 404, 413, 415))
def put_sharing(function_id: str) -> dict[str, Any]:
    record = _owned(function_id, "share it")
    return sharing.replace(access.FUNCTION, record.function_id, record.owner)
