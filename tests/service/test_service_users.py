"""Users and tokens as an operator manages them (``fabric service add-user / users / tokens /
revoke-token / remove-user``) against a running service, and the store's files as they
sit on disk: private to the service's user, with no endpoint secret key in them."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from tests.support import poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric import Client
from fabric.errors import AuthError
from fabric.protocol import Shutdown


def operator(service: ServiceProcess, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``fabric service ARGUMENTS --data-dir <the service's>``, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "service", *arguments, "--data-dir", str(service.data_dir)],
                          capture_output=True, text=True, timeout=60)


def issue(service: ServiceProcess, name: str, token_name: str) -> str:
    done = operator(service, "add-user", name, "--token-name", token_name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def service(start_service: object, tmp_path: Path) -> Iterator[ServiceProcess]:
    yield start_service()  # type: ignore[operator]


def test_tokens_are_listed_by_id_and_a_revoked_one_is_refused_at_once(service: ServiceProcess) -> None:
    laptop, ci = issue(service, "alice", "laptop"), issue(service, "alice", "ci")
    assert laptop.split(".")[0] != ci.split(".")[0]
    assert Api(service.url, laptop).get("/v1/auth/whoami").json()["name"] == "alice"
    listed = operator(service, "tokens", "alice")
    assert listed.returncode == 0 and "laptop" in listed.stdout and "ci" in listed.stdout
    assert laptop.split(".")[0] in listed.stdout and ci.split(".")[0] in listed.stdout
    assert laptop.split(".")[1] not in listed.stdout and ci.split(".")[1] not in listed.stdout  # never a secret

    revoked = operator(service, "revoke-token", laptop.split(".")[0][:6])
    assert revoked.returncode == 0 and "laptop" in revoked.stdout and laptop.split(".")[1] not in revoked.stdout
    assert Api(service.url, laptop).get("/v1/auth/whoami").status == 401  # the next request, service running
    assert Api(service.url, ci).get("/v1/auth/whoami").status == 200  # her other token still works
    again = operator(service, "revoke-token", laptop)  # the whole token works too: it is gone already
    assert again.returncode == 1 and "no token" in again.stderr and laptop.split(".")[1] not in again.stderr
    assert operator(service, "revoke-token", "abc").returncode == 1  # too short to be sure which one

    client = Client(service.url, ci, retry_for=0)  # a user lists and revokes their own tokens
    assert [(t["token_id"], t["name"]) for t in client.list_tokens()] == [(ci.split(".")[0], "ci")]
    client.revoke_token(ci.split(".")[0])
    with pytest.raises(AuthError):
        client.whoami()


def test_a_removed_user_is_refused_and_loses_endpoints_and_sharing(
        service: ServiceProcess, interchanges: list[FakeInterchange]) -> None:
    alice, bob = Api(service.url, issue(service, "alice", "laptop")), Api(service.url, issue(service, "bob", "x"))
    endpoint = alice.register_endpoint("cluster")
    assert alice.call("PUT", f"/v1/endpoints/{endpoint['endpoint_id']}/sharing",
                      json_body={"users": ["bob"]}).status == 200
    fake = FakeInterchange(service.forwarder_address, endpoint)
    interchanges.append(fake)
    fake.register()
    poll_until(lambda: fake.pump() is not None and bob.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()
               ["status"] == "online", "alice's endpoint to be online")

    bobs = bob.register_endpoint("bobs")  # offline: alice's tasks wait there
    assert bob.call("PUT", f"/v1/endpoints/{bobs['endpoint_id']}/sharing", json_body={"users": ["alice"]}).status == 200
    function_id = alice.register_function(b"body")
    assert alice.submit({"endpoint_id": bobs["endpoint_id"], "function_id": function_id,
                         "args": [b"a", b"b", b"c"]}).status == 201
    assert bob.get(f"/v1/endpoints/{bobs['endpoint_id']}").json()["waiting_tasks"] == 3

    removed = operator(service, "remove-user", "alice")
    assert removed.returncode == 0 and "alice" in removed.stdout, removed.stderr
    assert "cancelled 3 task(s) not yet sent" in removed.stdout
    assert alice.get("/v1/auth/whoami").status == 401
    assert bob.get(f"/v1/endpoints/{endpoint['endpoint_id']}").status == 404
    assert bob.get(f"/v1/endpoints/{bobs['endpoint_id']}").json()["waiting_tasks"] == 0  # none of hers will run
    poll_until(lambda: any(isinstance(m, Shutdown) for m in fake.pump() + fake.received),
               "the removed user's endpoint to be told to stop")
    users = operator(service, "users")
    assert "bob" in users.stdout and "alice" not in users.stdout
    assert operator(service, "remove-user", "alice").returncode == 1


def test_the_store_files_are_private_even_in_a_folder_that_existed(tmp_path: Path, start_service: object) -> None:
    data_dir = tmp_path / "shared-folder"
    data_dir.mkdir(mode=0o755)
    (data_dir / "fabric.db").touch(mode=0o644)  # left by an older version, readable by everyone
    service: ServiceProcess = start_service(data_dir)  # type: ignore[operator]
    api = Api(service.url, service.add_user("alice"))
    api.register_endpoint("laptop")  # writes: the -wal and -shm files exist now
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir() if p.name.startswith("fabric.db")}
    assert set(files) == {"fabric.db", "fabric.db-wal", "fabric.db-shm"}
    assert files == dict.fromkeys(files, 0o600), {name: oct(mode) for name, mode in files.items()}

    fresh = tmp_path / "new" / "service"
    done = subprocess.run([sys.executable, "-m", "service", "add-user", "bob", "--data-dir", str(fresh)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700 and stat.S_IMODE((fresh / "fabric.db").stat().st_mode) == 0o600


def test_the_store_keeps_no_endpoint_secret_key(service: ServiceProcess) -> None:
    api = Api(service.url, service.add_user("alice"))
    endpoint = api.register_endpoint("laptop")
    rotated = api.register_endpoint("laptop", rotate_keys=True)
    for secret in (endpoint["secret_key"], rotated["secret_key"]):
        for path in service.data_dir.iterdir():
            if path.is_file() and path.name.startswith("fabric.db"):
                assert secret.encode() not in path.read_bytes(), f"an endpoint's secret key is in {path.name}"
    assert zmq.curve_public(rotated["secret_key"].encode()).decode() == rotated["public_key"]
