"""The manager process: one per node, between the interchange and the node's workers.

``Manager.start`` discovers accelerators once, plans each worker's pinning
(``plan_worker_env``), starts the workers and registers with the interchange. Its loop
is a list of named steps: poll, ``receive_from_interchange``, ``receive_from_workers``,
``reap_workers``, ``beat``, then ``execute`` what the ``ManagerScheduler`` decided.

The manager never unpickles user payloads. It leaves in one of two ways:

* **Cleanly** on ``Shutdown``, on SIGTERM (a batch scheduler ending its job), once
  drained, or when its registration is refused: its workers begin no more tasks (the
  stop flag of ``fabric.control``), finish the one they are on within ``STOP_GRACE``
  (else they are killed), their results go up, and its goodbye (``ManagerExiting``)
  lists every task no worker began, which the interchange runs elsewhere at once.
* **Abandoning** its work once its interchange is gone: its parent exited (the kernel's
  parent-death signal: the interchange of a local block), its connection to the
  interchange closed (a socket monitor: the interchange process died, wherever it ran),
  or the interchange said nothing for ``heartbeat_threshold`` seconds (its node died or
  hangs). The stop flag is set and the workers are killed at once, from the signal
  handler itself for a parent-death signal: no task begins after the manager noticed,
  and prefetched tasks are dropped unstarted (the service sends the endpoint's
  unfinished tasks again when it reconnects).

With ``drain_at`` (its job's walltime, less a margin) it drains itself then: it starts no
more tasks from its buffer, gives those back (the interchange re-queues them when it says
goodbye), finishes what its workers hold and exits before the scheduler would kill it.
With ``curve_key_file`` its connection to the interchange is CurveZMQ, with the key pair
the interchange made for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
import zmq
from zmq.utils.monitor import recv_monitor_message

from fabric import protocol
from fabric.config import ManagerConfig
from fabric.control import WorkerControl
from fabric.errors import ConfigError, ProtocolError
from fabric.process import child_environment, exit_with_parent, parent_alive, pidfd, spawn
from fabric.streams import MessageStream, stream_pair
from fabric.protocol import (MAX_BATCH_BYTES, PROTOCOL_VERSION, Drain, FunctionDefinitions, Heartbeat, ManagerExiting,
                             ManagerRegistration, RegistrationReply, ResultBatch, Shutdown, TaskBatch,
                             WorkerReady)
from manager.accelerators import discover_accelerators, plan_worker_env
from manager.scheduler import (DrainRequested, Exit, KillWorker, ManagerScheduler, ReportResults, SendTasks,
                               StartWorker, StopRequested, TasksArrived, Tick, WorkerDied, WorkerResults,
                               WorkerStarted)

logger = logging.getLogger(__name__)

DEATH_GRACE = 0.05
"""Seconds between a worker's exit and its tasks being re-queued, so results it sent
just before dying are still read."""

MAX_MESSAGES_PER_TURN = 256

STOP_GRACE = 2.0
"""Seconds a cleanly leaving manager gives its workers to finish the task they are on."""


class Manager:
    def __init__(self, config: ManagerConfig, parent_pid: int | None = None) -> None:
        self.config = config
        self.parent_pid = parent_pid  # its death means the interchange is gone (a local block)
        self.hostname = socket.gethostname()
        self.scheduler = ManagerScheduler(workers=config.workers, prefetch=config.prefetch,
                                          hostname=self.hostname, now=time.monotonic(),
                                          batch_bytes=min(MAX_BATCH_BYTES, config.max_result_bytes))
        self.functions: dict[str, Any] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.indices: dict[str, int] = {}
        self.control = WorkerControl.create(config.workers)
        self.pidfds: dict[int, str] = {}
        self.dying: list[tuple[float, str, int | None]] = []
        self.generation = 0
        self.heartbeat_period = config.heartbeat_period
        self.heartbeat_threshold = config.heartbeat_threshold
        self.last_heard = self.last_sent = time.monotonic()
        self.registered = False
        self.exit_reason: str | None = None
        self.abandoned = False  # the interchange is gone: nothing to finish, nobody to tell
        self.stop_deadline: float | None = None
        self.walltime_draining = False
        curve_keys = read_key_file(config.curve_key_file) if config.curve_key_file is not None else None
        self.context: zmq.Context[Any] = zmq.Context.instance()
        self.interchange = self.context.socket(zmq.DEALER)
        self.interchange.setsockopt(zmq.IDENTITY, config.manager_id.encode())
        self.interchange.setsockopt(zmq.LINGER, 2000)
        self.interchange.setsockopt(zmq.SNDHWM, 0)  # flow control is ours (capacity)
        self.interchange.setsockopt(zmq.RCVHWM, 0)
        if curve_keys is not None and config.curve_server_key is not None:
            self.interchange.curve_serverkey = config.curve_server_key.encode("ascii")
            self.interchange.curve_publickey, self.interchange.curve_secretkey = curve_keys
        self.monitor = self.interchange.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.interchange.connect(config.interchange_address)
        self.streams: dict[str, MessageStream] = {}
        self.stream_owner: dict[int, str] = {}
        self.poller = zmq.Poller()
        self.poller.register(self.interchange, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.signals, self.signals_in = socket.socketpair()  # set_wakeup_fd: a signal wakes the poll
        for end in (self.signals, self.signals_in):
            end.setblocking(False)
        self.poller.register(self.signals.fileno(), zmq.POLLIN)
        devices = config.accelerators
        if devices is None:
            devices = discover_accelerators(os.environ)
        self.accelerators = list(devices)
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        self.plans = plan_worker_env(config.workers, self.accelerators, config.cpu_affinity, available_cpus=cpus)

    # -- start-up --------------------------------------------------------------------
    def start(self) -> None:
        for index in range(self.config.workers):
            self.start_worker(index)
        self.send(ManagerRegistration(
            manager_id=self.config.manager_id, hostname=self.hostname, pid=os.getpid(),
            cores=os.cpu_count() or 1, memory=psutil.virtual_memory().total,
            accelerators=self.accelerators, python_version=platform.python_version(),
            protocol_version=PROTOCOL_VERSION, worker_count=self.config.workers,
            prefetch=self.config.prefetch if self.config.prefetch is not None else -1,
            capacity=self.scheduler.capacity, block_id=self.config.block_id,
        ))

    def start_worker(self, index: int) -> None:
        self.generation += 1
        worker_id = f"{index}.{self.generation}"
        plan = self.plans[index]
        ours, theirs = stream_pair()
        args = ["--id", worker_id, "--fd", str(theirs.fileno()), "--manager-pid", str(os.getpid()),
                "--max-result-bytes", str(self.config.max_result_bytes),
                "--control-fd", str(self.control.fd), "--index", str(index)]
        if plan.cpus:
            args += ["--cpus", ",".join(map(str, plan.cpus))]
        self.control.reset(index)
        process = spawn("worker", args, env=child_environment(plan.env), python=self.config.python,
                        pass_fds=(theirs.fileno(), self.control.fd))
        theirs.close()
        stream = MessageStream(ours)
        self.streams[worker_id] = stream
        self.stream_owner[stream.fileno()] = worker_id
        self.poller.register(stream.fileno(), zmq.POLLIN)
        self.processes[worker_id] = process
        self.indices[worker_id] = index
        self.scheduler.add_worker(worker_id, index)
        fd = pidfd(process)
        if fd is not None:
            self.pidfds[fd] = worker_id
            self.poller.register(fd, zmq.POLLIN)
        logger.debug("started worker %s (pid %d)", worker_id, process.pid)

    # -- the loop --------------------------------------------------------------------
    def run(self) -> str:
        while self.exit_reason is None:
            self.turn()
        if not self.abandoned:
            self.wind_down()
        return self.exit_reason

    def turn(self) -> None:
        events = dict(self.poller.poll(math.ceil(self.poll_timeout() * 1000)))
        now = time.monotonic()
        self.check_walltime()
        self.execute(self.scheduler.handle(Tick(now)))
        if self.signals.fileno() in events:
            with contextlib.suppress(BlockingIOError):
                self.signals.recv(4096)
        if self.monitor in events:
            self.on_monitor_events()
        if self.interchange in events:
            self.receive_from_interchange()
        self.receive_from_workers(events)
        self.reap_workers(events, now)
        if not self.abandoned:
            self.execute(self.scheduler.flush())
        self.beat(now)

    def wind_down(self) -> None:
        """Leave cleanly: workers begin nothing more and get ``STOP_GRACE`` seconds to finish
        the task they are on; their results still go up (``close`` then says goodbye)."""
        self.control.stop()
        self.scheduler.handle(StopRequested())
        for worker_id in list(self.streams):  # an idle worker waits for a message, not a task
            self.send_worker(worker_id, Shutdown(reason=self.exit_reason or "stopping"))
        self.stop_deadline = time.monotonic() + STOP_GRACE
        while (self.processes or self.dying) and not self.abandoned and time.monotonic() < self.stop_deadline:
            self.turn()

    def abandon(self, reason: str) -> None:
        """The interchange is gone: no worker begins another task, and they are killed now
        (safe in a signal handler: it touches no state the loop may be changing)."""
        self.control.stop()
        self.abandoned = True
        if self.exit_reason is None or not self.exit_reason.startswith("interchange gone"):
            self.exit_reason = f"interchange gone: {reason}"
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def on_monitor_events(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_DISCONNECTED and self.registered and not self.abandoned:
                self.abandon("its connection closed")

    def poll_timeout(self) -> float:
        timeout = self.heartbeat_period / 2 if not self.dying else DEATH_GRACE
        if self.stop_deadline is not None:
            timeout = min(timeout, max(0.0, self.stop_deadline - time.monotonic()))
        deadline = self.scheduler.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        if self.config.drain_at is not None and not self.walltime_draining:
            timeout = min(timeout, max(0.0, self.config.drain_at - time.time()))
        return timeout

    def check_walltime(self) -> None:
        """At ``drain_at``: keep what the workers hold, give back the rest, drain."""
        if self.walltime_draining or self.config.drain_at is None or time.time() < self.config.drain_at:
            return
        self.walltime_draining = True
        given_back = len(self.scheduler.buffer)
        self.scheduler.buffer.clear()  # never started: re-queued by the interchange when we leave
        self.scheduler.handle(DrainRequested())
        logger.info("the job's walltime is near: draining (%d unstarted tasks go back)", given_back)

    def receive_from_interchange(self) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                frames = self.interchange.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.last_heard = time.monotonic()
            try:
                message = protocol.decode(frames)
            except ProtocolError as exc:
                logger.warning("dropping malformed message from the interchange: %s", exc)
                continue
            self.on_interchange_message(message)

    def on_interchange_message(self, message: protocol.Message) -> None:
        match message:
            case TaskBatch(tasks):
                if not self.walltime_draining:  # else left unstarted: re-queued when we leave
                    self.execute(self.scheduler.handle(TasksArrived(tasks)))
            case FunctionDefinitions(function_ids, bodies):
                self.functions.update(zip(function_ids, bodies))
            case Heartbeat():
                pass
            case RegistrationReply(accepted, reason, period, threshold):
                if not accepted:
                    self.exit_reason = f"registration refused: {reason}"
                self.registered = True
                self.heartbeat_period, self.heartbeat_threshold = period, threshold
            case Drain():
                logger.info("draining")
                self.scheduler.handle(DrainRequested())
            case Shutdown(reason):
                self.exit_reason = f"shutdown: {reason}"
            case _:
                logger.warning("ignoring %s from the interchange", type(message).__name__)

    def receive_from_workers(self, events: dict[Any, int]) -> None:
        for fd, worker_id in list(self.stream_owner.items()):
            flags = events.get(fd, 0)
            if not flags:
                continue
            stream = self.streams[worker_id]
            if flags & zmq.POLLOUT:
                self.flush_worker(worker_id)
            if not flags & (zmq.POLLIN | zmq.POLLERR):
                continue
            try:
                messages = [protocol.decode(frames) for frames in stream.receive()]
            except (ProtocolError, OSError) as exc:
                logger.warning("closing the stream of worker %s: %s", worker_id, exc)
                messages = []
                stream.closed = True
            for message in messages:
                if isinstance(message, ResultBatch):
                    self.scheduler.handle(WorkerResults(worker_id, message))
                elif isinstance(message, WorkerReady):
                    self.scheduler.handle(WorkerStarted(worker_id))
            if stream.closed:  # the worker exited; reap_workers reports it
                self.close_stream(worker_id)

    def reap_workers(self, events: dict[Any, int], now: float) -> None:
        """Notice exited workers; tell the scheduler after ``DEATH_GRACE``."""
        for fd in [fd for fd in events if fd in self.pidfds]:
            self.poller.unregister(fd)
            os.close(fd)
            worker_id = self.pidfds.pop(fd)
            self.dying.append((now, worker_id, self.processes.pop(worker_id).wait()))
        if not self.pidfds:  # no pidfd support: poll the processes
            for worker_id, process in list(self.processes.items()):
                if process.poll() is not None:
                    del self.processes[worker_id]
                    self.dying.append((now, worker_id, process.returncode))
        while self.dying and now - self.dying[0][0] >= DEATH_GRACE:
            _, worker_id, code = self.dying.pop(0)
            if self.exit_reason is None:
                logger.warning("worker %s exited with code %s", worker_id, code)
            self.worker_died(worker_id, code)

    def worker_died(self, worker_id: str, code: int | None) -> None:
        began = self.control.began(self.indices.pop(worker_id))
        self.execute(self.scheduler.handle(WorkerDied(worker_id, code, began)))

    def beat(self, now: float) -> None:
        if self.abandoned:
            return
        if now - self.last_sent >= self.heartbeat_period:
            self.send(Heartbeat())
        if now - self.last_heard > self.heartbeat_threshold:
            self.abandon(f"silent for {now - self.last_heard:.1f} s")

    # -- actions ---------------------------------------------------------------------
    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            match action:
                case SendTasks(worker_id, tasks, new_functions):
                    if new_functions:
                        bodies = [self.functions.get(f, b"") for f in new_functions]
                        self.send_worker(worker_id, FunctionDefinitions(new_functions, bodies))
                    self.send_worker(worker_id, TaskBatch(tasks))
                case ReportResults(batch):
                    self.send(batch)
                case StartWorker(index):
                    if self.exit_reason is None:
                        self.start_worker(index)
                case KillWorker(worker_id):
                    process = self.processes.get(worker_id)
                    if process is not None:
                        logger.warning("killing worker %s: task past its walltime", worker_id)
                        process.kill()
                case Exit(reason):
                    self.exit_reason = reason

    def send(self, message: protocol.Message) -> None:
        self.interchange.send_multipart(message.to_frames(), copy=False)
        self.last_sent = time.monotonic()

    def send_worker(self, worker_id: str, message: protocol.Message) -> None:
        stream = self.streams.get(worker_id)
        if stream is None:
            return
        try:
            stream.send(message.to_frames())
        except OSError as exc:  # the worker is gone; reap_workers reports it
            logger.debug("cannot send to worker %s: %s", worker_id, exc)
            return
        if stream.wants_write:
            self.poller.modify(stream.fileno(), zmq.POLLIN | zmq.POLLOUT)

    def flush_worker(self, worker_id: str) -> None:
        stream = self.streams[worker_id]
        try:
            stream.flush()
        except OSError:
            stream.closed = True
            return
        if not stream.wants_write:
            self.poller.modify(stream.fileno(), zmq.POLLIN)

    def close_stream(self, worker_id: str) -> None:
        stream = self.streams.pop(worker_id, None)
        if stream is not None:
            self.poller.unregister(stream.fileno())
            del self.stream_owner[stream.fileno()]
            stream.close()

    # -- shut-down -------------------------------------------------------------------
    def close(self, reason: str) -> None:
        """End the workers still running, account for their tasks, say goodbye (listing
        every task no worker began), close everything."""
        self.control.stop()
        self.scheduler.handle(StopRequested())
        self.end_workers()
        if not self.abandoned:
            self.execute(self.scheduler.flush())  # the last results
        unstarted = self.scheduler.unstarted
        if self.abandoned:
            logger.warning("%s: dropped %d tasks no worker began", reason, len(unstarted))
        try:
            self.interchange.send_multipart(ManagerExiting(reason=reason, unstarted=unstarted).to_frames(),
                                            zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        for fd in self.pidfds:
            os.close(fd)
        for worker_id in list(self.streams):
            self.close_stream(worker_id)
        self.interchange.disable_monitor()
        self.monitor.close(linger=0)
        self.interchange.close()
        self.context.term()
        self.control.close()
        self.signals.close()
        self.signals_in.close()

    def end_workers(self) -> None:
        """Kill the workers still running, wait for them, read what they sent last and
        tell the scheduler how many tasks each began."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for worker_id, process in self.processes.items():
            self.dying.append((0.0, worker_id, process.wait()))
        self.processes.clear()
        self.receive_from_workers({fd: zmq.POLLIN for fd in self.stream_owner})
        for _, worker_id, code in self.dying:
            self.worker_died(worker_id, code)
        self.dying.clear()

    def terminate(self, signum: int, frame: object) -> None:
        """SIGTERM handler: no worker begins another task from now on. From the kernel
        because our parent died (a local block's interchange): abandon at once, here. Else
        the batch scheduler (or a provider cancelling the block) ends us, and the loop
        leaves cleanly when the wake-up descriptor ends its poll. (The parent-death signal
        of a multi-threaded interchange may come while a thread of it still lives, as our
        parent: then the closed connection tells, a moment later.)"""
        self.control.stop()  # leaving either way: no worker begins another task from now on
        if self.parent_pid is not None and not parent_alive(self.parent_pid):
            if not self.abandoned:
                self.abandon("its parent process exited")
        elif self.exit_reason is None:
            self.exit_reason = f"terminated by {signal.Signals(signum).name}"


