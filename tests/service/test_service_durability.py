"""Fire and forget: SIGKILL the service with tasks accepted and in flight, restart it on the
same data directory, and every accepted task completes exactly once."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import TIMEOUT, poll_until
from tests.support.service import Api, FakeInterchange, Reply, ServiceProcess

from fabric.protocol import RESULT_OK, ResultBatch


def test_sigkill_loses_nothing_and_runs_nothing_twice(start_service: Callable[..., ServiceProcess],
                                                      tmp_path: Path) -> None:
    data_dir = tmp_path / "service"
    first = start_service(data_dir)
    api = Api(first.url, first.add_user("alice"))
    endpoint = api.register_endpoint("cluster")
    function_id = api.register_function(b"body")
    fake = FakeInterchange(first.forwarder_address, endpoint)
    fake.register()
    poll_until(lambda: fake.pump() is not None and api.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()[
        "status"] == "online", "the endpoint to be online")
    in_flight = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                            "args": [b"%d" % i for i in range(50)]}).json()
    sent = fake.wait_for_tasks(50)
    fake.send(ResultBatch.build([(t.task_id, RESULT_OK, b"done:" + bytes(t.payload)) for t in sent[:20]]))
    poll_until(lambda: len(api.results(in_flight["task_group_id"])["task_ids"]) == 20, "20 results committed")
    fake.close()  # the endpoint goes away; tasks keep coming
    accepted = api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                           "args": [b"late%d" % i for i in range(200)]}).json()
    first.kill()

    second = start_service(data_dir)  # same store; new ports
    api = Api(second.url, api.token)
    pending = api.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()
    assert pending["status"] == "offline"  # sent or not before the kill, all 230 are still to do
    assert pending["outstanding_tasks"] + pending["waiting_tasks"] == 230
    reconnected = FakeInterchange(second.forwarder_address, {**endpoint, "server_public_key": endpoint[
        "server_public_key"]})  # the server keys survived the restart too
    try:
        reconnected.register()
        tasks = reconnected.wait_for_tasks(230)
        ids = [t.task_id for t in tasks]
        assert len(ids) == len(set(ids)) == 230  # the 20 finished ones are not sent again
        assert not set(ids) & {t.task_id for t in sent[:20]}
        reconnected.send(ResultBatch.build([(t.task_id, RESULT_OK, b"done:" + bytes(t.payload)) for t in tasks]))
        first_group = api.all_results(in_flight["task_group_id"], 50)
        second_group = api.all_results(accepted["task_group_id"], 200)
    finally:
        reconnected.close()
    assert sorted(p for _, p in first_group.values()) == sorted(b"done:%d" % i for i in range(50))
    assert sorted(p for _, p in second_group.values()) == sorted(b"done:late%d" % i for i in range(200))
    assert set(second_group) == set(accepted["task_ids"])
    progress = api.get(f"/v1/task_groups/{accepted['task_group_id']}").json()
    assert (progress["tasks"], progress["success"], progress["pending"]) == (200, 200, 0)
    assert second.stop() == 0
    assert not (data_dir / "service.json").exists()


def test_every_acknowledged_batch_survives_a_sigkill_mid_stream(start_service: Callable[..., ServiceProcess],
                                                                tmp_path: Path) -> None:
    data_dir = tmp_path / "service"
    first = start_service(data_dir, rate_limit=0)
    api = Api(first.url, first.add_user("alice"))
    endpoint_id = api.register_endpoint("offline")["endpoint_id"]
    function_id = api.register_function(b"body")
    acknowledged: list[dict[str, Any]] = []
    refused: list[Reply] = []

    def submit_until_killed() -> None:
        while True:
            try:
                reply = api.submit({"endpoint_id": endpoint_id, "function_id": function_id,
                                    "args": [b"x" * 100] * 50})
            except (OSError, http.client.HTTPException):  # the service is gone
                return
            if reply.status != 201:
                refused.append(reply)
                return
            acknowledged.append(reply.json())

    submitter = threading.Thread(target=submit_until_killed)
    submitter.start()
    poll_until(lambda: len(acknowledged) >= 20, "20 batches to be accepted")
    first.kill()
    submitter.join(TIMEOUT)
    assert not refused

    second = start_service(data_dir)
    api = Api(second.url, api.token)
    for reply in acknowledged:
        group = api.get(f"/v1/task_groups/{reply['task_group_id']}").json()
        assert (group["tasks"], group["pending"]) == (50, 50)
    for task_id in (acknowledged[0]["task_ids"][0], acknowledged[-1]["task_ids"][-1]):
        assert api.get(f"/v1/tasks/{task_id}").json()["state"] == "waiting-for-endpoint"


def test_cli_add_user_and_usage_errors(tmp_path: Path) -> None:
    from service.cli import main
    from service.store import SQLiteStore

    assert main(["add-user", "carol", "--data-dir", str(tmp_path)]) == 0
    out = subprocess.run([sys.executable, "-m", "service", "add-user", "carol", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.strip()
    store = SQLiteStore(tmp_path / "fabric.db")
    user = store.user_for_token(out)
    store.close()
    assert user is not None and user.name == "carol"
    assert subprocess.run([sys.executable, "-m", "service", "launch"], capture_output=True).returncode == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data_dir": str(tmp_path), "rate_limit": -1}))
    failed = subprocess.run([sys.executable, "-m", "service", "start", "--config", str(bad)], capture_output=True,
                            text=True)
    assert failed.returncode == 1 and "rate_limit" in failed.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for flag in ("--port", "--forwarder-port"):
            busy = subprocess.run([sys.executable, "-m", "service", "start", "--data-dir", str(tmp_path), "--port", "0",
                                   "--forwarder-port", "0", flag, port], capture_output=True, text=True)
            assert busy.returncode == 1 and "in use" in busy.stderr, busy.stderr
