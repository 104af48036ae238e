"""What every blueprint needs: the service's parts, the caller, body parsing and replies.

Request bodies may be compressed: ``Content-Encoding: gzip`` or ``deflate`` (zlib, RFC 1950)
is decoded, with the output capped at ``max_request_bytes`` (past it: 413, however small
the compressed body; the whole output is never held beyond the cap). Another encoding is
answered 415, data that is not valid in its encoding (corrupt, truncated, trailing bytes) 400.

Every parsed body (JSON or msgpack) is checked whole before a route sees it (``checked``):
nested at most ``MAX_DEPTH`` deep, strings (and keys) valid Unicode (no lone surrogates, which
JSON's ``\\ud800`` escapes can make), numbers finite (JSON's ``NaN``/``Infinity``) and
integers within 64 bits. Anything else is 400 ``bad_request`` naming the field (``field``
in the error body, e.g. ``resource_spec.priority`` or ``users[0]``): such values cannot be
stored or sent on, and must never reach the store as a 500.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import uuid
import zlib
from typing import Any

import msgpack
from flask import Response, current_app, g, request

from fabric.rest import Oversized
from service.auth import IdentityProvider, RateLimiter
from service.config import ServiceConfig
from service.errors import (HTTPBadRequest, HTTPInvalidField, HTTPPayloadTooLarge, HTTPRateLimited,
                            HTTPUnsupportedMediaType)
from service.events import Dispatcher, ResultSignal
from service.polls import PollSlots
from service.store import Store, User

MSGPACK = "application/msgpack"
MAX_DEPTH = 32
"""How deeply a request body's maps and lists may nest (the deepest valid body nests 3)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?|[\[{\]}]')
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclasses.dataclass(frozen=True, slots=True)
class Services:
    """The parts of the service a request may use (``current_app.extensions["fabric"]``)."""

    config: ServiceConfig
    store: Store
    identity: IdentityProvider
    limiter: RateLimiter
    dispatcher: Dispatcher
    signal: ResultSignal
    polls: PollSlots
    forwarder_address: str
    server_public_key: str


def services() -> Services:
    return current_app.extensions["fabric"]


def current_user() -> User:
    return g.user


def charge_rate_limit() -> None:
    """Count this request against its user's rate limit now (429 past it): for the routes
    whose cost is known only once they answer (a long-poll that waited costs nothing)."""
    wait = services().limiter.acquire(current_user().user_id)
    if wait > 0:
        raise HTTPRateLimited(wait)


def request_body() -> bytes:
    """The request body, decoded as its ``Content-Encoding`` says (none, gzip or deflate)."""
    raw = request.get_data(cache=False)  # 413 past the request limit
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise HTTPUnsupportedMediaType(
            f"Content-Encoding {encoding[:64]!r} is not supported (use gzip, deflate or none)")
    return decompress(raw, wbits, services().config.max_request_bytes, encoding)


