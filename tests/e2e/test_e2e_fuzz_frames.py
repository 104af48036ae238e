"""Fuzzing the fabric's ZeroMQ sockets with random and mutated multipart messages (hypothesis).

* The interchange's manager socket: messages from a peer that never registered, and from a
  registered (held, so it is given no work) rogue manager. After every example a real
  task runs through the real manager and its result is the right one (no forged result
  for a real task id is ever taken).
* The service's forwarder: messages from a connection holding the valid CurveZMQ keys of
  a registered endpoint (under its own routing id, and under another one), with results
  for task ids of another endpoint that is offline. After every example a real task runs
  through the service and a real interchange; at the end the offline endpoint's tasks are
  all still pending, and the service logged no unexpected failure.

Examples are bounded (``max_examples``, no deadline) so each test runs in seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_functions as fns
import psutil
import pytest
import zmq
from tests.support import TIMEOUT
from tests.support.processes import alive
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.interchange import InterchangeProcess, connect, manager_address, receive, registration

from fabric import Endpoint
from fabric.protocol import (PROTOCOL_VERSION, CancelTasks, CommandReply, Drain, FunctionDefinitions, Heartbeat,
                             InterchangeRegistration, ManagerExiting, RegistrationReply, ResultBatch, ResultsAck,
                             Shutdown, StatusReport, StatusRequest, Task, TaskBatch, WorkerReady)
from fabric.serialize import SourceCode, deserialize, serialize_arguments

from tests.support.fuzz_strategies import messages
from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drain(*sockets: zmq.Socket) -> None:
    for socket in sockets:
        with contextlib.suppress(zmq.Again):
            while True:
                socket.recv_multipart(zmq.NOBLOCK)


def common_templates(task_ids: list[Any]) -> list[Any]:
    ids = task_ids or [0]
    return [
        Heartbeat(), Shutdown(reason="fuzz"), Drain(), ManagerExiting(reason="fuzz"),
        ResultBatch.build([(i, 0, b"forged") for i in ids[:3]], started=ids[:2], capacity=4, elapsed=0.1),
        ResultBatch.build([(ids[0], 2, b"\x80")]), ResultsAck(task_ids=ids[:3]), CancelTasks(task_ids=ids[:2]),
        TaskBatch([Task(ids[0], "f" * 32, b"payload")]), FunctionDefinitions(["f" * 32], [b"body"]),
        StatusRequest(request_id=1), CommandReply(request_id=1, ok=True, message="fuzz"),
        StatusReport(request_id=1, managers=[{"workers": 2, "manager_id": "m"}], queued_tasks=1, outstanding_tasks=2),
        RegistrationReply(accepted=True), WorkerReady(worker_id="w", pid=1),
    ]


# -- the interchange's manager socket ------------------------------------------------------------
def test_fuzzed_frames_on_the_manager_socket(make_endpoint: Any) -> None:
    endpoint: Endpoint = make_endpoint()
    manager_pid = endpoint.wait_for_workers(timeout=TIMEOUT).managers[0]["pid"]
    context = zmq.Context()
    try:
        address = manager_address(endpoint)
        stranger = connect(context, address, b"stranger")
        rogue = connect(context, address, b"rogue")
        rogue.send_multipart(registration("rogue").to_frames())
        reply = receive(rogue, endpoint)
        assert isinstance(reply, RegistrationReply) and reply.accepted
        endpoint.hold_manager("rogue")  # never given real work
        inputs = itertools.count()
        templates = [*common_templates(list(range(64))), registration("someone-else"),
                     registration("stranger", protocol_version=PROTOCOL_VERSION + 1)]

        @SETTINGS
        @given(st.sampled_from([stranger, rogue]), messages(templates))
        def fuzz(socket: zmq.Socket, frames: list[bytes]) -> None:
            socket.send_multipart(frames)
            x = next(inputs)
            assert endpoint.submit(fns.square, x).result(TIMEOUT) == ("square", x, x * x)
            drain(stranger, rogue)

        fuzz()
        assert alive(psutil.Process(endpoint._process.pid))
        assert [m["pid"] for m in endpoint.status().managers if m["manager_id"] != "rogue"] == [manager_pid]
    finally:
        context.destroy(linger=0)


# -- the service's forwarder ---------------------------------------------------------------------
def failures(log: str) -> list[str]:
    """Each traceback in a service log, from the line that announced it to its last line."""
    found, lines = [], log.splitlines()
    for at, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = next((i for i in range(at + 1, len(lines)) if not lines[i].startswith((" ", "Traceback"))),
                       len(lines) - 1)
            found.append("\n".join(lines[max(0, at - 1):end + 1]))
    return found


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path / "service", rate_limit=0, heartbeat_period=0.2, heartbeat_threshold=2.0)
    yield process
    assert process.stop() == 0


def test_fuzzed_frames_from_a_registered_endpoint_on_the_forwarder(service: ServiceProcess, tmp_path: Path) -> None:
    api = Api(service.url, service.add_user(f"fuzz-{uuid.uuid4().hex[:6]}"))
    function_id = api.register_function(SourceCode.header + SourceCode.dumps(double))
    working, fuzzing, offline = (api.register_endpoint(name) for name in ("working", "fuzzing", "offline"))
    waiting = api.submit({"endpoint_id": offline["endpoint_id"], "function_id": function_id,
                          "args": [serialize_arguments((i,), {}) for i in range(8)]})
    assert waiting.status == 201, waiting
    victims = waiting.json()["task_ids"]
    interchange = InterchangeProcess(working, tmp_path / "spool", tmp_path / "interchange.log")
    legit = FakeInterchange(service.forwarder_address, fuzzing)
    other_route = FakeInterchange(service.forwarder_address, fuzzing, identity=f"not-{fuzzing['endpoint_id']}")
    try:
        legit.register()
        inputs = itertools.count()
        templates = [*common_templates(victims),
                     InterchangeRegistration(endpoint_id=offline["endpoint_id"], hostname="h", pid=1,
                                             manager_address="tcp://127.0.0.1:1"),
                     InterchangeRegistration(endpoint_id=fuzzing["endpoint_id"], hostname=platform.node(),
                                             pid=os.getpid(), manager_address="tcp://127.0.0.1:1",
                                             protocol_version=PROTOCOL_VERSION + 1)]

        @SETTINGS
        @given(st.sampled_from([legit, other_route]), messages(templates))
        def fuzz(peer: FakeInterchange, frames: list[bytes]) -> None:
            peer.send_raw(frames)
            x = next(inputs)
            reply = api.submit({"endpoint_id": working["endpoint_id"], "function_id": function_id,
                                "args": [serialize_arguments((x,), {})]})
            assert reply.status == 201, reply
            (kind, payload), = api.all_results(reply.json()["task_group_id"], 1).values()
            assert (kind, deserialize(payload)) == (0, 2 * x)
            drain(legit.socket, other_route.socket)

        fuzz()
        offline_group = api.get(f"/v1/task_groups/{waiting.json()['task_group_id']}").json()
        assert (offline_group["tasks"], offline_group["pending"]) == (8, 8)  # no forged result was taken
        assert interchange.alive()
        assert not failures(service.read_log())
    finally:
        legit.close()
        other_route.close()
        interchange.stop()


def test_status_reports_with_numbers_of_the_wrong_kind_are_dropped_quietly(service: ServiceProcess) -> None:
    api = Api(service.url, service.add_user(f"status-{uuid.uuid4().hex[:6]}"))
    endpoint = FakeInterchange(service.forwarder_address, api.register_endpoint("reporting"))
    try:
        endpoint.register()
        for managers, queued in (([{"workers": "x"}], 0), ([{"workers": None}], 0), ([{"workers": [1]}], 0),
                                 ([], 2**64 - 1), ([{"workers": 2**64 - 1}], 0)):
            endpoint.send(StatusReport(request_id=1, managers=managers, queued_tasks=queued, outstanding_tasks=0))
        endpoint.send(ResultBatch.build([("no-such-task", 0, b"x")]))  # acknowledged once all before it were handled
        poll_until(lambda: any(isinstance(m, ResultsAck) for m in endpoint.pump()), "the forwarder's ResultsAck")
        assert not failures(service.read_log())
    finally:
        endpoint.close()
