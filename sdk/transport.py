"""The seam between ``Client`` and HTTP: a transport in httpx's ``BaseTransport`` shape.

A transport takes one ``Request`` and returns its ``Response`` (any status: ``Client`` maps
error answers to ``fabric.errors``, and retries the transient ones); when no answer comes
at all it raises ``fabric.errors.ServiceUnavailable``, which ``Client`` retries too. It
neither retries nor follows redirects itself. ``Urllib3Transport`` is the default: a pool
of keep-alive connections, safe to share between threads. Pass another to
``Client(transport=...)``, e.g. to record requests or to answer them without a network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import urllib3

from fabric.errors import ServiceUnavailable

__all__ = ["Request", "Response", "Transport", "Urllib3Transport"]

CONNECT_TIMEOUT = 10.0
"""At most this many seconds to open a connection, whatever the request's own timeout."""


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request: ``url`` is absolute, with its query; ``timeout`` bounds the answer (s)."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    timeout: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer: ``content`` is the whole body, as sent (the transport decodes nothing)."""

    status: int
    content: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    reason: str = ""


class Transport(Protocol):
    """What ``Client`` needs from HTTP (httpx's ``BaseTransport``: ``handle_request``, ``close``)."""

    def handle_request(self, request: Request) -> Response:
        """Send ``request`` once; raise ``ServiceUnavailable`` if no answer came."""
        ...

    def close(self) -> None:
        """Release the transport's connections."""
        ...


class Urllib3Transport:
    """HTTP through a ``urllib3.PoolManager`` (``maxsize`` keep-alive connections per host)."""

    def __init__(self, *, maxsize: int = 8) -> None:
        self._pool = urllib3.PoolManager(maxsize=maxsize, block=False)

    def handle_request(self, request: Request) -> Response:
        try:
            answer = self._pool.request(
                request.method, request.url, body=request.body, headers=dict(request.headers),
                timeout=urllib3.Timeout(connect=min(request.timeout, CONNECT_TIMEOUT), read=request.timeout),
                retries=False, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            url = urllib3.util.parse_url(request.url)
            raise ServiceUnavailable(f"cannot reach the service at {url.scheme}://{url.netloc}: {exc}") from exc
        return Response(answer.status, answer.data, answer.headers, answer.reason or "")

    def close(self) -> None:
        self._pool.clear()
