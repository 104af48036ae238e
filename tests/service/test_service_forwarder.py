"""The forwarder through a real service process, with a real CurveZMQ DEALER playing the
interchange: who may connect, tasks out, results in, reconnects, rogue frames."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import msgpack
import pytest
import zmq
from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric.protocol import (RESULT_OK, RESULT_REMOTE_ERROR, FunctionDefinitions, InterchangeRegistration,
                             ResultBatch, Shutdown, StatusReport, StatusRequest, Task, TaskBatch)


@pytest.fixture
def service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service()


@pytest.fixture
def api(service: ServiceProcess) -> Api:
    return Api(service.url, service.add_user(f"user-{uuid.uuid4().hex[:6]}"))


def connect(service: ServiceProcess, endpoint: dict[str, Any], made: list[FakeInterchange],
            **options: Any) -> FakeInterchange:
    fake = FakeInterchange(service.forwarder_address, endpoint, **options)
    made.append(fake)
    return fake


def online(api: Api, endpoint_id: str) -> bool:
    return bool(api.get(f"/v1/endpoints/{endpoint_id}").json()["status"] == "online")


def registered_online(service: ServiceProcess, api: Api, endpoint: dict[str, Any], made: list[FakeInterchange],
                      **options: Any) -> FakeInterchange:
    """A fake interchange that connected and registered, once the service shows the endpoint online."""
    fake = connect(service, endpoint, made, **options)
    fake.register()
    poll_until(lambda: fake.pump() is not None and online(api, endpoint["endpoint_id"]), "the endpoint to be online")
    return fake


def answer(fake: FakeInterchange, tasks: list[Task], prefix: bytes = b"result:") -> None:
    """Reply to ``tasks`` the way an interchange would: started, then results."""
    fake.send(ResultBatch(started=[t.task_id for t in tasks]))
    fake.send(ResultBatch.build([(t.task_id, RESULT_OK, prefix + bytes(t.payload)) for t in tasks]))


def test_registered_keys_connect_and_tasks_round_trip(service: ServiceProcess, api: Api,
                                                      interchanges: list[FakeInterchange]) -> None:
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"the function body")
    fake = registered_online(service, api, endpoint, interchanges)
    poll_until(lambda: any(isinstance(m, StatusRequest) for m in fake.pump() + fake.received), "a status request")
    request = next(m for m in fake.received if isinstance(m, StatusRequest))
    fake.send(StatusReport(request_id=request.request_id, managers=[{"workers": 3}, {"workers": 2}],
                           queued_tasks=0, outstanding_tasks=0))
    poll_until(lambda: fake.pump() is not None and api.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()[
        "workers"] == 5, "the status report to be recorded")

    submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                            "args": [b"%d" % i for i in range(20)], "retries": 2,
                            "resource_spec": {"walltime": 30, "priority": 3}}).json()
    tasks = fake.wait_for_tasks(20)
    definitions = [m for m in fake.received if isinstance(m, FunctionDefinitions)]
    assert [(d.function_ids, [bytes(b) for b in d.bodies]) for d in definitions] == [([function_id],
                                                                                      [b"the function body"])]
    first_batch = next(i for i, m in enumerate(fake.received) if isinstance(m, TaskBatch))
    assert fake.received.index(definitions[0]) < first_batch  # the body travels before its tasks
    assert [t.task_id for t in tasks] == submitted["task_ids"]
    assert all(isinstance(t.task_id, str) for t in tasks)
    assert {(t.function_id, t.walltime, t.retries, t.priority) for t in tasks} == {(function_id, 30, 2, 3)}
    assert api.get(f"/v1/tasks/{tasks[0].task_id}").json()["state"] == "dispatched"

    fake.send(ResultBatch(started=[tasks[0].task_id]))
    poll_until(lambda: api.get(f"/v1/tasks/{tasks[0].task_id}").json()["state"] == "running", "a running task")
    error = {"remote_type": "builtins.ValueError", "message": "bad input", "traceback": "...",
             "exception": b"\x80\x05 pickled bytes, as a worker sends them (never unpickled here)"}
    fake.send(ResultBatch.build([(tasks[0].task_id, RESULT_REMOTE_ERROR, msgpack.packb(error))]))
    answer(fake, tasks[1:])
    results = api.all_results(submitted["task_group_id"], 20)
    assert results[tasks[5].task_id] == (RESULT_OK, b"result:5")
    assert results[tasks[0].task_id][0] == RESULT_REMOTE_ERROR
    failed = api.get(f"/v1/tasks/{tasks[0].task_id}").json()
    assert failed["state"] == "failed" and failed["error"] == "builtins.ValueError: bad input"
    progress = api.get(f"/v1/task_groups/{submitted['task_group_id']}").json()
    assert (progress["tasks"], progress["success"], progress["failed"], progress["pending"]) == (20, 19, 1, 0)


def test_unknown_keys_cannot_connect(service: ServiceProcess, api: Api, interchanges: list[FakeInterchange]) -> None:
    endpoint = api.register_endpoint("cluster")
    public, secret = (k.decode() for k in zmq.curve_keypair())
    stranger = connect(service, endpoint, interchanges, public_key=public, secret_key=secret)
    stranger.register()
    poll_until(lambda: stranger.pump() is not None and zmq.EVENT_HANDSHAKE_FAILED_AUTH in stranger.events,
               "the handshake to be refused")
    wrong_server = connect(service, endpoint, interchanges, server_key=zmq.curve_keypair()[0].decode())
    wrong_server.register()
    poll_until(lambda: wrong_server.pump() is not None and zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in wrong_server.events
               or zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL in wrong_server.events or len(wrong_server.events) > 3,
               "a handshake with the wrong server key to fail")
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in stranger.events + wrong_server.events
    assert not online(api, endpoint["endpoint_id"])


def test_registering_again_rotates_keys_only_when_asked_and_cuts_off_the_old_pair(
        service: ServiceProcess, api: Api, interchanges: list[FakeInterchange]) -> None:
    endpoint = api.register_endpoint("rotating")
    function_id = api.register_function(b"body")
    old = registered_online(service, api, endpoint, interchanges)

    looked_up = api.register_endpoint("rotating")  # a lookup: the running endpoint is left alone
    assert looked_up["public_key"] == endpoint["public_key"] and "secret_key" not in looked_up
    assert not any(isinstance(m, Shutdown) for m in old.pump() + old.received) and online(api, endpoint["endpoint_id"])

    rotated = api.register_endpoint("rotating", rotate_keys=True)  # e.g. `fabric endpoint start` elsewhere
    assert rotated["endpoint_id"] == endpoint["endpoint_id"] and rotated["public_key"] != endpoint["public_key"]
    poll_until(lambda: any(isinstance(m, Shutdown) for m in old.pump() + old.received),
               "the old connection told to stop")
    assert not online(api, endpoint["endpoint_id"])
    old.register()  # a process holding the old keys cannot come back on its live connection...
    submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                            "args": [b"a"]}).json()
    again = connect(service, endpoint, interchanges)  # ...nor on a new one
    again.register()
    poll_until(lambda: again.pump() is not None and zmq.EVENT_HANDSHAKE_FAILED_AUTH in again.events,
               "the old key's handshake to be refused")

    new = connect(service, rotated, interchanges, identity="the-new-process")  # the old one still holds its id
    new.register()
    tasks = new.wait_for_tasks(1)
    answer(new, tasks)
    assert api.all_results(submitted["task_group_id"], 1)[tasks[0].task_id] == (0, b"result:a")
    old.pump()
    assert old.tasks() == [] and again.tasks() == []  # no task ever went to the old keys


def test_tasks_wait_for_an_offline_endpoint(service: ServiceProcess, api: Api,
                                            interchanges: list[FakeInterchange]) -> None:
    endpoint = api.register_endpoint("laptop")
    function_id = api.register_function(b"body")
    submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                            "args": [b"a", b"b"]}).json()
    fake = connect(service, endpoint, interchanges)
    fake.register()
    tasks = fake.wait_for_tasks(2)
    answer(fake, tasks)
    assert sorted(api.all_results(submitted["task_group_id"], 2).values()) == [(0, b"result:a"), (0, b"result:b")]


def test_reconnect_resends_unfinished_tasks_and_ignores_duplicates(
        service: ServiceProcess, api: Api, interchanges: list[FakeInterchange]) -> None:
    endpoint = api.register_endpoint("flaky")
    function_id = api.register_function(b"body")
    fake = registered_online(service, api, endpoint, interchanges)
    submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                            "args": [b"%d" % i for i in range(10)]}).json()
    tasks = fake.wait_for_tasks(10)
    answer(fake, tasks[:4], prefix=b"first:")
    poll_until(lambda: len(api.results(submitted["task_group_id"])["task_ids"]) == 4, "4 results committed")
    fake.close()
    interchanges.remove(fake)

    again = connect(service, endpoint, interchanges)  # a new interchange process, same keys
    again.register()
    resent = again.wait_for_tasks(6)
    assert sorted(t.task_id for t in resent) == sorted(t.task_id for t in tasks[4:])
    assert any(isinstance(m, FunctionDefinitions) for m in again.received)
    answer(again, tasks, prefix=b"second:")  # duplicates for the 4 finished tasks too
    answer(again, tasks[4:], prefix=b"third:")
    results = api.all_results(submitted["task_group_id"], 10)
    assert {results[t.task_id][1] for t in tasks[:4]} == {b"first:%d" % i for i in range(4)}
    assert {results[t.task_id][1] for t in tasks[4:]} == {b"second:%d" % i for i in range(4, 10)}
    assert api.results(submitted["task_group_id"], after=10, wait=0.5)["task_ids"] == []  # nothing more, ever
    assert {api.get(f"/v1/tasks/{t.task_id}").json()["state"] for t in tasks} == {"success"}


def test_rogue_frames_are_dropped_and_the_service_keeps_serving(
        service: ServiceProcess, api: Api, interchanges: list[FakeInterchange]) -> None:
    victim = api.register_endpoint("victim")
    intruder_endpoint = api.register_endpoint("intruder")
    function_id = api.register_function(b"body")
    fake = registered_online(service, api, victim, interchanges)
    submitted = api.submit({"endpoint_id": victim["endpoint_id"], "function_id": function_id,
                            "args": [b"x", b"y"]}).json()
    tasks = fake.wait_for_tasks(2)

    garbage = [[b"\xc1"], [b"not msgpack", b"x"], [b"\x81\xa1v\x63"], [b""],
               [b"\x82\xa1v\x01\xa1t\xa7unknown"], [b"\x82\xa1v\x01\xa1t\xa7results", b"", b"", b""],
               [b"\x85\xa1v\x01\xa1t\xa7results\xa3ids\x91\x01\xa5kinds\x91\x00\xa5sizes\x91\x05", b"ab"],
               [b"\x82\xa1v\x01\xa1t\xa5tasks", b"payload"]]
    for frames in garbage:
        fake.send_raw(frames)
    fake.send(InterchangeRegistration(endpoint_id=intruder_endpoint["endpoint_id"], hostname="h", pid=1,
                                      manager_address="x"))  # claims another endpoint's id
    # another endpoint's keys, routed as the (connected) victim: the route stays the victim's
    impostor = connect(service, intruder_endpoint, interchanges, identity=victim["endpoint_id"])
    impostor.register()
    impostor.send(ResultBatch.build([(tasks[0].task_id, RESULT_OK, b"forged")]))
    # ... and under a made-up id: its messages count as the intruder endpoint's, whose key it holds,
    # so its "results" for the victim's tasks are not results of any task of its own
    masked = connect(service, intruder_endpoint, interchanges, identity=str(uuid.uuid4()))
    masked.register()
    masked.send(ResultBatch.build([(tasks[1].task_id, RESULT_OK, b"forged")]))
    address = urlparse(service.forwarder_address)
    with socket.create_connection((address.hostname, address.port)) as raw:  # not even ZMTP
        raw.sendall(b"\xff" * 64 + b"GET / HTTP/1.1\r\n\r\n")
    poll_until(lambda: fake.pump() is not None and masked.pump() is not None
               and online(api, intruder_endpoint["endpoint_id"]), "the masked sender to count as the intruder")
    poll_until(lambda: "ignored 1 results of finished or unknown tasks" in service.read_log(),
               "the forged result to be ignored")
    poll_until(lambda: fake.pump() is not None and any(isinstance(m, Shutdown) for m in fake.received),
               "the wrong registration to be refused")

    answer(fake, tasks)  # the real endpoint's results still count
    results = api.all_results(submitted["task_group_id"], 2)
    assert sorted(results.values()) == [(0, b"result:x"), (0, b"result:y")]
    for intruder in (impostor, masked):
        assert not [m for m in intruder.pump() + intruder.received if isinstance(m, TaskBatch)]
    assert api.get("/v1/auth/whoami").status == 200
    assert service.process.poll() is None
    log = service.read_log()
    assert "dropping malformed message" in log and "Traceback" not in log
