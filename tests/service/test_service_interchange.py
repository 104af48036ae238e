"""The real interchange in service mode against a real service process: tasks submitted
through the HTTP API run on local managers; the service is killed and restarted, the
interchange stopped and restarted; every result arrives once and no task runs twice.

The interchange is ``python -m interchange --config JSON`` with the endpoint's CurveZMQ
keys and a spool folder; the task function appends its argument to a file, so the
number of lines says how often each task ran.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgpack
import psutil
import pytest
import zmq
from tests.support import TIMEOUT, poll_until
from tests.support.interchange import InterchangeProcess
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric.protocol import (RESULT_OK, FunctionDefinitions, Heartbeat, InterchangeRegistration, ResultBatch,
                             ResultsAck, Task, TaskBatch, decode)
from fabric.serialize import SourceCode, deserialize, function_id, serialize_arguments
from interchange.spool import decode_segment

INTERCHANGE_TRACEBACK = re.compile(r'File "[^"]*[/\\]interchange[/\\]')
"""A traceback through the interchange's code (its log also holds its managers' output)."""


def record_then_wait(path: str, x: int, gate: str) -> int:
    """The task: note that it ran (one line per run), wait for the gate to open, return x squared."""
    import os
    import time

    with open(path, "a") as log:
        log.write(f"{x}\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never opened")
        time.sleep(0.01)
    return x * x


BODY = SourceCode.header + SourceCode.dumps(record_then_wait)  # by value: workers need not import this module


@pytest.fixture
def start_interchange(tmp_path: Path) -> Iterator[Callable[..., InterchangeProcess]]:
    started: list[InterchangeProcess] = []

    def start(endpoint: dict[str, Any], **settings: Any) -> InterchangeProcess:
        interchange = InterchangeProcess(endpoint, tmp_path / "spool", tmp_path / f"interchange-{len(started)}.log",
                                         **settings)
        started.append(interchange)
        return interchange

    yield start
    for interchange in started:
        interchange.stop()


@pytest.fixture
def service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service()


@pytest.fixture
def api(service: ServiceProcess) -> Api:
    return Api(service.url, service.add_user(f"user-{uuid.uuid4().hex[:6]}"))


def online(api: Api, endpoint_id: str) -> bool:
    return bool(api.get(f"/v1/endpoints/{endpoint_id}").json()["status"] == "online")


def submit(api: Api, endpoint: dict[str, Any], record: Path, values: range, gate: Path,
           later: tuple[range, Path] | None = None) -> dict[str, Any]:
    """One batch of tasks ``values``; those in ``later[0]`` wait for the gate ``later[1]`` instead."""
    gates = {x: later[1] if later and x in later[0] else gate for x in values}
    reply = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": api.register_function(BODY),
                        "args": [serialize_arguments((str(record), x, str(gates[x])), {}) for x in values]})
    assert reply.status == 201, reply
    return reply.json()  # type: ignore[no-any-return]


def values_of(results: dict[str, tuple[int, bytes]]) -> list[Any]:
    assert {kind for kind, _ in results.values()} == {RESULT_OK}, results
    return sorted(deserialize(payload) for _, payload in results.values())


def runs(record: Path) -> list[int]:
    """Every run of the task so far, by argument (a task that ran twice appears twice)."""
    try:
        return sorted(int(line) for line in record.read_text().split())
    except FileNotFoundError:
        return []


def spool_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.results"))


def spooled_ids(spool: Path) -> set[Any]:
    return {i for path in spool_files(spool) for i in decode_segment(path.read_bytes()).task_ids}


def ports(service: ServiceProcess) -> dict[str, int]:
    """The settings that bring a service back where it was."""
    return {"port": urlparse(service.url).port, "forwarder_port": urlparse(service.forwarder_address).port}


# -- the happy path ------------------------------------------------------------------------------------


def test_tasks_run_on_the_interchange_and_every_result_is_acknowledged(
        service: ServiceProcess, api: Api, start_interchange: Callable[..., InterchangeProcess],
        tmp_path: Path) -> None:
    endpoint = api.register_endpoint("cluster")
    interchange = start_interchange(endpoint)
    poll_until(lambda: online(api, endpoint["endpoint_id"]), "the interchange to connect")
    record = tmp_path / "runs"
    submitted = submit(api, endpoint, record, range(40), gate=tmp_path)  # open
    assert values_of(api.all_results(submitted["task_group_id"], 40)) == sorted(x * x for x in range(40))
    assert runs(record) == list(range(40))
    progress = api.get(f"/v1/task_groups/{submitted['task_group_id']}").json()
    assert (progress["success"], progress["pending"]) == (40, 0)

    # The forwarder acknowledged every batch before it sent the probe's task (one ordered
    # connection), so when the probe's result is in, only the probe may still be unacknowledged.
    probe = submit(api, endpoint, record, range(40, 41), gate=tmp_path)
    api.all_results(probe["task_group_id"], 1)
    assert interchange.stop() == 0  # SIGTERM: unacknowledged results would be spooled now
    assert spooled_ids(interchange.spool) <= set(probe["task_ids"])
    log = interchange.read_log()
    assert "terminated by SIGTERM" in log and not INTERCHANGE_TRACEBACK.search(log)
    assert "(connection 1)" in log


# -- outages -------------------------------------------------------------------------------------------


def test_results_made_while_the_service_is_down_are_spooled_and_delivered_once(
        start_service: Callable[..., ServiceProcess], start_interchange: Callable[..., InterchangeProcess],
        tmp_path: Path) -> None:
    data_dir = tmp_path / "service"
    first = start_service(data_dir)
    api = Api(first.url, first.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    interchange = start_interchange(endpoint)
    poll_until(lambda: online(api, endpoint["endpoint_id"]), "the interchange to connect")
    record, gate, later = tmp_path / "runs", tmp_path / "gate", tmp_path / "later"
    before = submit(api, endpoint, record, range(4), gate=tmp_path)  # open: these finish at once
    api.all_results(before["task_group_id"], 4)
    # 10-14 finish while the service is down; 15-19 wait at the interchange until it is back
    during = submit(api, endpoint, record, range(10, 20), gate=gate, later=(range(15, 20), later))
    poll_until(lambda: 10 in runs(record), "a task to be running")  # so the whole batch is at the interchange
    first.kill()

    poll_until(lambda: "down (disconnected)" in interchange.read_log(), "the interchange to notice")
    gate.touch()
    poll_until(lambda: spool_files(interchange.spool), "results to be spooled to disk")
    assert spooled_ids(interchange.spool) <= set(during["task_ids"][:5])
    second = start_service(data_dir, **ports(first))  # same ports, same store
    api = Api(second.url, api.token)
    # The new session re-sends all ten tasks: those finished are answered from the spool, the
    # others (queued, or at the manager) are ignored: the interchange has them already.
    poll_until(lambda: "(connection 2)" in interchange.read_log(), "the interchange to register again")
    later.touch()
    assert values_of(api.all_results(during["task_group_id"], 10)) == sorted(x * x for x in range(10, 20))
    poll_until(lambda: not spool_files(interchange.spool), "acknowledged results to leave the disk")
    assert runs(record) == [*range(4), *range(10, 20)]  # each task ran exactly once
    for group in (before, during):
        assert api.results(group["task_group_id"], after=len(group["task_ids"]))["task_ids"] == []
    assert interchange.alive()
    log = interchange.read_log()
    assert "(connection 2)" in log and not INTERCHANGE_TRACEBACK.search(log)


def test_results_spooled_by_a_stopped_interchange_are_delivered_by_the_next(
        start_service: Callable[..., ServiceProcess], start_interchange: Callable[..., InterchangeProcess],
        tmp_path: Path) -> None:
    data_dir = tmp_path / "service"
    first = start_service(data_dir)
    api = Api(first.url, first.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    interchange = start_interchange(endpoint)
    poll_until(lambda: online(api, endpoint["endpoint_id"]), "the interchange to connect")
    record, gate = tmp_path / "runs", tmp_path / "gate"
    submitted = submit(api, endpoint, record, range(6), gate=gate)  # one batch: once one runs, all arrived
    poll_until(lambda: runs(record), "the first task to start")
    first.kill()
    poll_until(lambda: "down (disconnected)" in interchange.read_log(), "the interchange to notice")
    gate.touch()

    poll_until(lambda: spooled_ids(interchange.spool) == set(submitted["task_ids"]), "every result to be spooled")
    assert interchange.stop() == 0
    assert spooled_ids(interchange.spool) == set(submitted["task_ids"])

    second = start_service(data_dir, **ports(first))
    api = Api(second.url, api.token)
    restarted = start_interchange(endpoint)  # the same spool folder
    assert values_of(api.all_results(submitted["task_group_id"], 6)) == sorted(x * x for x in range(6))
    assert runs(record) == list(range(6))  # the service sent the tasks again: answered from the spool
    poll_until(lambda: not spool_files(restarted.spool), "delivered results to leave the disk")
    assert "6 results of an earlier run" in restarted.read_log()


# -- kills -------------------------------------------------------------------------------------------


def test_a_killed_interchange_s_workers_begin_nothing_more_and_only_begun_tasks_run_again(
        service: ServiceProcess, api: Api, start_interchange: Callable[..., InterchangeProcess],
        tmp_path: Path) -> None:
    """Issue 12, item 14, the guarantee the README states: after SIGKILL of the interchange its
    manager begins no task (its prefetched ones are dropped), the service sends every
    unfinished task to the next interchange, and only the tasks a worker had begun before the
    kill run a second time; every task's result is delivered once."""
    endpoint = api.register_endpoint("cluster")
    first = start_interchange(endpoint, workers_per_manager=1)
    poll_until(lambda: online(api, endpoint["endpoint_id"]), "the interchange to connect")
    record, gate = tmp_path / "runs", tmp_path / "gate"
    submitted = submit(api, endpoint, record, range(12), gate=gate)
    # one task begins and waits for the gate; the others wait behind it at the manager and its worker
    began_before_the_kill = poll_until(lambda: runs(record), "a task to begin")
    below = first.psutil.children(recursive=True)  # the manager and its worker

    first.process.kill()
    first.process.wait(TIMEOUT)
    poll_until(lambda: "interchange gone: " in first.read_log(),
               "the manager to notice that its interchange is gone")
    gate.touch()  # the tasks its workers were running may end now: nothing may begin after them
    gone, alive = psutil.wait_procs(below, timeout=TIMEOUT)
    assert not alive, f"processes outlived their killed interchange: {alive}"
    assert runs(record) == began_before_the_kill  # no task began after the kill

    start_interchange(endpoint)  # the same spool: a restarted endpoint
    assert values_of(api.all_results(submitted["task_group_id"], 12)) == sorted(x * x for x in range(12))
    ran = runs(record)
    assert sorted(set(ran)) == list(range(12))
    assert sorted(x for x in set(ran) if ran.count(x) > 1) == began_before_the_kill
    assert max(ran.count(x) for x in ran) == 2


