"""The worker: runs tasks one at a time and returns results.

A worker is started by its manager with the pinning already in its environment and one
end of a stream socket (``fabric.streams``) as its only channel. It says
``WorkerReady``, then loops:
function bodies are kept as they arrive (``FunctionDefinitions``) and deserialized on
first use, cached by function id; tasks arrive in chunks (``TaskBatch``) and run in
order; results go back when the chunk is done, or sooner once ``FLUSH_INTERVAL`` has
passed, so long tasks report one by one and short ones in bulk.

With a ``WorkerControl`` (memory shared with its manager, ``fabric.control``) it checks
the manager's stop flag before each task, starts none once it is set (it then sends the
results it has and exits), and counts each task it begins, so its manager knows exactly
which tasks it never began.

The worker exits on ``Shutdown``, on its manager's stop flag, when its manager is gone, or
when it is killed (a task past its walltime): the manager then starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgpack

from fabric import protocol
from fabric.control import WorkerControl
from fabric.errors import PayloadTooLarge, SerializationError
from fabric.process import exit_with_parent, parent_alive
from fabric.protocol import (MAX_BATCH_BYTES, RESULT_OK, RESULT_REMOTE_ERROR, FunctionDefinitions, ResultBatch,
                             Shutdown, TaskBatch, WorkerReady)
from fabric import data
from fabric import dependencies  # noqa: F401 - registers the WithInputs strategy (arguments with inputs)
from fabric.serialize import deserialize, serialize
from fabric.streams import MessageStream

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.002
"""Seconds after which finished results are sent even if the chunk is not done."""

PARENT_CHECK_INTERVAL = 1.0


def describe_exception(exc: BaseException, task_id: Any) -> bytes:
    """The RESULT_REMOTE_ERROR payload for ``exc``: type, message, traceback, the object."""
    try:
        pickled: bytes | None = serialize(exc)
    except SerializationError:
        pickled = None
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails is still reported
        message = f"<unprintable {type(exc).__qualname__} object>"
    return msgpack.packb({
        "remote_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": message,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "task_id": task_id,
        "exception": pickled,
    }, use_bin_type=True)


class Worker:
    """Executes tasks; all socket work is in ``serve``, all task work in ``run_chunk``."""

    def __init__(self, worker_id: str, stream: MessageStream, manager_pid: int, max_result_bytes: int,
                 control: WorkerControl | None = None, index: int = 0) -> None:
        self.worker_id = worker_id
        self.control = control
        self.slot = 1 + index  # this worker's word in control.words
        self.began = 0
        self.stopped = False
        self.max_result_bytes = max_result_bytes
        self.batch_bytes = min(MAX_BATCH_BYTES, max_result_bytes)
        self.manager_pid = manager_pid
        self.bodies: dict[str, Any] = {}
        self.functions: dict[str, Callable[..., Any]] = {}
        self.stream = stream

    def serve(self) -> str:
        """Run until told to stop; returns why it stopped."""
        self.stream.send(protocol.encode(WorkerReady(worker_id=self.worker_id, pid=os.getpid())))
        while True:
            readable, _, _ = select.select([self.stream], [], [], PARENT_CHECK_INTERVAL)
            if not readable:
                if not parent_alive(self.manager_pid):
                    return "manager gone"
                continue
            for frames in self.stream.receive():
                message = protocol.decode(frames)
                if isinstance(message, TaskBatch):
                    self.run_chunk(message.tasks)
                    if self.stopped:
                        return "stopped by its manager"
                elif isinstance(message, FunctionDefinitions):
                    self.bodies.update(zip(message.function_ids, message.bodies))
                elif isinstance(message, Shutdown):
                    return f"shutdown: {message.reason}"
                else:
                    logger.warning("worker %s ignoring %s", self.worker_id, type(message).__name__)
            if self.stream.closed:
                return "manager closed the connection"

    def function(self, function_id: str) -> Callable[..., Any]:
        fn = self.functions.get(function_id)
        if fn is None:
            body = self.bodies.get(function_id)
            if body is None:
                raise SerializationError(f"function {function_id} was never sent to this worker")
            fn = self.functions[function_id] = deserialize(body)
            del self.bodies[function_id]
        return fn

    def run_chunk(self, tasks: list[protocol.Task]) -> None:
        results: list[tuple[Any, int, bytes]] = []
        size = 0
        started = time.perf_counter()
        words, slot = (self.control.words, self.slot) if self.control is not None else (None, 0)
        for task in tasks:
            if words is not None:
                if words[0]:  # the manager stopped us: begin nothing more
                    self.stopped = True
                    break
                self.began += 1
                words[slot] = self.began
            result = self.run(task)
            results.append(result)
            size += len(result[2])
            now = time.perf_counter()
            if now - started > FLUSH_INTERVAL or size > self.batch_bytes:
                self.send_results(results, now - started)
                results, started, size = [], now, 0
        if results:
            self.send_results(results, time.perf_counter() - started)

    def run(self, task: protocol.Task) -> tuple[Any, int, bytes]:
        try:
            fn = self.function(task.function_id)
            with data.result_sink():  # a task given references may return a large result by reference
                args, kwargs = deserialize(task.payload)
                result = data.result_by_reference(serialize(fn(*args, **kwargs)))
            if len(result) > self.max_result_bytes:
                raise PayloadTooLarge(len(result), self.max_result_bytes, "result")
            return task.task_id, RESULT_OK, result
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the caller
            return task.task_id, RESULT_REMOTE_ERROR, describe_exception(exc, task.task_id)

    def send_results(self, results: list[tuple[Any, int, bytes]], elapsed: float) -> None:
        self.stream.send(ResultBatch.build(results, elapsed=elapsed).to_frames())

    def close(self) -> None:
        self.stream.close()


def main(worker_id: str, fd: int, manager_pid: int, max_result_bytes: int, control_fd: int | None = None,
         index: int = 0) -> str:
    """Entry point of a worker process: watch the parent, serve, say how it ended."""
    exit_with_parent()
    if not parent_alive(manager_pid):
        return "manager gone before start"
    stream = MessageStream(socket.socket(fileno=fd), blocking=True)
    control = WorkerControl.attach(control_fd) if control_fd is not None else None
    worker = Worker(worker_id, stream, manager_pid, max_result_bytes, control, index)
    try:
        reason = worker.serve()
    finally:
        worker.close()
    logger.info("worker %s exiting: %s", worker_id, reason)
    return reason