def decompress(data: bytes, wbits: int, limit: int, encoding: str) -> bytes:
    """``data`` inflated (``zlib`` ``wbits``), never more than ``limit`` bytes of it (413 past it)."""
    decoder = zlib.decompressobj(wbits)
    try:
        body = decoder.decompress(data, limit + 1)
    except zlib.error as exc:
        raise HTTPBadRequest(f"the body is not valid {encoding} data: {exc}") from None
    if len(body) > limit:
        raise HTTPPayloadTooLarge(Oversized.DECOMPRESSED_REQUEST_BODY, len(body), limit)
    if not decoder.eof:
        raise HTTPBadRequest(f"the {encoding} body is truncated")
    if decoder.unused_data:
        raise HTTPBadRequest(f"the {encoding} body has {len(decoder.unused_data)} bytes after its end")
    return body


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (400 if it is not one)."""
    raw = request_body()
    try:
        data = json.loads(raw)
    except RecursionError:  # nested far past MAX_DEPTH (the parser gave up)
        raise HTTPInvalidField(_too_deep_field(raw), f"nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPBadRequest(f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise HTTPBadRequest("the body must be a JSON object")
    return checked(data)


def msgpack_body(max_bin_len: int) -> dict[str, Any]:
    """The request body as a msgpack map (400 if it is not one)."""
    raw = request_body()
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True,
                               max_bin_len=max_bin_len, max_str_len=1024 * 1024)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many types for malformed input
        raise HTTPBadRequest(f"the body is not a valid msgpack map: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPBadRequest("the body must be a msgpack map")
    return checked(data)


def checked(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` if every value in it can be stored and sent on (see the module docstring);
    ``HTTPInvalidField`` (400) naming the first field that cannot."""
    stack: list[tuple[Any, str, Any, int]] = [(body, "", None, 0)]  # (value, parent's path, key, depth)
    while stack:
        value, parent, key, depth = stack.pop()
        kind = type(value)
        problem = None
        if kind is str:
            if not value.isascii() and not _encodable(value):
                problem = "is not valid Unicode (a lone surrogate)"
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                problem = "is an integer beyond 64 bits"
        elif kind is float:
            if not math.isfinite(value):
                problem = "is not a finite number"
        elif kind is dict or kind is list:
            path = _path(parent, key)
            if depth >= MAX_DEPTH:
                problem = f"nests deeper than {MAX_DEPTH} levels"
            elif kind is dict:
                for name, item in value.items():
                    if type(name) is str and not name.isascii() and not _encodable(name):
                        raise HTTPInvalidField(_path(path, name), "is not valid Unicode (a lone surrogate)")
                    stack.append((item, path, name, depth + 1))
            elif not _plain(value):
                stack.extend((item, path, i, depth + 1) for i, item in enumerate(value))
        if problem is not None:
            raise HTTPInvalidField(_path(parent, key), problem)
    return body


def _plain(items: list[Any]) -> bool:
    """Whether ``items`` are all bytes, or all valid text (a batch's args, its function ids):
    checked at C speed, since such lists are as long as batches."""
    types = set(map(type, items))
    if types == {bytes}:
        return True
    if types == {str}:
        text = "".join(items)
        return text.isascii() or _encodable(text)
    return False


def _path(parent: str, key: Any) -> str:
    """The path of ``parent[key]``: ``a.b``, ``a[0]`` (keys shown printable, bounded)."""
    if key is None:
        return parent
    if type(key) is int:
        return f"{parent}[{key}]"
    name = str(key) if type(key) is str and key.isprintable() else ascii(key)[1:-1]
    return f"{parent}.{name[:64]}" if parent else name[:64]


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep_field(raw: bytes) -> str:
    """The top-level field of a JSON object in which nesting first passes ``MAX_DEPTH``."""
    depth, key = 0, ""
    for match in _JSON_TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                return key or "(the body)"
        elif token in (b"]", b"}"):
            depth -= 1
        elif match.group(1) and depth == 1:
            key = token[1:token.rindex(b'"')].decode("utf-8", "replace")[:64]
    return key or "(the body)"


def msgpack_response(data: dict[str, Any], status: int = 200) -> Response:
    return Response(msgpack.packb(data, use_bin_type=True), status=status, mimetype=MSGPACK)


def field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True,
          default: Any = None) -> Any:
    """``data[name]``, checked to be of ``kind`` (400 if missing or wrong)."""
    if name not in data or data[name] is None:
        if required:
            raise HTTPInvalidField(name, "is missing")
        return default
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise HTTPInvalidField(name, f"has the wrong type ({type(value).__name__})")
    return value


def uuid_text(value: str, what: str) -> str:
    """``value`` if it is a UUID in canonical text form (400 otherwise)."""
    try:
        if str(uuid.UUID(value)) == value:
            return value
    except (ValueError, TypeError):
        pass
    raise HTTPInvalidField(what, "must be a UUID in canonical form")


def b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPInvalidField(what, "is not valid base64") from None


def b64encode(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def query_number(name: str, default: float, low: float, high: float, *, integer: bool = False) -> Any:
    """A numeric query parameter, clamped to ``[low, high]`` (400 if not a number)."""
    text = request.args.get(name)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise HTTPBadRequest(f"query parameter {name!r} must be a number") from None
    if value != value:  # NaN
        raise HTTPBadRequest(f"query parameter {name!r} must be a number")
    return min(high, max(low, value))
