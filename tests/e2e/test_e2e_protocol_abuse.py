"""End to end: hostile or broken peers on the interchange's manager socket.

A raw ZeroMQ DEALER connects where managers connect and sends malformed, unexpected or
oversized messages. The interchange must drop them and keep serving: the real manager
stays registered and tasks submitted afterwards succeed.

The manager address comes from the interchange's registration
(``Endpoint.manager_address``), checked against the interchange's one listening socket.
"""

from __future__ import annotations

import functools

import e2e_functions as fns
import msgpack
import psutil
import pytest
import zmq
from tests.support import TIMEOUT, poll_until
from tests.support.interchange import connect, dealer, manager_address, receive, registration
from tests.support.processes import alive
from zmq.utils.monitor import recv_monitor_message

from fabric import Endpoint, protocol
from fabric.protocol import (PROTOCOL_VERSION, FunctionDefinitions, Heartbeat, ManagerExiting, RegistrationReply,
                             ResultBatch, Shutdown, Task, TaskBatch)

packb = functools.partial(msgpack.packb, use_bin_type=True)


def assert_still_serving(endpoint: Endpoint, manager_pid: int) -> None:
    assert alive(psutil.Process(endpoint._process.pid))
    futures = [endpoint.submit(fns.square, x) for x in range(20)]
    assert [f.result(TIMEOUT) for f in futures] == [("square", x, x * x) for x in range(20)]
    assert [m["pid"] for m in endpoint.status().managers] == [manager_pid]


def task_batch_frames() -> list[bytes]:
    frames = TaskBatch([Task(1, "f" * 32, b"payload-one"), Task(2, "f" * 32, b"payload-two")]).to_frames()
    return [bytes(frame) for frame in frames]


def result_batch_frames() -> list[bytes]:
    frames = ResultBatch.build([(1, protocol.RESULT_OK, b"abc"), (2, protocol.RESULT_OK, b"defg")]).to_frames()
    return [bytes(frame) for frame in frames]


MALFORMED = {
    "garbage bytes": [b"\xc1\xff\x00 not msgpack at all \xde\xad\xbe\xef"],
    "empty frame": [b""],
    "header is a list": [packb([1, "heartbeat"])],
    "header is a scalar": [packb(42)],
    "no version": [packb({"t": "heartbeat"})],
    "wrong version": [packb({"v": PROTOCOL_VERSION + 98, "t": "heartbeat"})],
    "version of wrong type": [packb({"v": "1", "t": "heartbeat"})],
    "unknown tag": [packb({"v": PROTOCOL_VERSION, "t": "no-such-message"})],
    "no tag": [packb({"v": PROTOCOL_VERSION})],
    "tag is a list": [packb({"v": PROTOCOL_VERSION, "t": ["heartbeat"]})],
    "tag is a map": [packb({"v": PROTOCOL_VERSION, "t": {"heartbeat": 1}})],
    "truncated task batch payload": [task_batch_frames()[0], task_batch_frames()[1][:-3]],
    "task batch without payload frame": task_batch_frames()[:1],
    "task batch header truncated": [task_batch_frames()[0][:-5], task_batch_frames()[1]],
    "truncated result batch payload": [result_batch_frames()[0], result_batch_frames()[1][:-1]],
    "result batch with extra frames": [*result_batch_frames(), b"extra"],
    "result batch with negative size": [
        packb({"v": PROTOCOL_VERSION, "t": "results", "ids": [1, 2], "kinds": [0, 0], "sizes": [-1, 2]}), b"x"],
    "registration with missing fields": [packb({"v": PROTOCOL_VERSION, "t": "register_manager", "manager_id": "x"})],
    "registration with wrong field types": [packb({
        **registration("intruder").header(), "pid": "not a pid", "accelerators": "gpu0"})],
    "function ids and bodies disagree": [
        packb({"v": PROTOCOL_VERSION, "t": "functions", "function_ids": ["a", "b"]}), b"body-a"],
}


