"""The OpenAPI document, generated from the routes the app actually has.

Each view function is decorated with ``operation(...)``, which attaches what the route
table cannot know (summary, body formats, query parameters, error statuses).
``build_spec(app)`` walks ``app.url_map``: every registered route appears in the document
and a route without a description is an error, so the document cannot drift from the app.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask

F = TypeVar("F", bound=Callable[..., Any])

COMMON_ERRORS = (401, 429)
_MEDIA = {"json": "application/json", "msgpack": "application/msgpack"}
_ERROR_TEXT = {400: "Malformed request", 401: "Missing or unknown bearer token", 404: "No such resource for this user",
               413: "Payload, batch or request too large (decompressed, for a compressed body)",
               415: "Unsupported Content-Encoding", 429: "Rate limit exceeded",
               507: "No room left on the service's disk (nothing of the upload was kept)"}
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    request: str | None = None
    response: str = "json"
    status: int = 200
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, str, str], ...] = ()


def operation(summary: str, *, request: str | None = None, response: str = "json", status: int = 200,
              errors: tuple[int, ...] = (), query: tuple[tuple[str, str, str], ...] = ()) -> Callable[[F], F]:
    """Describe a view for the OpenAPI document (``request``/``response``: json, msgpack or None)."""
    described = Operation(summary, request, response, status, errors, query)

    def attach(view: F) -> F:
        view.openapi = described  # type: ignore[attr-defined]
        return view

    return attach


def openapi_path(rule: str) -> str:
    """``/v1/tasks/<task_id>`` -> ``/v1/tasks/{task_id}``."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def _operation(described: Operation, arguments: set[str], operation_id: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in sorted(arguments)]
    parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": text}
                   for name, kind, text in described.query]
    success: dict[str, Any] = {"description": "OK"}
    if described.response in _MEDIA:
        success["content"] = {_MEDIA[described.response]: {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(described.status): success}
    for status in sorted({*described.errors, *COMMON_ERRORS}):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    result: dict[str, Any] = {"operationId": operation_id, "summary": described.summary, "responses": responses}
    if parameters:
        result["parameters"] = parameters
    if described.request is not None:
        result["requestBody"] = {"required": True,
                                 "content": {_MEDIA[described.request]: {"schema": {"type": "object"}}}}
    return result


def build_spec(app: Flask, title: str = "fabric service", version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of ``app`` (``static`` excepted)."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        described = getattr(view, "openapi", None)
        if not isinstance(described, Operation):
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) has no OpenAPI description")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = _operation(
                described, set(rule.arguments), rule.endpoint)
    error_schema = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["type", "message", "request_id"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}}}}}
    responses = {f"E{status}": {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} for status, text in _ERROR_TEXT.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"Error": error_schema}, "responses": responses},
        "paths": dict(sorted(paths.items())),
    }
