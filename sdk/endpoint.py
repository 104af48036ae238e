"""``Endpoint``: a whole endpoint on this machine, used as a ``concurrent.futures.Executor``.

``Endpoint(workers=4)`` starts an interchange as a child process, which starts its
managers, which start their workers. ``submit`` returns a real ``Future`` per task.

How tasks move: ``submit`` serializes the arguments (the function only once, by id),
creates the future and appends the task to a deque; one I/O thread owns the socket,
sends whatever is queued as one batch whenever it wakes, and resolves futures in bulk
as result batches arrive. The submitting thread wakes the I/O thread through a pipe only
when it is not already awake, so a burst of submits costs one system call.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import os
import subprocess
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from fabric import protocol
from fabric.config import InterchangeConfig, ProviderConfig, ScalingConfig
from fabric.errors import ConfigError, EndpointError, EndpointShutdown, FabricError, PayloadTooLarge, ProtocolError
from fabric.process import child_environment, pidfd, spawn, stop
from fabric.protocol import (MAX_BATCH_BYTES, MAX_BATCH_TASKS, CancelTasks, CommandReply, FunctionDefinitions, Heartbeat, InterchangeRegistration,
                             ManagerCommand, ResultBatch, Shutdown, StatusReport, StatusRequest, Task, TaskBatch,
                             batches_of)
from fabric.serialize import serialize_arguments, serialize_function
from sdk.futures import TaskFuture
from sdk.results import outcome

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
START_TIMEOUT = 60.0
"""Seconds the interchange may take to start and connect before the endpoint gives up."""


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointStatus:
    """What ``Endpoint.status()`` reports."""

    endpoint_id: str
    managers: list[dict[str, Any]]
    workers: int
    queued_tasks: int
    outstanding_tasks: int
    pending_futures: int
    blocks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    scaling_error: str | None = None


class Endpoint(concurrent.futures.Executor):
    """A local endpoint: interchange, managers and workers as child processes.

    ``workers`` per manager (default: this machine's cores), ``managers`` local managers,
    ``prefetch`` per manager (``None``: adaptive), ``accelerators`` device ids to pin
    workers to (``None``: discovered), ``cpu_affinity`` (``none``, ``block``,
    ``alternating``, ``list:...``), ``retries`` default retry budget of each task,
    ``max_message_bytes`` the largest message the interchange accepts (a task's arguments
    or result may use half of it; larger ones fail with ``PayloadTooLarge``),
    ``max_inflight_bytes`` how many bytes of arguments may wait at the interchange at once
    (the rest waits here, so a huge backlog is never held twice). ``provider`` says where
    managers run (default: local processes; e.g. ``ProviderConfig(kind="slurm", ...)``) and
    ``scaling`` makes the endpoint elastic (blocks between ``min_blocks`` and
    ``max_blocks``); without it ``managers`` local managers run for the endpoint's life.
    ``manager_host`` is where managers connect to the interchange, which binds it: the
    default, 127.0.0.1, reaches only managers on this machine; managers on other nodes (a
    batch scheduler's blocks) need an address or host name of this machine that they can
    reach. ``manager_port`` fixes the port (0: a free one in ``manager_port_range``).
    ``manager_curve`` encrypts the managers' connections with CurveZMQ and admits only the
    key pairs the interchange made for its managers (None: on unless ``manager_host`` is a
    loopback address; see ``InterchangeConfig``).
    ``allowed_functions``: the only function ids this endpoint runs (None: any function); a
    function's id is the hash of its body, ``serialize_function(fn)[0]`` of ``fabric.serialize``.
    A task of any other function never reaches a worker: its future raises ``FunctionNotAllowed``.
    """

    def __init__(self, *, workers: int | None = None, managers: int = 1, prefetch: int | None = None,
                 accelerators: list[str] | None = None, cpu_affinity: str = "none", retries: int = 0,
                 heartbeat_period: float = 2.0, heartbeat_threshold: float = 10.0,
                 max_message_bytes: int = 256 * 1024 * 1024, max_inflight_bytes: int = 256 * 1024 * 1024,
                 provider: ProviderConfig | None = None, scaling: ScalingConfig | None = None,
                 log_level: str | None = None, manager_curve: bool | None = None,
                 allowed_functions: Iterable[str] | None = None, manager_host: str = "127.0.0.1",
                 manager_port: int = 0, manager_port_range: tuple[int, int] = (54000, 55000)) -> None:
        self.endpoint_id = f"local-{uuid.uuid4().hex[:12]}"
        self.retries = retries
        allowed = _as_list(allowed_functions)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 0)  # flow control is ours (max_inflight_bytes)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        port = self._socket.bind_to_random_port("tcp://127.0.0.1")
        config = InterchangeConfig(
            upstream_address=f"tcp://127.0.0.1:{port}", endpoint_id=self.endpoint_id,
            local_managers=managers, workers_per_manager=workers or os.cpu_count() or 1,
            prefetch=prefetch, accelerators=accelerators, cpu_affinity=cpu_affinity,
            heartbeat_period=heartbeat_period, heartbeat_threshold=heartbeat_threshold,
            max_message_bytes=max_message_bytes,
            provider=provider or ProviderConfig(), scaling=scaling, manager_curve=manager_curve,
            allowed_functions=allowed, manager_host=manager_host, manager_port=manager_port,
            manager_port_range=manager_port_range,
        )
        self.config = config
        self._max_payload = config.max_payload_bytes
        self._batch_bytes = min(MAX_BATCH_BYTES, self._max_payload)
        self._max_inflight_bytes = max_inflight_bytes
        self._inflight_bytes = 0  # touched by the I/O thread only
        self._identity = self.endpoint_id.encode()
        self._futures: dict[Any, TaskFuture] = {}
        self._outgoing: deque[Task] = deque()
        self._messages: deque[protocol.Message] = deque()
        self._function_ids: dict[Callable[..., Any], str] = {}
        self._new_functions: dict[str, bytes] = {}
        self._requests: dict[int, concurrent.futures.Future[Any]] = {}
        self._ids = itertools.count()
        self._request_ids = itertools.count()
        self._lock = threading.Lock()
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._wake_pending = False
        self._connected = threading.Event()
        self.manager_address: str | None = None
        self._closing = False
        self._broken: BaseException | None = None
        args = ["--config", config.to_json()]
        if log_level:
            args += ["--log-level", log_level]
        self._process = spawn("interchange", args, env=child_environment())
        self._thread = threading.Thread(target=self._serve, name=f"fabric-{self.endpoint_id}", daemon=True)
        self._thread.start()
        _live_endpoints.add(self)

    # -- submitting --------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a worker; returns its future."""
        return self.submit_task(fn, args, kwargs)

    def submit_task(self, fn: Callable[..., Any], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    *, walltime: float | None = None, retries: int | None = None,
                    priority: int = 0) -> concurrent.futures.Future[Any]:
        """``submit`` with task options: ``walltime`` seconds (then ``TaskTimeout``),
        ``retries`` after a lost worker or manager, ``priority`` (higher goes first)."""
        if self._closing or self._broken is not None:
            raise EndpointShutdown(f"endpoint {self.endpoint_id} is shut down") from self._broken
        function_id = self._function_ids.get(fn)
        if function_id is None:
            function_id = self._register(fn)
        payload = serialize_arguments(args, kwargs or {})
        if len(payload) > self._max_payload:
            raise PayloadTooLarge(len(payload), self._max_payload, "arguments")
        task_id = next(self._ids)
        future = TaskFuture()
        future.payload_size = len(payload)
        self._futures[task_id] = future
        self._outgoing.append(Task(task_id, function_id, payload, walltime,
                                   self.retries if retries is None else retries, priority))
        if not self._wake_pending:
            self._wake()
        if self._closing and self._futures.pop(task_id, None) is not None:  # lost a race with shutdown
            future.set_exception(self._broken or EndpointShutdown(f"endpoint {self.endpoint_id} is shut down"))
        return future

    def _register(self, fn: Callable[..., Any]) -> str:
        function_id, body = serialize_function(fn)
        if len(body) > self._max_payload:
            raise PayloadTooLarge(len(body), self._max_payload, "function")
        with self._lock:
            if fn not in self._function_ids:
                self._new_functions[function_id] = body
                self._function_ids[fn] = function_id
        return function_id

    def _wake(self) -> None:
        self._wake_pending = True
        with self._wake_lock:  # never write to the descriptor once it is closed (and reused)
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):
                    os.write(self._wake_w, b"\0")

    def _check_open(self) -> None:
        if self._broken is not None:
            raise EndpointError(f"endpoint {self.endpoint_id} is broken: {self._broken}") from self._broken
        if self._closing:
            raise EndpointShutdown(f"endpoint {self.endpoint_id} is shut down")

    # -- status and control ------------------------------------------------------------
    def _request(self, make: Callable[[int], protocol.Message], timeout: float) -> Any:
        self._check_open()
        request_id = next(self._request_ids)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._requests[request_id] = future
        self._messages.append(make(request_id))
        self._wake()
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            raise EndpointError(f"endpoint {self.endpoint_id} did not answer within {timeout} s") from exc
        finally:
            self._requests.pop(request_id, None)

    def status(self, timeout: float = 30.0) -> EndpointStatus:
        """Managers (with their workers and outstanding tasks), queued and outstanding tasks."""
        report: StatusReport = self._request(lambda rid: StatusRequest(request_id=rid), timeout)
        return EndpointStatus(
            endpoint_id=self.endpoint_id, managers=report.managers,
            workers=sum(m["workers"] for m in report.managers), queued_tasks=report.queued_tasks,
            outstanding_tasks=report.outstanding_tasks, pending_futures=len(self._futures),
            blocks=report.blocks, scaling_error=report.scaling_error,
        )

    def wait_for_workers(self, count: int | None = None, timeout: float = 60.0) -> EndpointStatus:
        """Block until ``count`` workers (default: all configured) are registered."""
        wanted = count if count is not None else self.config.local_managers * self.config.workers_per_manager
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(timeout=max(0.1, deadline - time.monotonic()))
            if status.workers >= wanted:
                return status
            if time.monotonic() > deadline:
                raise EndpointError(f"only {status.workers} of {wanted} workers after {timeout} s")
            time.sleep(0.05)

    def _manager_command(self, action: str, manager_id: str, timeout: float) -> None:
        reply: CommandReply = self._request(
            lambda rid: ManagerCommand(request_id=rid, action=action, manager_id=manager_id), timeout)
        if not reply.ok:
            raise EndpointError(reply.message)

    def drain_manager(self, manager_id: str, timeout: float = 30.0) -> None:
        """Let a manager finish what it has, send it nothing more, then let it exit."""
        self._manager_command("drain", manager_id, timeout)

    def hold_manager(self, manager_id: str, timeout: float = 30.0) -> None:
        """Send a manager no new tasks until ``release_manager``."""
        self._manager_command("hold", manager_id, timeout)

    def release_manager(self, manager_id: str, timeout: float = 30.0) -> None:
        self._manager_command("release", manager_id, timeout)

    def cancel_queued(self) -> None:
        """Ask the interchange to drop every task it has not dispatched yet (``TaskCancelled``)."""
        self._check_open()
        self._messages.append(CancelTasks(task_ids=list(self._futures)))
        self._wake()

    # -- shutting down -----------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the endpoint. ``wait``: first let submitted tasks finish. ``cancel_futures``:
        cancel tasks not yet running. Futures still pending at the end fail with
        ``EndpointShutdown``. Every child process is gone when this returns."""
        if self._closing:
            self._thread.join()
            return
        if cancel_futures:
            self._outgoing.clear()
            for future in list(self._futures.values()):
                future.cancel()
            if self._broken is None:
                self.cancel_queued()
        if wait and self._broken is None:
            concurrent.futures.wait(list(self._futures.values()))
        self._closing = True
        self._messages.append(Shutdown(reason="endpoint shut down"))
        self._wake()
        self._thread.join()
        _live_endpoints.discard(self)

    def __enter__(self) -> Endpoint:
        return self

    # -- the I/O thread ----------------------------------------------------------------
    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        process_fd = pidfd(self._process)
        if process_fd is not None:
            poller.register(process_fd, zmq.POLLIN)
        period = self.config.heartbeat_period
        last_sent = self._last_heard = time.monotonic()
        reason = "shut down"
        try:
            while True:
                events = dict(poller.poll(int(period * 500)))
                if self._wake_r in events:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 65536)
                    self._wake_pending = False
                if self._socket in events:
                    self._receive()
                can_send = self._outgoing and self._inflight_bytes < self._max_inflight_bytes
                if self._connected.is_set() and (can_send or self._messages or self._new_functions):
                    self._send_pending()
                    last_sent = time.monotonic()
                if self._closing and not self._messages:
                    break
                if self._process.poll() is not None:
                    raise EndpointError(f"the interchange exited with code {self._process.returncode}")
                now = time.monotonic()
                if self._connected.is_set() and now - last_sent > period:
                    self._send(Heartbeat())
                    last_sent = now
                self._check_heard(now)
        except BaseException as exc:  # noqa: BLE001 - every pending future must learn about it
            reason = f"failed: {exc!r}"
            self._broken = exc if isinstance(exc, FabricError) else EndpointError(str(exc))
            logger.error("endpoint %s I/O thread failed: %s", self.endpoint_id, exc)
        finally:
            self._finish(process_fd)
            logger.info("endpoint %s I/O thread ended: %s", self.endpoint_id, reason)

    def _check_heard(self, now: float) -> None:
        """An interchange that says nothing (not even a heartbeat) is as good as gone."""
        threshold = self.config.heartbeat_threshold
        if not self._connected.is_set():
            threshold = max(threshold, START_TIMEOUT)
        silent = now - self._last_heard
        if silent > threshold and not self._closing:
            raise EndpointError(f"the interchange said nothing for {silent:.1f} s")

    def _receive(self) -> None:
        for _ in range(256):
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            try:
                message = protocol.decode(frames[1:])
            except ProtocolError as exc:
                logger.warning("dropping malformed message from the interchange: %s", exc)
                continue
            if isinstance(message, ResultBatch):
                self._resolve(message)
            elif isinstance(message, InterchangeRegistration):
                logger.info("interchange %s connected (managers on %s)", message.endpoint_id,
                            message.manager_address)
                self.manager_address = message.manager_address
                self._connected.set()
            elif isinstance(message, (StatusReport, CommandReply)):
                future = self._requests.get(message.request_id)
                if future is not None:
                    future.set_result(message)

    def _resolve(self, batch: ResultBatch) -> None:
        futures = self._futures
        for task_id, kind, payload in batch.results():
            future = futures.pop(task_id, None)
            if future is None:
                continue
            self._inflight_bytes -= future.payload_size
            ok, value = outcome(kind, payload)
            try:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            except concurrent.futures.InvalidStateError:  # cancelled by the user meanwhile
                pass

    def _send_pending(self) -> None:
        if self._new_functions:
            with self._lock:
                functions, self._new_functions = self._new_functions, {}
            for function_id, body in functions.items():  # one per message: each fits the limit
                self._send(FunctionDefinitions([function_id], [body]))
        outgoing = self._outgoing
        while outgoing and self._inflight_bytes < self._max_inflight_bytes:
            count = min(len(outgoing), MAX_BATCH_TASKS)
            tasks = [outgoing.popleft() for _ in range(count)]
            self._inflight_bytes += sum(len(t.payload) for t in tasks)
            for batch in batches_of(tasks, max_bytes=self._batch_bytes):
                self._send(TaskBatch(batch))
        while self._messages:
            self._send(self._messages.popleft())

    def _send(self, message: protocol.Message) -> None:
        self._socket.send_multipart([self._identity, *message.to_frames()], copy=False)

    def _finish(self, process_fd: int | None) -> None:
        """After the loop: fail what is left, stop the interchange, close everything."""
        self._closing = True
        error = self._broken or EndpointShutdown(f"endpoint {self.endpoint_id} shut down")
        for future in list(self._futures.values()) + list(self._requests.values()):
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(error)
        self._futures.clear()
        if self._broken is None:  # asked to shut down: give it time to stop its managers
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(SHUTDOWN_TIMEOUT)
        stop(self._process, timeout=2.0)
        if process_fd is not None:
            os.close(process_fd)
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1
        self._socket.close()
        self._context.term()


def _as_list(function_ids: Iterable[str] | None) -> list[str] | None:
    """Function ids as the configuration's list (which checks them)."""
    if function_ids is None or isinstance(function_ids, list):
        return function_ids
    if isinstance(function_ids, str):
        raise ConfigError("allowed_functions is a list of function ids, not one string")
    return list(function_ids)


_live_endpoints: weakref.WeakSet[Endpoint] = weakref.WeakSet()


@atexit.register
def _shutdown_live_endpoints() -> None:
    for endpoint in list(_live_endpoints):
        with contextlib.suppress(Exception):
            endpoint.shutdown(wait=False)
