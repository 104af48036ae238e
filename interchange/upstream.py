"""The interchange's connection to its upstream: the local ``Endpoint``, or the service.

``Upstream`` owns the DEALER that connects out (a CurveZMQ client when the configuration
has keys). For a local ``Endpoint`` it sends and receives, nothing more: the
registration goes out first, and a send that fails means the upstream is gone.

In *service mode* (``InterchangeConfig.spool_dir``) it outlives the service:

* ZeroMQ heartbeats and quick reconnects on the socket (``ZMQ_IMMEDIATE``: nothing is
  queued for a connection that does not exist); a socket monitor reports every
  connection (``EVENT_HANDSHAKE_SUCCEEDED``) and every loss (``EVENT_DISCONNECTED``).
* Every connection starts with a fresh ``InterchangeRegistration`` (the service opens a
  new session and re-sends the tasks it considers unfinished), then every result not yet
  acknowledged goes again, merged into batches within ``MAX_BATCH_BYTES`` and
  ``MAX_BATCH_TASKS``, at most ``RESEND_WINDOW`` batches awaiting their ``ResultsAck``.
* The upstream is *down* while disconnected or once silent for ``heartbeat_threshold``;
  results made meanwhile go to the spool on disk, unsent, and leave once it is back.
* Results sent are held in the ``ResultSpool`` until a ``ResultsAck`` names them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from fabric import protocol
from fabric.config import InterchangeConfig
from fabric.protocol import MAX_BATCH_BYTES, MAX_BATCH_TASKS, Heartbeat, InterchangeRegistration, ResultBatch
from interchange.spool import ResultSpool, Segment

logger = logging.getLogger(__name__)

RESEND_WINDOW = 4
"""Batches of re-sent results that may await their acknowledgement at once."""

RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 2000
MAX_HEARTBEAT_MS = 6_553_599  # ZMQ_HEARTBEAT_TTL's largest value

MONITORED = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
             | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class Upstream:
    def __init__(self, context: zmq.Context[Any], config: InterchangeConfig,
                 registration: Callable[[], InterchangeRegistration], spool: ResultSpool | None = None) -> None:
        self.config = config
        self.registration = registration
        self.spool = spool
        self.socket = context.socket(zmq.DEALER)
        if spool is None:  # the local Endpoint routes by our id; the service's ROUTER names each
            # connection itself and knows us by our CurveZMQ key, so a reconnect never collides
            # with a connection it still holds under the same name
            self.socket.setsockopt(zmq.IDENTITY, config.endpoint_id.encode())
        self.socket.setsockopt(zmq.LINGER, 2000)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        self.socket.setsockopt(zmq.SNDHWM, 0)  # flow control is ours (capacity, windows):
        self.socket.setsockopt(zmq.RCVHWM, 0)  # ZeroMQ must never drop or block on its queues
        if config.upstream_server_key is not None:
            assert config.upstream_public_key is not None and config.upstream_secret_key is not None
            self.socket.setsockopt(zmq.CURVE_SERVERKEY, config.upstream_server_key.encode("ascii"))
            self.socket.setsockopt(zmq.CURVE_PUBLICKEY, config.upstream_public_key.encode("ascii"))
            self.socket.setsockopt(zmq.CURVE_SECRETKEY, config.upstream_secret_key.encode("ascii"))
        self.monitor: zmq.Socket[Any] | None = None
        if spool is not None:
            self._configure_for_service()
            self.monitor = self.socket.get_monitor_socket(MONITORED)
        self.socket.connect(config.upstream_address)
        now = time.monotonic()
        self.last_heard = self.last_sent = now
        self.connected = False  # service mode: a connection is established
        self.up = False  # service mode: connected and not silent, so results are sent
        self.unreachable = False  # a send failed (local upstream: the end)
        self.connections = 0
        self.handshake_failure = 0
        self.batch_bytes = min(MAX_BATCH_BYTES, config.max_payload_bytes)
        self.resending: deque[Segment] = deque()
        self.awaiting: list[Any] = []  # first task id of each re-sent batch not acknowledged yet
        self.awaiting_since = now

    def _configure_for_service(self) -> None:
        period_ms = min(MAX_HEARTBEAT_MS, int(self.config.heartbeat_period * 1000))
        threshold_ms = min(MAX_HEARTBEAT_MS, int(self.config.heartbeat_threshold * 1000))
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, max(1, period_ms))
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, threshold_ms)
        self.socket.setsockopt(zmq.HEARTBEAT_TTL, threshold_ms)
        self.socket.setsockopt(zmq.CONNECT_TIMEOUT, threshold_ms)
        self.socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)

    # -- what the interchange calls --------------------------------------------------------
    def start(self) -> None:
        """A local upstream hears the registration at once (queued until connected); the
        service hears it on every connection, from ``on_monitor_events``."""
        if self.spool is None:
            self.send(self.registration())

    def send(self, message: protocol.Message) -> bool:
        """Send without ever blocking; False when there is no connection to send on."""
        try:
            self.socket.send_multipart(message.to_frames(), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            if self.spool is None:
                self.unreachable = True
            else:
                self._down("no connection to send on", connected=False)
            return False
        self.last_sent = time.monotonic()
        return True

    def send_results(self, batch: ResultBatch) -> None:
        """Results for the upstream: sent and held until acknowledged, or spooled while it is down."""
        if self.spool is None:
            self.send(batch)
        elif self.up and self.send(batch):
            self.spool.hold(batch)
        else:
            self.spool.store(batch)

    def resend(self, task_ids: list[Any]) -> None:
        """Tasks came again whose results are held: send those results once more."""
        if self.spool is not None and self.up:
            for batch in self.spool.results_for(task_ids):
                if not self.send(batch):
                    return

    def acknowledged(self, task_ids: list[Any]) -> None:
        if self.spool is not None:
            self.spool.ack(task_ids)

    def heard(self, now: float) -> None:
        """Any message from upstream: it is alive (and back, if it had gone silent)."""
        self.last_heard = now
        if self.spool is None or self.up:
            return
        if not self.connected:  # a message before its connection's event: the connection is there
            self._connected(now)
            return
        logger.info("upstream speaks again: re-sending %d unacknowledged results", len(self.spool))
        self.up = True
        self._plan_resend(now)

    def on_monitor_events(self, now: float) -> None:
        assert self.monitor is not None
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected(now)
            elif event == zmq.EVENT_DISCONNECTED:
                self._down("disconnected", connected=False)
            elif event != self.handshake_failure:  # the same failure every reconnect: say it once
                self.handshake_failure = event
                logger.warning("cannot connect to %s: %s (wrong keys, or not a fabric service?)",
                               self.config.upstream_address, zmq.Event(event).name)

    def tick(self, now: float) -> str | None:
        """Heartbeat, and notice silence; returns why the interchange must stop, if it must."""
        if now - self.last_sent >= self.config.heartbeat_period and (self.spool is None or self.connected):
            self.send(Heartbeat())
        silent = now - self.last_heard
        if self.spool is None:
            if self.unreachable:
                return "upstream unreachable"
            if self.config.exit_with_upstream and silent > self.config.heartbeat_threshold:
                return f"upstream silent for {silent:.1f} s"
        elif self.up and silent > self.config.heartbeat_threshold:
            self._down(f"silent for {silent:.1f} s", connected=True)
        return None

    def pump(self, now: float) -> None:
        """Carry on re-sending unacknowledged results, a window of batches at a time."""
        if not (self.up and self.resending and self.spool is not None):
            return
        spool = self.spool
        awaiting = [i for i in self.awaiting if i in spool]
        if len(awaiting) < len(self.awaiting) or not awaiting:
            self.awaiting_since = now
        elif now - self.awaiting_since > self.config.heartbeat_threshold:  # acks lost: carry on regardless
            logger.warning("no acknowledgement of re-sent results for %.1f s", now - self.awaiting_since)
            awaiting, self.awaiting_since = [], now
        self.awaiting = awaiting
        while self.resending and len(self.awaiting) < RESEND_WINDOW:
            batch = self._next_resend_batch(spool)
            if batch is None:
                break
            if not self.send(batch):
                return
            self.awaiting.append(batch.task_ids[0])
        if not self.resending:
            logger.info("re-sent every unacknowledged result; %d still await acknowledgement", len(spool))

    def close(self) -> None:
        """Close the socket; in service mode every unacknowledged result goes to disk first."""
        try:
            if self.spool is not None:
                self.spool.spill()
                if len(self.spool):
                    logger.info("%d unacknowledged results kept in %s", len(self.spool), self.spool.directory)
                self.spool.close()
                self.socket.setsockopt(zmq.LINGER, 0)  # what is in flight is spooled
        finally:
            if self.monitor is not None:
                self.socket.disable_monitor()
                self.monitor.close(linger=0)
            self.socket.close()

    # -- connection state ------------------------------------------------------------------
    def _connected(self, now: float) -> None:
        """A new connection: register (a new session at the service), then re-send what is unacknowledged."""
        if not self.send(self.registration()):
            return
        self.connections += 1
        self.connected = self.up = True
        self.handshake_failure = 0
        self.last_heard = now
        logger.info("connected to %s (connection %d); registered, re-sending %d unacknowledged results",
                    self.config.upstream_address, self.connections, len(self.spool or ()))
        self._plan_resend(now)

    def _down(self, reason: str, *, connected: bool) -> None:
        if self.up:
            logger.warning("upstream %s down (%s): results go to the spool until it is back",
                           self.config.upstream_address, reason)
        self.connected = self.connected and connected
        self.up = False
        self.resending.clear()
        self.awaiting = []

    def _plan_resend(self, now: float) -> None:
        assert self.spool is not None
        self.resending = deque(self.spool.pending())
        self.awaiting, self.awaiting_since = [], now

    def _next_resend_batch(self, spool: ResultSpool) -> ResultBatch | None:
        """The next segments' unacknowledged results, merged within the batch limits."""
        parts: list[ResultBatch] = []
        size = count = 0
        while self.resending:
            segment = self.resending[0]
            if parts and (size + segment.nbytes > self.batch_bytes or count + len(segment.live) > MAX_BATCH_TASKS):
                break
            self.resending.popleft()
            batch = spool.read(segment)
            if batch is not None:
                parts.append(batch)
                size += segment.nbytes
                count += len(batch)
        return ResultBatch.merge(parts) if parts else None
