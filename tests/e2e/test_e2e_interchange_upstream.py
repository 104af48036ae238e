"""End to end: an interchange process driven by a hand-written upstream.

The test plays the part of the ``Endpoint`` (or the service): it binds the ROUTER the
interchange connects to, answers with heartbeats, and sends exactly the frames it
chooses, including ones the real ``Endpoint`` would refuse to send.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import e2e_functions as fns
import pytest
import zmq
from tests.support import TIMEOUT, poll_until
from tests.support.processes import descendants, wait_gone

from fabric import protocol
from fabric.config import InterchangeConfig
from fabric.process import spawn, stop
from fabric.protocol import FunctionDefinitions, Heartbeat, InterchangeRegistration, ResultBatch, Task, TaskBatch
from fabric.serialize import serialize_arguments, serialize_function
from sdk.results import outcome

LIMIT = 64 * 1024


class FakeUpstream:
    """A ROUTER an interchange process connects to; ``pump`` keeps it company."""

    def __init__(self, context: zmq.Context, **settings: Any) -> None:
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.config = InterchangeConfig(upstream_address=f"tcp://127.0.0.1:{port}", endpoint_id="e2e-upstream",
                                        **settings)
        self.identity = self.config.endpoint_id.encode()
        self.received: list[protocol.Message] = []
        self.results: dict[Any, tuple[bool, Any]] = {}
        self.process = spawn("interchange", ["--config", self.config.to_json()])

    def wait_connected(self) -> None:
        """Wait for the interchange to introduce itself (until then sends are dropped)."""
        def registered() -> bool:
            self.pump()
            return any(isinstance(m, InterchangeRegistration) for m in self.received)

        poll_until(registered, "the interchange to introduce itself")

    def send(self, message: protocol.Message) -> None:
        self.socket.send_multipart([self.identity, *message.to_frames()])

    def pump(self) -> None:
        """Send a heartbeat; take in whatever the interchange sent."""
        self.send(Heartbeat())
        while self.socket.poll(0):
            _, *frames = self.socket.recv_multipart()
            message = protocol.decode(frames)
            self.received.append(message)
            if isinstance(message, ResultBatch):
                self.results.update((task_id, outcome(kind, payload)) for task_id, kind, payload in message.results())

    def result(self, task_id: Any) -> Any:
        """Wait for the result of ``task_id`` (the interchange must stay alive meanwhile)."""
        def arrived() -> bool:
            self.pump()
            assert self.process.poll() is None, f"the interchange exited with code {self.process.returncode}"
            return task_id in self.results

        poll_until(arrived, f"the result of task {task_id}")
        ok, value = self.results[task_id]
        assert ok, value
        return value


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    context = zmq.Context()
    upstream = FakeUpstream(context, heartbeat_period=0.2, heartbeat_threshold=2.0, max_message_bytes=LIMIT)
    try:
        upstream.wait_connected()
        yield upstream
    finally:
        processes = descendants(upstream.process.pid)
        stop(upstream.process, timeout=TIMEOUT)
        wait_gone(processes, "the interchange's managers and workers")
        context.destroy(linger=0)


def square_task(task_id: int, x: int) -> tuple[FunctionDefinitions, Task]:
    function_id, body = serialize_function(fns.square)
    return (FunctionDefinitions([function_id], [body]),
            Task(task_id, function_id, serialize_arguments((x,), {})))


def test_interchange_runs_tasks_for_a_hand_written_upstream(upstream) -> None:
    functions, task = square_task(1, 12)
    upstream.send(functions)
    upstream.send(TaskBatch([task]))
    assert upstream.result(1) == ("square", 12, 144)


def test_oversized_message_from_upstream_does_not_hang_the_interchange(upstream) -> None:
    functions, task = square_task(1, 3)
    upstream.send(functions)
    upstream.send(TaskBatch([task]))
    assert upstream.result(1) == ("square", 3, 9)

    upstream.send(TaskBatch([task._replace(task_id=2, payload=bytes(4 * LIMIT))]))

    # Either the interchange keeps serving (a task sent once it speaks again gets its
    # result) or it gives its upstream up and exits; it must not hang.
    heard = [len(upstream.received)]
    retry = task._replace(task_id=3)

    def served_or_exited() -> bool:
        upstream.pump()
        if len(upstream.received) > heard[0]:  # it speaks: (re)send the task
            heard[0] = len(upstream.received)
            upstream.send(TaskBatch([retry]))
        return upstream.process.poll() is not None or 3 in upstream.results

    poll_until(served_or_exited, "the interchange to serve again or exit")
    if 3 in upstream.results:
        assert upstream.results[3] == (True, ("square", 3, 9))
