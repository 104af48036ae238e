"""The interchange process: one per endpoint, between its upstream and its managers.

It connects a DEALER out to its upstream (the local ``Endpoint`` client, or the service)
and binds a ROUTER for managers. Its loop is a list of named steps: poll,
``receive_from_upstream``, ``receive_from_managers``, ``tick`` (heartbeats, expiry and
scaling, on a timer), then ``execute(scheduler.flush())``. All dispatch decisions are
the sans-IO ``Scheduler``'s and all scaling decisions the sans-IO ``Strategy``'s
(carried out by ``interchange.scaling``); this module only moves frames.

User payloads are never deserialized here. Malformed or oversized messages are logged
and dropped; the interchange keeps serving.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from typing import Any

import zmq

from fabric import protocol
from fabric.config import InterchangeConfig
from fabric.errors import ProtocolError
from fabric.process import exit_with_parent
from fabric.protocol import (MAX_BATCH_BYTES, PROTOCOL_VERSION, CancelTasks, CommandReply, FunctionDefinitions, Heartbeat,
                             InterchangeRegistration, ManagerCommand, ManagerExiting, ManagerRegistration,
                             RegistrationReply, ResultBatch, Shutdown, StatusReport, StatusRequest, TaskBatch)
from interchange.scaling import Scaling
from interchange.scheduler import (ForgetManager, FunctionsSubmitted, ManagerCommanded, ManagerJoined,
                                   ManagerLeft, ManagerResults, ManagerSeen, Scheduler, SendToManager,
                                   SendUpstream, TasksCancelled, TasksSubmitted, Tick)

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_TURN = 256


class Interchange:
    def __init__(self, config: InterchangeConfig) -> None:
        self.config = config
        self.scheduler = Scheduler(heartbeat_threshold=config.heartbeat_threshold,
                                   batch_bytes=min(MAX_BATCH_BYTES, config.max_payload_bytes))
        self.context: zmq.Context[Any] = zmq.Context.instance()
        self.upstream = self.context.socket(zmq.DEALER)
        self.upstream.setsockopt(zmq.IDENTITY, config.endpoint_id.encode())
        self.upstream.setsockopt(zmq.LINGER, 2000)
        self.upstream.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        self.upstream.setsockopt(zmq.SNDHWM, 0)  # flow control is ours (capacity, windows):
        self.upstream.setsockopt(zmq.RCVHWM, 0)  # ZeroMQ must never drop or block on its queues
        self.upstream.connect(config.upstream_address)
        self.managers = self.context.socket(zmq.ROUTER)
        self.managers.setsockopt(zmq.LINGER, 0)
        self.managers.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        self.managers.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.managers.setsockopt(zmq.SNDHWM, 0)
        self.managers.setsockopt(zmq.RCVHWM, 0)
        host = f"tcp://{config.manager_host}"
        if config.manager_port:
            self.managers.bind(f"{host}:{config.manager_port}")
            port = config.manager_port
        else:
            port = self.managers.bind_to_random_port(host, *config.manager_port_range)
        self.manager_address = f"{host}:{port}"
        self.scaling = Scaling(config, self.manager_address, self.scheduler)
        self.poller = zmq.Poller()
        self.poller.register(self.upstream, zmq.POLLIN)
        self.poller.register(self.managers, zmq.POLLIN)
        self.tick_interval = min(1.0, config.heartbeat_period / 2)
        now = time.monotonic()
        self.next_tick = now + self.tick_interval
        self.upstream_heard = self.upstream_sent = self.managers_beat = now
        self.malformed = 0
        self.stop_reason: str | None = None

    # -- the loop --------------------------------------------------------------------
    def start(self) -> None:
        self.send_upstream(InterchangeRegistration(
            endpoint_id=self.config.endpoint_id, hostname=socket.gethostname(), pid=os.getpid(),
            manager_address=self.manager_address))
        self.scaling.start(time.monotonic())
        logger.info("interchange %s serving managers on %s", self.config.endpoint_id, self.manager_address)

    def run(self) -> str:
        while self.stop_reason is None:
            timeout = max(0.0, self.next_tick - time.monotonic())
            events = dict(self.poller.poll(math.ceil(timeout * 1000)))
            if self.upstream in events:
                self.receive_from_upstream()
            if self.managers in events:
                self.receive_from_managers()
            now = time.monotonic()
            if now >= self.next_tick:
                self.tick(now)
            self.execute(self.scheduler.flush())
        return self.stop_reason

    def receive_from_upstream(self) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                frames = self.upstream.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.upstream_heard = time.monotonic()
            message = self.decode(frames, "upstream")
            if message is not None:
                self.on_upstream_message(message)

    def on_upstream_message(self, message: protocol.Message) -> None:
        match message:
            case TaskBatch(tasks):
                self.scheduler.handle(TasksSubmitted(tasks))
            case FunctionDefinitions(function_ids, bodies):
                self.scheduler.handle(FunctionsSubmitted(function_ids, bodies))
            case Heartbeat():
                pass
            case StatusRequest(request_id):
                now = time.monotonic()
                status = {**self.scheduler.status(now), **self.scaling.status(now)}
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
                self.on_manager_message(manager_id, message, now)

    def on_manager_message(self, manager_id: str, message: protocol.Message, now: float) -> None:
        if isinstance(message, ResultBatch):
            if manager_id in self.scheduler.managers:
                self.scheduler.handle(ManagerResults(manager_id, message, now))
                return
        elif isinstance(message, ManagerRegistration):
            self.register_manager(manager_id, message, now)
            return
        elif manager_id in self.scheduler.managers:
            self.scheduler.handle(ManagerSeen(manager_id, now))
            if isinstance(message, ManagerExiting):
                logger.info("manager %s leaving: %s", manager_id, message.reason)
                self.execute(self.scheduler.handle(ManagerLeft(manager_id, message.reason)))
            return
        if not isinstance(message, ManagerExiting):
            logger.warning("message from unregistered manager %s: telling it to stop", manager_id)
            self.send_manager(manager_id, Shutdown(reason="unknown manager: register first"))

    def register_manager(self, manager_id: str, registration: ManagerRegistration, now: float) -> None:
        refusal = ""
        if registration.protocol_version != PROTOCOL_VERSION:
            refusal = f"protocol version {registration.protocol_version} is not {PROTOCOL_VERSION}"
        elif registration.manager_id != manager_id:
            refusal = "manager_id does not match the socket identity"
        self.send_manager(manager_id, RegistrationReply(
            accepted=not refusal, reason=refusal, heartbeat_period=self.config.heartbeat_period,
            heartbeat_threshold=self.config.heartbeat_threshold))
        if refusal:
            logger.warning("refused manager %s: %s", manager_id, refusal)
            return
        logger.info("manager %s registered from %s (%d workers)", manager_id, registration.hostname,
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
        if now - self.upstream_sent >= self.config.heartbeat_period:
            self.send_upstream(Heartbeat())
        silent = now - self.upstream_heard
        if self.config.exit_with_upstream and silent > self.config.heartbeat_threshold:
            self.stop_reason = f"upstream silent for {silent:.1f} s"

    def decode(self, frames: list[Any], source: str) -> protocol.Message | None:
        try:
            return protocol.decode(frames)
        except ProtocolError as exc:
            self.malformed += 1
            logger.warning("dropping malformed message from %s: %s", source, exc)
            return None

    # -- actions ---------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, SendToManager):
                self.send_manager(action.manager_id, action.message)
            elif isinstance(action, SendUpstream):
                self.send_upstream(action.message)
            elif isinstance(action, ForgetManager):
                logger.warning("manager %s lost: %s", action.manager_id, action.reason)

    def send_upstream(self, message: protocol.Message) -> None:
        """Send without ever blocking: with no high-water mark, a send can only fail when
        the upstream connection is gone (e.g. dropped for an oversized message)."""
        try:
            self.upstream.send_multipart(message.to_frames(), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.stop_reason = "upstream unreachable"
            return
        self.upstream_sent = time.monotonic()

    def send_manager(self, manager_id: str, message: protocol.Message) -> None:
        try:
            self.managers.send_multipart([manager_id.encode(), *message.to_frames()], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the manager is gone; expiry handles its tasks
            logger.debug("cannot send to manager %s: %s", manager_id, exc)

    def close(self, reason: str) -> None:
        for manager_id in list(self.scheduler.managers):
            self.send_manager(manager_id, Shutdown(reason=reason))
        self.scaling.stop()
        self.upstream.close()
        self.managers.close()
        self.context.term()


def main(config: InterchangeConfig) -> str:
    """Entry point of an interchange process; returns why it stopped."""
    exit_with_parent()
    interchange = Interchange(config)
    reason = "interrupted"
    try:
        interchange.start()
        reason = interchange.run()
    finally:
        interchange.close(reason)
    logger.info("interchange %s exiting: %s", config.endpoint_id, reason)
    return reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run as: python -m interchange --config JSON")