def read_key_file(path: str) -> tuple[bytes, bytes]:
    """This manager's CurveZMQ (public, secret) keys from the file the interchange wrote
    (JSON ``{"public", "secret"}``, z85)."""
    try:
        with open(path, encoding="ascii") as file:
            keys = json.load(file)
        public, secret = keys["public"].encode("ascii"), keys["secret"].encode("ascii")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read this manager's CurveZMQ keys from {path}: {exc!r}") from exc
    if len(public) != 40 or len(secret) != 40:
        raise ConfigError(f"{path}: CurveZMQ keys are 40 z85 characters")
    return public, secret


def main(config: ManagerConfig) -> str:
    """Entry point of a manager process; returns why it stopped."""
    parent = os.getppid()
    exit_with_parent()
    manager = Manager(config, parent_pid=parent)
    reason = "interrupted"
    previous = signal.signal(signal.SIGTERM, manager.terminate)
    previous_fd = signal.set_wakeup_fd(manager.signals_in.fileno(), warn_on_full_buffer=False)
    try:
        manager.start()
        reason = manager.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the goodbye short
        signal.set_wakeup_fd(previous_fd)
        manager.close(reason)
        signal.signal(signal.SIGTERM, previous)
    logger.info("manager %s exiting: %s", config.manager_id, reason)
    return reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run as: python -m manager --config JSON")