# -- the wire ------------------------------------------------------------------------------------------


def test_the_forwarder_acknowledges_every_committed_batch(service: ServiceProcess, api: Api) -> None:
    endpoint = api.register_endpoint("fake")
    fake = FakeInterchange(service.forwarder_address, endpoint)
    try:
        fake.register()
        submitted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": api.register_function(b"f"),
                                "args": [b"a", b"b"]}).json()
        tasks = fake.wait_for_tasks(2)
        first = ResultBatch.build([(tasks[0].task_id, RESULT_OK, b"1")])
        again = ResultBatch.build([(tasks[0].task_id, RESULT_OK, b"2"), (tasks[1].task_id, RESULT_OK, b"3"),
                                   ("no-such-task", RESULT_OK, b"4")])
        fake.send(first)
        fake.send(again)

        def acks() -> list[list[Any]]:
            fake.pump()
            return [m.task_ids for m in fake.received if isinstance(m, ResultsAck)]

        poll_until(lambda: len(acks()) == 2, "two acknowledgements")
        assert acks() == [first.task_ids, again.task_ids]  # duplicates and strangers are acknowledged too
        assert sorted(api.all_results(submitted["task_group_id"], 2).values()) == [(0, b"1"), (0, b"3")]
    finally:
        fake.close()


