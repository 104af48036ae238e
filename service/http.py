"""The HTTP server: waitress, with idle connections bounded per peer and timed out quickly.

Waitress keeps up to ``connection_limit`` connections and closes idle ones after
``channel_timeout`` (checked every ``cleanup_interval``); at the limit it stops accepting,
so a peer holding that many idle connections (no token needed) stalls everyone until they
time out. It has no per-peer bound. ``BoundedServer`` is waitress's TCP server with its
accept path wrapped:

- a new connection from a peer (IP address) that already has ``max_connections_per_peer``
  closes that peer's longest-idle connection; past ``max_connections`` in all, the
  longest-idle connection of the peer with most connections goes. *Idle* means no request
  being served and no reply being sent: a connection waiting in a long-poll or streaming
  a reply is never closed this way, a half-sent request (slowloris) is idle. Only when no
  connection of theirs is idle is the new connection closed at once.
- idle connections are closed after ``idle_timeout`` seconds (waitress's
  ``channel_timeout``, whole seconds; checked several times per timeout, not every 30 s).

So a flood of idle connections costs the flooder its own oldest connections, and an
authenticated request from anyone is accepted at once. Keep-alive clients (urllib3, the SDK)
notice a connection the server closed before reusing it and open a new one.

Why wrap waitress rather than change servers: gunicorn's threaded worker keeps idle
keep-alive connections apart from its threads (``worker_connections``, ``keepalive``) but
has no per-peer bound either, holds a thread per long-poll just the same, and does not run
on Windows; cheroot has neither bound. The wrapper is about fifty lines on waitress's
documented server class, and keeps the one pure-Python server the service is tested on.
Several service processes (issue 18) each run a ``BoundedServer``: waitress's server takes
an already-bound socket, so forked workers sharing one listening socket or processes
binding with ``SO_REUSEPORT`` work unchanged; the bounds then hold per process. Behind a
reverse proxy every peer is the proxy: raise ``max_connections_per_peer`` there and let
the proxy bound its clients.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer

from service.config import ServiceConfig

logger = logging.getLogger(__name__)

CHECKS_PER_TIMEOUT = 4
"""How often per ``idle_timeout`` idle connections are looked for."""


class BoundedServer(TcpWSGIServer):
    """Waitress's TCP server with per-peer and total bounds enforced by closing idle connections."""

    next_channel_cleanup: float

    def __init__(self, application: Any, *, max_connections_per_peer: int, adj: Adjustments) -> None:
        self.max_connections_per_peer = max_connections_per_peer
        super().__init__(application, adj=adj)

    def readable(self) -> bool:
        """Waitress's idle check, and accept even at the limit (``handle_accept`` makes room)."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)  # marks connections idle past channel_timeout to be closed
        return bool(self.accepting)

    def handle_accept(self) -> None:
        before = set(self.active_channels)
        super().handle_accept()  # waitress accepts and makes the channel
        for fileno in set(self.active_channels) - before:
            self._bound(self.active_channels[fileno])

    def _bound(self, channel: Any) -> None:
        peer = _peer(channel)
        channels = [c for c in self.active_channels.values() if c is not channel]
        mine = [c for c in channels if _peer(c) == peer]
        if len(mine) >= self.max_connections_per_peer:
            self._make_room(channel, mine, f"{peer} has {len(mine) + 1} connections")
        elif len(channels) >= self.adj.connection_limit:
            counts: dict[str, int] = {}
            for other in channels:
                counts[_peer(other)] = counts.get(_peer(other), 0) + 1
            largest = max(counts, key=counts.__getitem__)
            self._make_room(channel, [c for c in channels if _peer(c) == largest],
                            f"{len(channels) + 1} connections in all")

    def _make_room(self, new: Any, candidates: list[Any], why: str) -> None:
        idle = [c for c in candidates if _idle(c)]
        victim = min(idle, key=lambda c: c.last_activity) if idle else new
        logger.info("closing a%s connection from %s: %s", "n idle" if idle else " new", _peer(victim), why)
        victim.handle_close()


def _peer(channel: Any) -> str:
    addr = channel.addr
    return str(addr[0]) if isinstance(addr, tuple) else str(addr)


def _idle(channel: Any) -> bool:
    return not channel.requests and not channel.total_outbufs_len and channel.connected


def create_http_server(application: Any, config: ServiceConfig, max_request_body_size: int) -> BoundedServer:
    """The service's HTTP server for ``application`` on ``config.host``:``config.port``."""
    adj = Adjustments(host=config.host, port=config.port, threads=config.threads, ident="fabric",
                      max_request_body_size=max_request_body_size, clear_untrusted_proxy_headers=True,
                      connection_limit=config.max_connections, channel_timeout=max(1, round(config.idle_timeout)),
                      cleanup_interval=max(1, round(config.idle_timeout / CHECKS_PER_TIMEOUT)),
                      asyncore_use_poll=True)  # select() cannot watch descriptors past 1023
    return BoundedServer(application, max_connections_per_peer=config.max_connections_per_peer, adj=adj)