@pytest.mark.parametrize("frames", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_on_the_manager_socket_is_dropped(make_endpoint, zmq_context, frames) -> None:
    endpoint = make_endpoint()
    manager_pid = endpoint.wait_for_workers(timeout=TIMEOUT).managers[0]["pid"]
    intruder = connect(zmq_context, manager_address(endpoint), b"intruder")

    intruder.send_multipart(frames)
    # Same connection, so answered only after the malformed message was dealt with:
    intruder.send_multipart(Heartbeat().to_frames())
    reply = receive(intruder, endpoint)

    assert isinstance(reply, Shutdown)  # an unregistered peer is told to go away
    assert_still_serving(endpoint, manager_pid)


def test_oversized_message_disconnects_the_sender_and_is_never_processed(
        make_endpoint, zmq_context) -> None:
    limit = 64 * 1024
    endpoint = make_endpoint(max_message_bytes=limit)
    manager_pid = endpoint.wait_for_workers(timeout=TIMEOUT).managers[0]["pid"]
    address = manager_address(endpoint)
    intruder = dealer(zmq_context, b"giant")
    monitor = intruder.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)  # before connecting
    intruder.connect(address)

    def next_event() -> int:
        assert monitor.poll(TIMEOUT * 1000), "no socket event"
        return recv_monitor_message(monitor)["event"]

    assert next_event() == zmq.EVENT_CONNECTED
    # A registration that would be valid, if it were not four times the limit.
    intruder.send_multipart(registration("giant", hostname="h" * (4 * limit)).to_frames())
    assert next_event() == zmq.EVENT_DISCONNECTED
    intruder.disable_monitor()

    prober = connect(zmq_context, address, b"prober")
    prober.send_multipart(Heartbeat().to_frames())
    assert isinstance(receive(prober, endpoint), Shutdown)
    assert "giant" not in [m["manager_id"] for m in endpoint.status().managers]
    assert_still_serving(endpoint, manager_pid)


def test_registered_rogue_manager_sending_unhashable_ids_does_not_crash_the_interchange(
        make_endpoint, zmq_context) -> None:
    endpoint = make_endpoint()
    manager_pid = endpoint.wait_for_workers(timeout=TIMEOUT).managers[0]["pid"]
    rogue = connect(zmq_context, manager_address(endpoint), b"rogue")
    rogue.send_multipart(registration("rogue").to_frames())
    reply = receive(rogue, endpoint)
    assert isinstance(reply, RegistrationReply) and reply.accepted
    endpoint.hold_manager("rogue")  # so no real task is sent to it

    # Well-formed by the protocol's rules (ids and started are lists), hostile in content.
    rogue.send_multipart(ResultBatch(task_ids=[[1, 2]], kinds=[0], sizes=[1], blob=b"x").to_frames())
    rogue.send_multipart(ResultBatch(started=[{"task": 1}]).to_frames())
    rogue.send_multipart(ManagerExiting(reason="done being rogue").to_frames())

    poll_until(lambda: "rogue" not in [m["manager_id"] for m in endpoint.status().managers],
               "the rogue manager to be forgotten")
    assert_still_serving(endpoint, manager_pid)


def test_message_from_unregistered_peer_claiming_to_be_a_manager_is_refused(make_endpoint, zmq_context) -> None:
    endpoint = make_endpoint()
    manager_pid = endpoint.wait_for_workers(timeout=TIMEOUT).managers[0]["pid"]
    address = manager_address(endpoint)

    liar = connect(zmq_context, address, b"liar")
    liar.send_multipart(registration("someone-else").to_frames())  # id differs from socket identity
    reply = receive(liar, endpoint)
    assert isinstance(reply, RegistrationReply) and not reply.accepted

    old = connect(zmq_context, address, b"old-protocol")
    old.send_multipart(registration("old-protocol", protocol_version=PROTOCOL_VERSION + 1).to_frames())
    reply = receive(old, endpoint)
    assert isinstance(reply, RegistrationReply) and not reply.accepted

    stranger = connect(zmq_context, address, b"stranger")
    stranger.send_multipart(FunctionDefinitions(["f"], [b"body"]).to_frames())
    assert isinstance(receive(stranger, endpoint), Shutdown)

    assert_still_serving(endpoint, manager_pid)
