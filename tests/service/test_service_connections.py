"""A flood of idle TCP connections (no token needed) leaves the service prompt: a peer's
idle connections are bounded and time out quickly (real service process, real sockets)."""

from __future__ import annotations

import contextlib
import select
import socket
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
from tests.support import poll_until
from tests.support.service import Api, ServiceProcess


@contextlib.contextmanager
def idle_connections(url: str, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections to the service that send ``first_bytes`` (a half request, or
    nothing) and then say nothing more."""
    parsed = urllib.parse.urlsplit(url)
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((parsed.hostname, parsed.port))
            if first_bytes:
                sock.sendall(first_bytes)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("first_bytes", [b"", b"GET /v1/auth/whoami HTTP/1.1\r\nHost: x\r\n"],
                         ids=["silent", "half-request"])
def test_a_flood_of_idle_connections_leaves_an_authenticated_request_prompt(
        start_service: Callable[..., ServiceProcess], first_bytes: bytes) -> None:
    service = start_service()  # default limits
    api = Api(service.url, service.add_user("alice"))
    with idle_connections(service.url, 600, first_bytes) as flood:
        reply = api.get("/v1/auth/whoami")  # waitress alone held it until idle connections timed out (120 s)
        assert reply.status == 200 and reply.json()["name"] == "alice"
        poll_until(lambda: sum(closed_by_server(sock) for sock in flood) >= 600 - 64,
                   "all but the flood's newest 64 connections to be closed")


def test_idle_connections_are_closed_after_idle_timeout(start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service(idle_timeout=1.0)
    with idle_connections(service.url, 5) as idle:
        poll_until(lambda: all(closed_by_server(sock) for sock in idle), "the idle connections to be closed")
    api = Api(service.url, service.add_user("bob"))
    assert api.get("/v1/auth/whoami").status == 200