class FakeService:
    """A CurveZMQ ROUTER playing the service's forwarder, sending whatever the test says."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.curve_server = True
        self.socket.curve_publickey, self.socket.curve_secretkey = server_public, server_secret
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = {"endpoint_id": "rogue-test", "forwarder_address": f"tcp://127.0.0.1:{port}",
                         "server_public_key": server_public.decode(), "public_key": client_public.decode(),
                         "secret_key": client_secret.decode()}
        self.received: list[Any] = []
        self.identity: bytes | None = None  # the routing id the ROUTER gave the interchange's connection

    def send(self, frames: list[bytes]) -> None:
        assert self.identity is not None, "nothing heard from the interchange yet"
        self.socket.send_multipart([self.identity, *frames])

    def pump(self) -> list[Any]:
        if self.identity is not None:
            self.send(Heartbeat().to_frames())  # type: ignore[arg-type]
        while self.socket.poll(0):
            self.identity, *frames = self.socket.recv_multipart()
            self.received.append(decode(frames))
        return self.received

    def close(self) -> None:
        self.context.destroy(linger=0)


def test_rogue_frames_from_upstream_do_not_stop_the_interchange(
        start_interchange: Callable[..., InterchangeProcess]) -> None:
    fake = FakeService()
    try:
        interchange = start_interchange(fake.endpoint)
        poll_until(lambda: any(isinstance(m, InterchangeRegistration) for m in fake.pump()), "the registration")
        packb = msgpack.Packer(use_bin_type=True).pack
        garbage = [
            [b"\xc1"], [b"not msgpack", b"x"], [b""], [packb({"v": 2, "t": "results_ack", "task_ids": []})],
            [packb({"v": 1, "t": "results_ack"})], [packb({"v": 1, "t": "results_ack", "task_ids": {"a": 1}})],
            [packb({"v": 1, "t": "results_ack", "task_ids": [[1]]})],
            [packb({"v": 1, "t": "results_ack", "task_ids": ["x"]}), b"extra frame"],
            [packb({"v": 1, "t": "no such message"})], [packb({"v": 1, "t": "tasks"}), b"payload"],
            [packb({"v": 1, "t": "results", "ids": [], "kinds": [], "sizes": []}), b""],  # not the service's to send
        ]
        for frames in garbage:
            fake.send(frames)
        fake.send(ResultsAck(task_ids=["never-sent", 7]).to_frames())  # type: ignore[arg-type]
        function = FunctionDefinitions([function_id(BODY)], [BODY])
        args = serialize_arguments(("/dev/null", 6, "/"), {})
        task = Task("task-1", function_id(BODY), args)
        fake.send(function.to_frames())  # type: ignore[arg-type]
        fake.send(TaskBatch([task, task]).to_frames())  # type: ignore[arg-type]
        fake.send(TaskBatch([task]).to_frames())  # type: ignore[arg-type]

        def results() -> list[tuple[Any, int, bytes]]:
            return [(i, k, bytes(p)) for m in fake.pump() if isinstance(m, ResultBatch) for i, k, p in m.results()]

        poll_until(results, "the task's result")
        assert [(i, k, deserialize(p)) for i, k, p in results()] == [("task-1", RESULT_OK, 36)]  # ran once

        fake.send(TaskBatch([task]).to_frames())  # type: ignore[arg-type]  # again: its result is not acknowledged
        poll_until(lambda: len(results()) == 2, "the held result to be sent again")
        assert interchange.alive()
        log = interchange.read_log()
        assert log.count("dropping malformed message from upstream") == 10
        assert not INTERCHANGE_TRACEBACK.search(log)
        assert "ignoring ResultBatch from upstream" in log
    finally:
        fake.close()


def test_a_silent_upstream_is_down_until_it_speaks_again(start_interchange: Callable[..., InterchangeProcess],
                                                         tmp_path: Path) -> None:
    fake = FakeService()
    try:
        interchange = start_interchange(fake.endpoint)
        poll_until(lambda: any(isinstance(m, InterchangeRegistration) for m in fake.pump()), "the registration")
        gate = tmp_path / "gate"
        task = Task("task-1", function_id(BODY), serialize_arguments((str(tmp_path / "runs"), 3, str(gate)), {}))
        fake.send(FunctionDefinitions([function_id(BODY)], [BODY]).to_frames())  # type: ignore[arg-type]
        fake.send(TaskBatch([task]).to_frames())  # type: ignore[arg-type]
        poll_until(lambda: runs(tmp_path / "runs"), "the task to start")

        # The service says nothing (its socket still answers ZeroMQ's own heartbeats) ...
        poll_until(lambda: "down (silent for" in interchange.read_log(), "the silence to be noticed")
        gate.touch()
        poll_until(lambda: spooled_ids(interchange.spool) == {"task-1"}, "the result to be spooled, unsent")
        assert not any(isinstance(m, ResultBatch) and m.task_ids for m in fake.received)

        # ... then speaks again: the result comes, with no new registration (same connection).
        poll_until(lambda: any(isinstance(m, ResultBatch) and m.task_ids == ["task-1"] for m in fake.pump()),
                   "the spooled result")
        fake.send(ResultsAck(task_ids=["task-1"]).to_frames())  # type: ignore[arg-type]
        poll_until(lambda: fake.pump() is not None and not spool_files(interchange.spool), "the file to go")
        assert sum(isinstance(m, InterchangeRegistration) for m in fake.received) == 1
        assert "upstream speaks again" in interchange.read_log() and interchange.alive()
    finally:
        fake.close()
