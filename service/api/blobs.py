"""``/v1/blobs``: the data store of values passed by reference (``service.blobs``, ``fabric.data``).

``PUT /v1/blobs/<sha256>`` (the body: the blob's bytes, streamed to disk, never held in
memory) stores a blob for the caller: 201 ``{"hash", "size", "capability", "upload"}``
(``upload``: the capability with which a worker stores a task's large result as the caller,
``?capability=`` on this route, without a token); 400 if the
bytes do not hash to the name; 413 (with the limit) past ``max_request_bytes`` or the user's
quota, 507 if the disk is full: nothing is kept then. ``GET /v1/blobs/<sha256>/info`` says
whether the caller holds it (``size``, ``downloads``, and its ``capability``; 404 if not), so
a client uploads each value once. ``GET /v1/blobs/<sha256>`` streams it, to its owner (bearer
token) or to a worker holding its ``?capability=`` (no token); 404 for anyone else, or once
it was purged (unused for ``result_ttl``).
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from flask import Blueprint, Response, current_app, request

from service.api.common import current_user, services
from service.blobs import BlobStore, DiskFull, HashMismatch, TooLarge, is_hash
from service.errors import ApiError, InvalidField, NotFound, PayloadTooLarge
from service.openapi import operation

blueprint = Blueprint("blobs", __name__)

QUOTA_BYTES = 20 * 1024 ** 3
"""Bytes of blobs one user may hold at the service."""
PURGE_EVERY = 600.0
"""Seconds between purges of unused blobs (run by the uploads)."""

_lock = threading.Lock()


class InsufficientStorage(ApiError):
    status: ClassVar[int] = 507
    error_type: ClassVar[str] = "insufficient_storage"


def blob_store() -> BlobStore:
    """The app's blob store, made on first use in ``<data_dir>/blobs``."""
    extensions = current_app.extensions
    with _lock:
        store = extensions.get("fabric_blobs")
        if store is None:
            store = extensions["fabric_blobs"] = BlobStore(services().config.data_dir + "/blobs",
                                                           quota_bytes=QUOTA_BYTES)
            extensions["fabric_blobs_purged"] = time.time()
    return store  # type: ignore[no-any-return]


def _checked(digest: str) -> str:
    if not is_hash(digest):
        raise NotFound(f"no blob {digest!r}")
    return digest


def _purge_now_and_then(store: BlobStore) -> None:
    now = time.time()
    with _lock:
        due = now - current_app.extensions.get("fabric_blobs_purged", now) > PURGE_EVERY
        if due:
            current_app.extensions["fabric_blobs_purged"] = now
    if due:
        store.purge(now - services().config.result_ttl)


@blueprint.put("/blobs/<digest>")
@operation("Store a blob (the body, streamed) under its SHA-256", request=None, status=201,
           errors=(400, 404, 413, 507))
def upload(digest: str) -> tuple[dict[str, Any], int]:
    store = blob_store()
    capability = request.args.get("capability")
    owner = store.uploader(capability) if capability is not None else current_user().user_id
    if owner is None:
        raise NotFound(f"no blob store for capability {capability!r}")
    _checked(digest)
    length = request.content_length
    if length is None:
        raise InvalidField("Content-Length", "is missing: a blob's size must be known up front")
    try:
        size = store.put(owner, digest, request.stream, length, services().config.max_request_bytes)
    except TooLarge as exc:
        raise PayloadTooLarge(exc.what, exc.size, exc.limit) from exc
    except HashMismatch as exc:
        raise InvalidField("body", str(exc)) from exc
    except DiskFull as exc:
        raise InsufficientStorage(str(exc)) from exc
    _purge_now_and_then(store)
    return {"hash": digest, "size": size, "capability": store.capability(owner, digest),
            "upload": store.upload_capability(owner)}, 201


@blueprint.get("/blobs/<digest>/info")
@operation("Whether the caller holds a blob: its size, downloads and capability", errors=(404,))
def info(digest: str) -> dict[str, Any]:
    store, owner = blob_store(), current_user().user_id
    found = store.info(owner, _checked(digest)) if store.has(owner, digest) is not None else None
    if found is None:
        raise NotFound(f"no blob {digest!r}")
    return {**found, "capability": store.capability(owner, digest), "upload": store.upload_capability(owner)}


@blueprint.get("/blobs/<digest>")
@operation("A blob's bytes, streamed; with ?capability= (a worker) no bearer token is needed",
           response="binary", errors=(404,), query=(("capability", "string", "the blob's capability"),))
def fetch(digest: str) -> Response:
    store = blob_store()
    _checked(digest)
    capability = request.args.get("capability")
    owner = store.owner_of(capability, digest) if capability is not None else current_user().user_id
    opened = store.opened(owner, digest) if owner is not None else None
    if opened is None:
        raise NotFound(f"no blob {digest!r}")
    file, size = opened
    response = Response(_stream(file), mimetype="application/octet-stream", direct_passthrough=True)
    response.content_length = size
    return response


def _stream(file: Any) -> Any:
    with file:
        while chunk := file.read(1024 * 1024):
            yield chunk
