"""The Flask app: ``create_app(config)`` wires the store, identity, limits and blueprints.

Every request gets a request id (``X-Request-Id``), must carry ``Authorization: Bearer``
(401 otherwise) and counts against its user's rate limit (429), except a result long-poll
that waited (``service.polls``). Every error is JSON:
``{"error": {"type", "message", "request_id"}}`` with its HTTP status; unexpected
exceptions are logged and answered with a 500 that reveals nothing.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from fabric.rest import ErrorType, Oversized
from fabric.logs import set_request_id
from fabric.untrusted import printable
from service.api import BLUEPRINTS
from service.api.common import Services, services
from service.auth import IdentityProvider, RateLimiter, make_identity
from service.config import ServiceConfig
from service.errors import HTTPError, HTTPRateLimited, HTTPUnauthorized, StoreError
from service.events import Dispatcher, NoDispatcher, ResultSignal
from service.keys import server_keys
from service import dashboard
from service.metrics import install as install_metrics
from service.openapi import build_spec, operation
from service.polls import PollSlots
from service.store import SQLiteStore, Store

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
CHARGED_ON_ANSWER = frozenset({"task_groups.results", "results.poll"})
"""Long-poll routes: refused when their user has no token left, but they take one only if
they answer without waiting."""
_HTTP_TYPES = {400: ErrorType.BAD_REQUEST, 401: ErrorType.UNAUTHORIZED, 403: ErrorType.FORBIDDEN,
               404: ErrorType.NOT_FOUND, 405: ErrorType.METHOD_NOT_ALLOWED, 413: ErrorType.PAYLOAD_TOO_LARGE,
               415: ErrorType.UNSUPPORTED_MEDIA_TYPE, 429: ErrorType.RATE_LIMITED}


def create_app(config: ServiceConfig, *, store: Store | None = None, identity: IdentityProvider | None = None,
               dispatcher: Dispatcher | None = None, signal: ResultSignal | None = None,
               forwarder_address: str | None = None) -> Flask:
    """The service's WSGI app. Parts not given are made from ``config`` (a SQLite store
    in its data directory, the identity provider it names, no forwarder in this process)."""
    app = Flask("service", static_folder=None)
    signal = signal or ResultSignal()
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if store is None:
        store = SQLiteStore(config.database_path, synchronous=config.sqlite_synchronous)
    app.extensions["fabric"] = Services(
        config=config, store=store, identity=identity or make_identity(config, store),
        limiter=RateLimiter(config.rate_limit, config.rate_burst), dispatcher=dispatcher or NoDispatcher(),
        signal=signal, polls=PollSlots(signal, config.poll_capacity, config.max_polls_per_user),
        forwarder_address=forwarder_address or f"tcp://{config.forwarder_host}:{config.forwarder_port}",
        server_public_key=server_keys(config.keys_dir).public)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    app.add_url_rule(f"{API_PREFIX}/openapi.json", "openapi", _openapi)
    app.before_request(_authenticate)
    app.teardown_request(_forget_request_id)
    app.after_request(_tag_response)
    app.register_error_handler(HTTPError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(Exception, _internal_error)
    install_metrics(app)
    app.register_blueprint(dashboard.pages)
    app.register_blueprint(dashboard.api, url_prefix=API_PREFIX)
    app.extensions["fabric_openapi"] = build_spec(app)  # fails here if a route is undescribed
    return app


@operation("This OpenAPI document")
def _openapi() -> Response:
    return jsonify(current_app.extensions["fabric_openapi"])


def _authenticate() -> None:
    g.request_id = uuid.uuid4().hex
    set_request_id(g.request_id)  # on every log line of this request (fabric.logs)
    if request.endpoint in ("blobs.fetch", "blobs.upload") and "capability" in request.args:
        return  # a worker's fetch or result: the capability is checked by the view (service.api.blobs)
    if request.endpoint in dashboard.PUBLIC_VIEWS:
        return  # the dashboard's page and script: no data, the token is sent by its script
    if request.endpoint == "metrics.metrics_view" and services().config.metrics_public:
        return  # an open /metrics (the metrics_public setting): a scraper needs no token
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPUnauthorized("send an 'Authorization: Bearer <token>' header")
    user = services().identity.authenticate(token.strip())
    if user is None:
        raise HTTPUnauthorized("the bearer token is not valid")
    g.user = user
    limiter = services().limiter
    wait = limiter.wait_time(user.user_id) if request.endpoint in CHARGED_ON_ANSWER else limiter.acquire(user.user_id)
    if wait > 0:
        raise HTTPRateLimited(wait)


def _forget_request_id(error: BaseException | None) -> None:
    set_request_id(None)


def _tag_response(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None,
           details: dict[str, object] | None = None) -> Response:
    if "request_id" not in g:
        g.request_id = uuid.uuid4().hex
    response = jsonify({"error": {**(details or {}), "type": kind, "message": message, "request_id": g.request_id}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _api_error(error: HTTPError) -> Response:
    headers: dict[str, Any] = {}
    if isinstance(error, HTTPUnauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, HTTPRateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return _error(error.status, error.error_type, error.message, headers, error.details())


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 413:
        limit = services().config.max_request_bytes
        return _error(status, ErrorType.PAYLOAD_TOO_LARGE, f"the request body exceeds the limit of {limit} bytes",
                      details={"what": Oversized.REQUEST_BODY, "size": request.content_length or 0, "limit": limit})
    return _error(status, _HTTP_TYPES.get(status, ErrorType.HTTP_ERROR), error.description or error.name)


def _store_error(error: StoreError) -> Response:
    logger.error("store failure in %s %s: %s", request.method, printable(request.path), error)
    return _error(503, ErrorType.STORE_UNAVAILABLE, "the service's store is unavailable; retry later")


def _internal_error(error: Exception) -> Response:
    logger.exception("unexpected error in %s %s", request.method, printable(request.path))
    return _error(500, ErrorType.INTERNAL_ERROR, "the service failed to handle the request")
