"""``/v1/functions``: register (id = content hash), list, get and delete functions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from fabric.serialize import function_id as content_hash
from service.api.common import b64decode, b64encode, current_user, field, json_body, services
from service.errors import BadRequest, NotFound, PayloadTooLarge
from service.openapi import operation
from service.store import FunctionRecord

blueprint = Blueprint("functions", __name__)


def _describe(record: FunctionRecord, *, body: bool = False) -> dict[str, Any]:
    described: dict[str, Any] = {"function_id": record.function_id, "name": record.name,
                                 "description": record.description, "created": record.created}
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
        raise PayloadTooLarge("function body", len(encoded) * 3 // 4, limit)
    body = b64decode(encoded, "body")
    if not body:
        raise BadRequest("the function body is empty")
    if len(body) > limit:
        raise PayloadTooLarge("function body", len(body), limit)
    function_id = content_hash(body)
    claimed = field(data, "function_id", str, required=False)
    if claimed is not None and claimed != function_id:
        raise BadRequest(f"function_id {claimed!r} is not the hash of the body ({function_id})")
    name = field(data, "name", str, required=False, default="")
    description = field(data, "description", str, required=False, default="")
    if len(name) > 256 or len(description) > 4096:
        raise BadRequest("name (256) or description (4096 characters) too long")
    record = services().store.put_function(current_user().user_id, function_id, name, description, body)
    return _describe(record)


@blueprint.get("/functions")
@operation("The caller's functions (without bodies)")
def list_functions() -> dict[str, Any]:
    return {"functions": [_describe(r) for r in services().store.list_functions(current_user().user_id)]}


@blueprint.get("/functions/<function_id>")
@operation("One function, with its serialized body (base64)", errors=(404,))
def get_function(function_id: str) -> dict[str, Any]:
    record = services().store.get_function(current_user().user_id, function_id)
    if record is None:
        raise NotFound(f"no function {function_id!r}")
    return _describe(record, body=True)


@blueprint.delete("/functions/<function_id>")
@operation("Delete a function (tasks already accepted still run)", response="empty", status=204, errors=(404,))
def delete_function(function_id: str) -> Response:
    if not services().store.delete_function(current_user().user_id, function_id):
        raise NotFound(f"no function {function_id!r}")
    return Response(status=204)
