"""What an endpoint reports over the forwarder is bounded and escaped before it reaches the
service's log or store: a hostname with newlines cannot forge log lines, a megabyte one
makes no megabyte line, and a pid of 2**64-1 is refused once and cleanly. A real service
process; a FakeInterchange holding the endpoint's real CurveZMQ keys plays the endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import msgpack
from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR, InterchangeRegistration, ResultBatch, ResultsAck

FORGED = "2026-12-04 12:00:00,000 ERROR 1 service.app: forged"


def register(fake: FakeInterchange, hostname: str, pid: int) -> None:
    fake.send(InterchangeRegistration(endpoint_id=fake.endpoint_id, hostname=hostname, pid=pid,
                                      manager_address="tcp://127.0.0.1:1"))


def hostname_of(api: Api, endpoint_id: str) -> Any:
    return api.get(f"/v1/endpoints/{endpoint_id}").json()["hostname"]


def setup(start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange]
          ) -> tuple[ServiceProcess, Api, dict[str, Any], FakeInterchange]:
    service = start_service(rate_limit=0)
    api = Api(service.url, service.add_user(f"owner-{uuid.uuid4().hex[:6]}"))
    endpoint = api.register_endpoint("cluster")
    fake = FakeInterchange(service.forwarder_address, endpoint)
    interchanges.append(fake)
    return service, api, endpoint, fake


def test_a_hostname_with_newlines_and_escapes_is_stored_and_logged_escaped(
        start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange]) -> None:
    service, api, endpoint, fake = setup(start_service, interchanges)
    register(fake, f"node1\n{FORGED}\r\x1b[31m\u2028", 4242)
    stored = poll_until(lambda: fake.pump() is not None and hostname_of(api, endpoint["endpoint_id"]), "the hostname")
    assert stored == "node1\\n" + FORGED + "\\r\\x1b[31m\\u2028"
    assert "\n" not in stored and "\x1b" not in stored
    log = service.read_log()
    assert "node1\\n" + FORGED in log
    assert not any(line.startswith(FORGED) for line in log.splitlines()), log  # was: a forged ERROR line


def test_a_megabyte_hostname_and_a_pid_past_64_bits_are_refused_once_and_the_endpoint_still_works(
        start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange]) -> None:
    service, api, endpoint, fake = setup(start_service, interchanges)
    register(fake, "h" * 1_000_000, 7)
    register(fake, "node1", 2**64 - 1)  # was: OverflowError from SQLite, a traceback, a half-open session
    register(fake, "node1", -1)
    poll_until(lambda: fake.pump() is not None and service.read_log().count("dropping malformed message") >= 3,
               "the three registrations to be refused")
    assert api.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()["status"] == "offline"
    register(fake, "node1", 4242)  # the same connection registers properly: it is served
    poll_until(lambda: fake.pump() is not None and hostname_of(api, endpoint["endpoint_id"]) == "node1",
               "the endpoint online")
    function_id = api.register_function(b"body")
    submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id, "args": [b"1"]})
    assert submitted.status == 201, submitted
    task = fake.wait_for_tasks(1)[0]
    fake.send(ResultBatch.build([(task.task_id, RESULT_OK, b"done")]))
    assert api.all_results(submitted.json()["task_group_id"], 1) == {task.task_id: (RESULT_OK, b"done")}

    log = service.read_log()
    assert "Traceback" not in log and "unexpected failure" not in log, log[-3000:]
    refusals = [line for line in log.splitlines() if "dropping malformed message" in line]
    assert len(refusals) == 3, refusals  # each refused message logged once
    assert "'hostname' has 1000000 characters, more than 255" in refusals[0]
    assert "'pid' is out of range" in refusals[1] and "'pid' is out of range" in refusals[2]
    assert max(len(line) for line in log.splitlines()) < 1000  # was: a 1 MB line


def test_an_error_payload_no_repr_can_print_still_fails_its_task(
        start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange]) -> None:
    service, api, endpoint, fake = setup(start_service, interchanges)
    register(fake, "node1", 4242)
    function_id = api.register_function(b"body")
    submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                            "args": [b"1", b"2"]}).json()
    first, second = fake.wait_for_tasks(2)
    nested: Any = "deep"
    for _ in range(1000):
        nested = [nested]
    fake.send(ResultBatch.build([(first.task_id, RESULT_REMOTE_ERROR,
                                  msgpack.packb({"remote_type": "ValueError", "message": nested})),
                                 (second.task_id, RESULT_REMOTE_ERROR,
                                  msgpack.packb({"remote_type": ["not", "a", "name"], "message": "line\nline"}))]))
    poll_until(lambda: fake.pump() is not None and any(isinstance(m, ResultsAck) for m in fake.received),
               "the results to be acknowledged")  # was: a traceback, never committed, re-sent forever
    tasks = [api.get(f"/v1/tasks/{task_id}").json() for task_id in submitted["task_ids"]]
    assert [(t["state"], t["error"]) for t in tasks] == [("failed", "ValueError: (an unreadable error message)"),
                                                        ("failed", "TaskError: line\nline")]
    assert "Traceback" not in service.read_log()
