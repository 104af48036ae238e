"""The SDK's ``Client`` and ``fabric login`` against a real service process (no endpoint needed:
what is checked here is the REST side; tests/sdk/test_sdk_executor.py runs tasks)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.service import ServiceProcess

from fabric import AuthError, Client, InvalidRequest, NotFound, PayloadTooLarge, RateLimited, TaskPending
from fabric.errors import ConfigError
from fabric.serialize import serialize_arguments

LIMITS = {"max_task_bytes": 64 * 1024, "max_batch_tasks": 100, "rate_limit": 0}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path_factory.mktemp("sdk"), **LIMITS)
    yield process
    assert process.stop() == 0


def new_client(service: ServiceProcess, name: str = "alice") -> Client:
    return Client(service.url, service.add_user(f"{name}-{uuid.uuid4().hex[:6]}"), retry_for=0)


def double(x: int) -> int:
    return 2 * x


def triple(x: int) -> int:
    return 3 * x


def test_functions_register_get_list_delete(service: ServiceProcess) -> None:
    client = new_client(service)
    function_id = client.register_function(double, description="doubles")
    assert client.register_function(double) == function_id  # cached, and free on the service anyway
    record = client.get_function(function_id)
    assert record["name"] == "double" and record["description"] == "doubles" and record["body"]
    assert [f["function_id"] for f in client.list_functions()] == [function_id]
    client.delete_function(function_id)
    with pytest.raises(NotFound) as caught:
        client.get_function(function_id)
    assert caught.value.status == 404 and caught.value.request_id


def test_batches_tasks_and_pending_results(service: ServiceProcess) -> None:
    client = new_client(service)
    endpoint = client.register_endpoint("laptop")
    assert set(endpoint) >= {"endpoint_id", "forwarder_address", "server_public_key", "public_key", "secret_key"}
    again = client.register_endpoint("laptop")  # a lookup: no new keys
    assert again["endpoint_id"] == endpoint["endpoint_id"] and "secret_key" not in again
    assert client.get_endpoint_by_name("laptop")["endpoint_id"] == endpoint["endpoint_id"]
    assert [e["endpoint_id"] for e in client.list_endpoints(name="laptop")] == [endpoint["endpoint_id"]]
    assert client.list_endpoints(name="desktop") == []
    with pytest.raises(NotFound):
        client.get_endpoint_by_name("desktop")
    function_id = client.register_function(double)
    arguments = [serialize_arguments((i,), {}) for i in range(5)]
    batch = client.submit_batch(endpoint["endpoint_id"], function_id, arguments)
    assert len(batch.task_ids) == 5
    assert client.get_task_group_tasks(batch.task_group_id) == batch.task_ids
    more = client.submit_batch(endpoint["endpoint_id"], [function_id] * 2, arguments[:2],
                               task_group_id=batch.task_group_id, resource_spec={"walltime": 5})
    assert client.get_task_group_tasks(batch.task_group_id) == batch.task_ids + more.task_ids
    counts = client.get_task_group(batch.task_group_id)
    assert {k: counts[k] for k in ("task_group_id", "tasks", "success", "failed", "pending")} == {
        "task_group_id": batch.task_group_id, "tasks": 7, "success": 0, "failed": 0, "pending": 7}
    with pytest.raises(TaskPending) as caught:
        client.get_result(batch.task_ids[0])
    assert caught.value.state == "waiting-for-endpoint"
    page = client.get_results(batch.task_group_id, wait=0.1)
    assert page.task_ids == [] and page.pending == 7
    status = client.get_endpoint_status(endpoint["endpoint_id"])
    assert status["status"] == "offline" and status["waiting_tasks"] == 7


def test_a_retried_batch_is_stored_once(service: ServiceProcess) -> None:
    client = new_client(service)
    endpoint_id = client.register_endpoint("cluster")["endpoint_id"]
    function_id = client.register_function(double)
    arguments = [serialize_arguments((i,), {}) for i in range(3)]
    batch_id = str(uuid.uuid4())
    first = client.submit_batch(endpoint_id, function_id, arguments, batch_id=batch_id)
    again = client.submit_batch(endpoint_id, function_id, arguments, batch_id=batch_id)
    assert again == first
    assert client.get_task_group(first.task_group_id)["tasks"] == 3
    stranger = new_client(service, "mallory")  # someone else's batch id adds nothing and reveals nothing
    stranger_endpoint = stranger.register_endpoint("x")["endpoint_id"]
    with pytest.raises(NotFound):
        stranger.submit_batch(stranger_endpoint, stranger.register_function(double), arguments, batch_id=batch_id)


def test_refusals_are_typed(service: ServiceProcess) -> None:
    client = new_client(service)
    endpoint_id = client.register_endpoint("laptop")["endpoint_id"]
    function_id = client.register_function(double)
    with pytest.raises(PayloadTooLarge) as too_big:
        client.submit_batch(endpoint_id, function_id, [b"x" * (64 * 1024 + 1)])
    assert (too_big.value.size, too_big.value.limit, too_big.value.what) == (64 * 1024 + 1, 64 * 1024,
                                                                              "task arguments")
    with pytest.raises(PayloadTooLarge) as too_many:
        client.submit_batch(endpoint_id, function_id, [b"x"] * 101)
    assert too_many.value.what == "batch"
    with pytest.raises(NotFound):
        client.submit_batch(str(uuid.uuid4()), function_id, [b"x"])
    with pytest.raises(InvalidRequest) as bad:
        client.submit_batch(endpoint_id, function_id, [b"x"], retries=-1)
    assert bad.value.status == 400 and "retries" in str(bad.value)
    with pytest.raises(NotFound):
        client.get_task(str(uuid.uuid4()))
    with pytest.raises(AuthError) as refused:
        Client(service.url, "no.such-token", retry_for=0).whoami()
    assert refused.value.status == 401


def test_a_client_without_credentials_says_how_to_get_them(service: ServiceProcess, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path))
    monkeypatch.delenv("FABRIC_TOKEN", raising=False)
    monkeypatch.delenv("FABRIC_SERVICE_URL", raising=False)
    with pytest.raises(ConfigError, match="fabric login"):
        Client(service.url)
    with pytest.raises(ConfigError, match="no service URL"):
        Client(token="abc.def")
    monkeypatch.setenv("FABRIC_TOKEN", service.add_user(f"dave-{uuid.uuid4().hex[:6]}"))
    monkeypatch.setenv("FABRIC_SERVICE_URL", service.url)
    assert Client().whoami()["name"].startswith("dave-")


def test_another_user_sees_nothing_of_mine(service: ServiceProcess) -> None:
    alice, bob = new_client(service, "alice"), new_client(service, "bob")
    endpoint_id = alice.register_endpoint("laptop")["endpoint_id"]
    function_id = alice.register_function(triple)  # bob registers only double (ids are content hashes)
    batch = alice.submit_batch(endpoint_id, function_id, [serialize_arguments((1,), {})])
    bob_endpoint = bob.register_endpoint("laptop")["endpoint_id"]
    assert bob_endpoint != endpoint_id and bob.list_endpoints()[0]["endpoint_id"] == bob_endpoint
    assert bob.list_functions() == []
    for attempt in (lambda: bob.get_function(function_id), lambda: bob.get_endpoint_status(endpoint_id),
                    lambda: bob.get_task(batch.task_ids[0]), lambda: bob.get_task_group(batch.task_group_id),
                    lambda: bob.get_task_group_tasks(batch.task_group_id),
                    lambda: bob.get_results(batch.task_group_id),
                    lambda: bob.submit_batch(endpoint_id, bob.register_function(double), [b"x"]),
                    lambda: bob.submit_batch(bob_endpoint, function_id, [b"x"]),
                    lambda: bob.submit_batch(bob_endpoint, bob.register_function(double), [b"x"],
                                             task_group_id=batch.task_group_id)):
        with pytest.raises(NotFound):
            attempt()
    assert alice.get_task_group(batch.task_group_id)["tasks"] == 1


def test_rate_limit_is_a_typed_error(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "limited", rate_limit=1.0, rate_burst=2)
    try:
        client = Client(service.url, service.add_user("hasty"), retry_for=0)
        with pytest.raises(RateLimited) as caught:
            for _ in range(10):
                client.whoami()
        assert caught.value.retry_after > 0
        patient = Client(service.url, client._token, retry_for=30)
        assert patient.whoami()["name"] == "hasty"  # waits out the 429s
    finally:
        service.stop()


def run_fabric(*args: str, home: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
    environment.update(FABRIC_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], input=stdin, capture_output=True, text=True,
                          env=environment, timeout=60)


def test_login_stores_a_checked_token_that_client_uses(service: ServiceProcess, tmp_path: Path) -> None:
    token = service.add_user(f"carol-{uuid.uuid4().hex[:6]}")
    home = tmp_path / "home"
    wrong = run_fabric("login", "--service-url", service.url, home=home, stdin="not.valid\n")
    assert wrong.returncode == 1 and "401" in wrong.stderr and not (home / "credentials.json").exists()
    done = run_fabric("login", "--service-url", service.url, home=home, stdin=token + "\n")
    assert done.returncode == 0, done.stderr
    assert "logged in" in done.stdout
    path = home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    check = subprocess.run(
        [sys.executable, "-c", "from fabric import Client; print(Client().whoami()['name'])"],
        capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}, "FABRIC_HOME": str(home)})
    assert check.stdout.strip().startswith("carol-"), check.stderr
    assert run_fabric("logout", home=home).returncode == 0 and not path.exists()
    missing = run_fabric("login", home=home)
    assert missing.returncode == 1 and "--service-url" in missing.stderr
