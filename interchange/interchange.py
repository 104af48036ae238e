"""The interchange process: one per endpoint, between its upstream and its managers.

It connects out to its upstream (the local ``Endpoint`` client, or the service: see
``interchange.upstream``, which also keeps unacknowledged results in service mode) and
binds a ROUTER for managers. Its loop is a list of named steps: poll,
``on_monitor_events`` (upstream connections come and go), ``receive_from_upstream``,
``receive_from_managers``, ``tick`` (heartbeats, expiry and scaling, on a timer), then
``execute(scheduler.flush())`` and ``upstream.pump`` (re-sent results). All dispatch
decisions are the sans-IO ``Scheduler``'s and all scaling decisions the sans-IO
``Strategy``'s (carried out by ``interchange.scaling``); this module only moves frames.

User payloads are never deserialized here. Malformed or oversized messages are logged
and dropped; the interchange keeps serving. SIGTERM and SIGINT stop it cleanly:
managers are told to shut down and unacknowledged results go to the spool.

With ``manager_curve`` the managers' ROUTER is a CurveZMQ server that admits only the key
pairs this interchange made for its managers, and a manager may register only under the
id its key was made for (``interchange.manager_keys``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import zmq

from fabric import process, protocol
from fabric.config import InterchangeConfig, is_loopback
from fabric.errors import ProtocolError
from fabric.untrusted import printable
from fabric.protocol import (MAX_BATCH_BYTES, PROTOCOL_VERSION, CancelTasks, CommandReply, FunctionDefinitions, Heartbeat,
                             InterchangeRegistration, ManagerCommand, ManagerExiting, ManagerRegistration,
                             RegistrationReply, ResultBatch, ResultsAck, Shutdown, StatusReport, StatusRequest,
                             TaskBatch)
from interchange.manager_keys import ManagerKeys
from interchange.scaling import Scaling
from interchange.scheduler import (ForgetManager, FunctionsSubmitted, ManagerCommanded, ManagerJoined,
                                   ManagerLeft, ManagerResults, ManagerSeen, ResendResults, Scheduler, SendToManager,
                                   SendUpstream, TasksCancelled, TasksSubmitted, Tick)
from interchange.spool import ResultSpool
from interchange.upstream import Upstream

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_TURN = 256


class Interchange:
    def __init__(self, config: InterchangeConfig) -> None:
        self.config = config
        self.spool = ResultSpool(config.spool_dir) if config.spool_dir is not None else None
        self.scheduler = Scheduler(heartbeat_threshold=config.heartbeat_threshold,
                                   batch_bytes=min(MAX_BATCH_BYTES, config.max_payload_bytes),
                                   held_results=self.spool if self.spool is not None else (),
                                   report_started=config.service_mode,
                                   allowed_functions=config.allowed_functions)
        self.context: zmq.Context[Any] = zmq.Context.instance()
        self.manager_keys: ManagerKeys | None = None
        try:
            self._open_sockets(config)
        except BaseException:
            if self.manager_keys is not None:
                self.manager_keys.close()
            if self.spool is not None:
                self.spool.close()
            raise
        self.scaling = Scaling(config, self.manager_address, self.scheduler, manager_keys=self.manager_keys)
        self.poller = zmq.Poller()
        self.poller.register(self.upstream.socket, zmq.POLLIN)
        if self.upstream.monitor is not None:
            self.poller.register(self.upstream.monitor, zmq.POLLIN)
        self.poller.register(self.managers, zmq.POLLIN)
        self.wake_fd: int | None = None  # readable when a signal arrived (``stop_on_signals``)
        self.tick_interval = min(1.0, config.heartbeat_period / 2)
        now = time.monotonic()
        self.next_tick = now + self.tick_interval
        self.managers_beat = now
        self.malformed = 0
        self.stop_reason: str | None = None

    def _open_sockets(self, config: InterchangeConfig) -> None:
        self.upstream = Upstream(self.context, config, self.registration, self.spool)
        self.managers = self.context.socket(zmq.ROUTER)
        self.managers.setsockopt(zmq.LINGER, 0)
        self.managers.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        self.managers.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.managers.setsockopt(zmq.SNDHWM, 0)
        self.managers.setsockopt(zmq.RCVHWM, 0)
        if config.manager_curve_enabled:
            self.manager_keys = ManagerKeys(self.context, config.endpoint_id, config.provider.script_dir)
            self.manager_keys.secure(self.managers)
        host = f"tcp://{config.manager_host}"
        if config.manager_port:
            self.managers.bind(f"{host}:{config.manager_port}")
            port = config.manager_port
        else:
            port = self.managers.bind_to_random_port(host, *config.manager_port_range)
        self.manager_address = f"{host}:{port}"

    def registration(self) -> InterchangeRegistration:
        return InterchangeRegistration(endpoint_id=self.config.endpoint_id, hostname=socket.gethostname(),
                                       pid=os.getpid(), manager_address=self.manager_address)

    # -- the loop --------------------------------------------------------------------
    def start(self) -> None:
        self.upstream.start()
        self.scaling.start(time.monotonic())
        logger.info("interchange %s serving managers on %s%s", self.config.endpoint_id, self.manager_address,
                    " (CurveZMQ)" if self.manager_keys is not None else "")
        if self.manager_keys is None and not is_loopback(self.config.manager_host):
            logger.warning("managers connect to %s without CurveZMQ (manager_curve is off)", self.manager_address)

    def run(self) -> str:
        while self.stop_reason is None:
            timeout = max(0.0, self.next_tick - time.monotonic())
            events = dict(self.poller.poll(math.ceil(timeout * 1000)))
            if self.wake_fd is not None and self.wake_fd in events:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_fd, 64)
            if self.upstream.monitor is not None and self.upstream.monitor in events:
                self.upstream.on_monitor_events(time.monotonic())
            if self.upstream.socket in events:
                self.receive_from_upstream()
            if self.managers in events:
                self.receive_from_managers()
            now = time.monotonic()
            if now >= self.next_tick:
                self.tick(now)
            self.execute(self.scheduler.flush())
            self.upstream.pump(now)
            if self.upstream.unreachable:
                self.stop_reason = "upstream unreachable"
        return self.stop_reason

    def stop(self, reason: str) -> None:
        """Make ``run`` return after this loop turn (safe from a signal handler)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def receive_from_upstream(self) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                frames = self.upstream.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.upstream.heard(time.monotonic())
            message = self.decode(frames, "upstream")
            if message is not None:
                self.on_upstream_message(message)

    def on_upstream_message(self, message: protocol.Message) -> None:
        match message:
            case TaskBatch(tasks):
                self.execute(self.scheduler.handle(TasksSubmitted(tasks)))
            case ResultsAck(task_ids):
                self.upstream.acknowledged(task_ids)
            case FunctionDefinitions(function_ids, bodies):
                self.scheduler.handle(FunctionsSubmitted(function_ids, bodies))
            case Heartbeat():
                pass
            case StatusRequest(request_id):
                now = time.monotonic()
                status = {**self.scheduler.status(now), **self.scaling.status(now), "labels": self.config.labels}
                self.send_upstream(StatusReport(request_id=request_id, **status))
            case ManagerCommand(request_id, action, manager_id):
                self.on_manager_command(request_id, action, manager_id)
            case CancelTasks(task_ids):
                self.scheduler.handle(TasksCancelled(task_ids))
            case Shutdown(reason):
                self.stop_reason = f"shutdown requested: {reason}"
            case _:
                logger.warning("ignoring %s from upstream", type(message).__name__)

    def on_manager_command(self, request_id: int, action: str, manager_id: str) -> None:
        try:
            self.execute(self.scheduler.handle(ManagerCommanded(action, manager_id)))
        except (KeyError, ValueError) as exc:
            self.send_upstream(CommandReply(request_id=request_id, ok=False, message=f"{action} {manager_id}: {exc}"))
            return
        if action == "drain":
            self.scaling.manager_retired(manager_id)
        self.send_upstream(CommandReply(request_id=request_id, ok=True, message=f"{action} {manager_id}"))

    def receive_from_managers(self) -> None:
        now = time.monotonic()
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                identity, *frames = self.managers.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            except ValueError:  # a message without even an identity frame
                continue
            manager_id = identity.bytes.decode(errors="replace")
            message = self.decode(frames, f"manager {manager_id[:64]!r}")
            if message is not None:
                self.on_manager_message(manager_id, message, now, identity)

    def on_manager_message(self, manager_id: str, message: protocol.Message, now: float,
                           identity: Any = None) -> None:
        if isinstance(message, ResultBatch):
            if manager_id in self.scheduler.managers:
                self.scheduler.handle(ManagerResults(manager_id, message, now))
                return
        elif isinstance(message, ManagerRegistration):
            self.register_manager(manager_id, message, now, identity)
            return
        elif manager_id in self.scheduler.managers:
            self.scheduler.handle(ManagerSeen(manager_id, now))
            if isinstance(message, ManagerExiting):
                logger.info("manager %s leaving: %s (%d tasks it never started)", printable(manager_id),
                            printable(message.reason), len(message.unstarted))
                self.execute(self.scheduler.handle(ManagerLeft(manager_id, message.reason, message.unstarted)))
            return
        if not isinstance(message, ManagerExiting):
            logger.warning("message from unregistered manager %s: telling it to stop", printable(manager_id))
            self.send_manager(manager_id, Shutdown(reason="unknown manager: register first"))

    def register_manager(self, manager_id: str, registration: ManagerRegistration, now: float,
                         identity: Any = None) -> None:
        refusal = ""
        if registration.protocol_version != PROTOCOL_VERSION:
            refusal = f"protocol version {registration.protocol_version} is not {PROTOCOL_VERSION}"
        elif registration.manager_id != manager_id:
            refusal = "manager_id does not match the socket identity"
        elif self.manager_keys is not None and not self.manager_keys.user_id_matches(identity, manager_id):
            refusal = "its CurveZMQ key was made for another manager"
        self.send_manager(manager_id, RegistrationReply(
            accepted=not refusal, reason=refusal, heartbeat_period=self.config.heartbeat_period,
            heartbeat_threshold=self.config.heartbeat_threshold))
        if refusal:
            logger.warning("refused manager %s: %s", printable(manager_id), refusal)
            return
        logger.info("manager %s registered from %s (%d workers)", manager_id, printable(registration.hostname),
                    registration.worker_count)
        self.scheduler.handle(ManagerJoined(registration, now))
        self.scaling.manager_registered(registration, now)

    def tick(self, now: float) -> None:
        """Timer work: heartbeats both ways, expiry of silent managers, scaling."""
        self.next_tick = now + self.tick_interval
        self.scaling.tick(now)
        self.execute(self.scheduler.handle(Tick(now)))
        if now - self.managers_beat >= self.config.heartbeat_period:
            self.managers_beat = now
            for manager_id in list(self.scheduler.managers):
                self.send_manager(manager_id, Heartbeat())
        reason = self.upstream.tick(now)
        if reason is not None:
            self.stop(reason)

    def decode(self, frames: list[Any], source: str) -> protocol.Message | None:
        try:
            return protocol.decode(frames)
        except ProtocolError as exc:
            self.malformed += 1
            logger.warning("dropping malformed message from %s: %s", printable(source), printable(exc, 300))
            return None

    # -- actions ---------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, SendToManager):
                self.send_manager(action.manager_id, action.message)
            elif isinstance(action, SendUpstream):
                if isinstance(action.message, ResultBatch) and action.message.task_ids:
                    self.upstream.send_results(action.message)
                else:
                    self.send_upstream(action.message)
            elif isinstance(action, ResendResults):
                logger.debug("%d tasks came again whose results are held: re-sending those", len(action.task_ids))
                self.upstream.resend(action.task_ids)
            elif isinstance(action, ForgetManager):
                logger.warning("manager %s lost: %s", printable(action.manager_id), printable(action.reason))

    def send_upstream(self, message: protocol.Message) -> None:
        """Send without ever blocking: with no high-water mark, a send can only fail when
        there is no upstream connection (for a local upstream: it is gone, e.g. dropped for
        an oversized message; ``run`` then stops)."""
        self.upstream.send(message)

    def send_manager(self, manager_id: str, message: protocol.Message) -> None:
        try:
            self.managers.send_multipart([manager_id.encode(), *message.to_frames()], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the manager is gone; expiry handles its tasks
            logger.debug("cannot send to manager %s: %s", manager_id, exc)

    def close(self, reason: str) -> None:
        """Managers told to stop, unacknowledged results spooled, blocks cancelled, sockets closed."""
        for manager_id in list(self.scheduler.managers):
            self.send_manager(manager_id, Shutdown(reason=reason))
        try:
            self.upstream.close()
        finally:
            self.scaling.stop()
            self.managers.close()
            if self.manager_keys is not None:
                self.manager_keys.close()
            self.context.term()


@contextlib.contextmanager
def stop_on_signals(interchange: Interchange) -> Iterator[None]:
    """SIGTERM and SIGINT end ``interchange.run`` after its current loop turn (main thread only:
    elsewhere the caller handles signals). The handlers before are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        interchange.stop(f"terminated by {signal.Signals(signum).name}")

    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)  # wakes the poll at once
    interchange.wake_fd = read_fd
    interchange.poller.register(read_fd, zmq.POLLIN)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for number, handler in previous.items():
            signal.signal(number, handler)
        interchange.poller.unregister(read_fd)
        interchange.wake_fd = None
        os.close(read_fd)
        os.close(write_fd)


def main(config: InterchangeConfig, *, exit_with_parent: bool = True) -> str:
    """Run one interchange in this process until it stops; returns why it stopped.

    ``exit_with_parent``: the kernel ends this process when its parent exits (the local
    ``Endpoint``'s child); False for a detached interchange (``fabric endpoint start``).
    """
    if exit_with_parent:
        process.exit_with_parent()
    interchange = Interchange(config)
    reason = "interrupted"
    try:
        with stop_on_signals(interchange):
            interchange.start()
            reason = interchange.run()
    finally:
        interchange.close(reason)
    logger.info("interchange %s exiting: %s", config.endpoint_id, reason)
    return reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run as: python -m interchange --config JSON")
