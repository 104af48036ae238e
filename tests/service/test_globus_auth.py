"""Globus Auth as the identity provider, for real: a service process introspecting tokens at a
local fake of Globus Auth (``fake_globus_auth``), and ``fabric login --globus`` getting tokens
from it (client credentials, and the native-app flow with a pasted code)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sqlite3
import stat
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_globus_auth import INTROSPECT, TOKEN, FakeGlobusAuth
from tests.support.service import Api, ServiceProcess

CLIENT_ID = str(uuid.uuid4())
CLIENT_SECRET = "service-secret"
SCOPE = f"https://auth.globus.org/scopes/{CLIENT_ID}/all"
OTHER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"


@pytest.fixture(scope="module")
def auth() -> Iterator[FakeGlobusAuth]:
    fake = FakeGlobusAuth(CLIENT_ID, CLIENT_SECRET)
    yield fake
    fake.stop()


def start(data_dir: Path, auth_url: str, **settings: object) -> ServiceProcess:
    """A service with identity "globus", its client secret in the environment (as an operator would)."""
    with pytest.MonkeyPatch.context() as patch:  # ServiceProcess's child inherits this environment
        patch.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", auth_url)
        patch.setenv("FABRIC_GLOBUS_CLIENT_SECRET", CLIENT_SECRET)
        return ServiceProcess(data_dir, identity="globus", globus_client_id=CLIENT_ID, rate_limit=0, **settings)


@pytest.fixture(scope="module")
def service(auth: FakeGlobusAuth, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = start(tmp_path_factory.mktemp("globus"), auth.url, globus_cache_seconds=60)
    yield process
    assert process.stop() == 0


def users_named(service: ServiceProcess, name: str) -> int:
    with sqlite3.connect(service.data_dir / "fabric.db") as db:
        return int(db.execute("SELECT count(*) FROM users WHERE name = ?", (name,)).fetchone()[0])


def test_an_active_token_admits_its_identity_whose_user_is_made_once(service: ServiceProcess,
                                                                     auth: FakeGlobusAuth) -> None:
    sub = str(uuid.uuid4())
    first = Api(service.url, auth.add_token(SCOPE, sub, username="ada@uni.edu")).get("/v1/auth/whoami")
    assert first.status == 200, first
    assert first.json()["name"] == "ada@uni.edu"
    second = Api(service.url, auth.add_token(SCOPE, sub, username="ada@uni.edu")).get("/v1/auth/whoami")
    assert second.status == 200 and second.json()["user_id"] == first.json()["user_id"]
    assert users_named(service, f"globus:{sub}") == 1
    other = Api(service.url, auth.add_token(SCOPE, str(uuid.uuid4()))).get("/v1/auth/whoami")
    assert other.status == 200 and other.json()["user_id"] != first.json()["user_id"]


def test_globus_users_share_by_username_or_identity_id(service: ServiceProcess, auth: FakeGlobusAuth) -> None:
    ada_sub, bob_sub, cy_sub = (str(uuid.uuid4()) for _ in range(3))
    tag = ada_sub[:6]
    ada = Api(service.url, auth.add_token(SCOPE, ada_sub, username=f"ada-{tag}@uni.edu"))
    bob = Api(service.url, auth.add_token(SCOPE, bob_sub, username=f"bob-{tag}@uni.edu"))
    cy = Api(service.url, auth.add_token(SCOPE, cy_sub, username=f"cy-{tag}@lab.org"))
    for api in (bob, cy):
        assert api.get("/v1/auth/whoami").status == 200  # each identity becomes a user on first use
    endpoint_id = ada.register_endpoint("shared")["endpoint_id"]
    shared = ada.call("PUT", f"/v1/endpoints/{endpoint_id}/sharing",
                      json_body={"users": [f"bob-{tag}@uni.edu", cy_sub]})  # a username, an identity id
    assert shared.status == 200, shared
    assert sorted(shared.json()["users"]) == [f"bob-{tag}@uni.edu", f"cy-{tag}@lab.org"]
    for api in (bob, cy):
        listed = api.get("/v1/endpoints").json()["endpoints"]
        assert [(e["endpoint_id"], e["owner"], e["access"]) for e in listed] == [
            (endpoint_id, f"ada-{tag}@uni.edu", "shared")]
    renamed = Api(service.url, auth.add_token(SCOPE, bob_sub, username=f"robert-{tag}@uni.edu"))
    assert renamed.get("/v1/auth/whoami").json()["name"] == f"robert-{tag}@uni.edu"  # same user, new name
    assert renamed.get(f"/v1/endpoints/{endpoint_id}").status == 200
    assert f"robert-{tag}@uni.edu" in ada.get(f"/v1/endpoints/{endpoint_id}/sharing").json()["users"]


@pytest.mark.parametrize("case", ["inactive", "wrong scope", "expired", "unknown", "local token"])
def test_tokens_that_are_not_good_for_the_service_get_401(service: ServiceProcess, auth: FakeGlobusAuth,
                                                          case: str) -> None:
    sub = str(uuid.uuid4())
    token = {
        "inactive": lambda: auth.add_token(SCOPE, sub, active=False),
        "wrong scope": lambda: auth.add_token(OTHER_SCOPE, sub),
        "expired": lambda: auth.add_token(SCOPE, sub, expires_in=-5),
        "unknown": lambda: "never-issued-" + uuid.uuid4().hex,
        "local token": lambda: service.add_user("local-user"),  # local tokens mean nothing here
    }[case]()
    reply = Api(service.url, token).get("/v1/auth/whoami")
    assert reply.status == 401 and reply.error_type() == "unauthorized", reply
    assert users_named(service, f"globus:{sub}") == 0


def test_answers_are_cached_so_a_busy_client_costs_one_introspection(service: ServiceProcess,
                                                                     auth: FakeGlobusAuth) -> None:
    good, bad = auth.add_token(SCOPE, str(uuid.uuid4())), auth.add_token(SCOPE, str(uuid.uuid4()), active=False)
    before = auth.requests[INTROSPECT]
    for _ in range(5):
        assert Api(service.url, good).get("/v1/auth/whoami").status == 200
        assert Api(service.url, bad).get("/v1/auth/whoami").status == 401
    assert auth.requests[INTROSPECT] - before == 2


def test_without_caching_every_request_is_checked(auth: FakeGlobusAuth, tmp_path: Path) -> None:
    service = start(tmp_path / "uncached", auth.url, globus_cache_seconds=0)
    try:
        token = auth.add_token(SCOPE, str(uuid.uuid4()))
        before = auth.requests[INTROSPECT]
        for _ in range(3):
            assert Api(service.url, token).get("/v1/auth/whoami").status == 200
        assert auth.requests[INTROSPECT] - before == 3
        auth.tokens[token] = {"active": False}  # revoked: refused at once
        assert Api(service.url, token).get("/v1/auth/whoami").status == 401
    finally:
        assert service.stop() == 0


def test_an_unreachable_identity_provider_gives_503_and_never_access(auth: FakeGlobusAuth, tmp_path: Path) -> None:
    down = FakeGlobusAuth(CLIENT_ID, CLIENT_SECRET)
    down.stop()  # its port is closed: connections are refused
    service = start(tmp_path / "down", down.url)
    try:
        reply = Api(service.url, auth.add_token(SCOPE, str(uuid.uuid4()))).get("/v1/auth/whoami")
        assert reply.status == 503 and reply.error_type() == "identity_unavailable", reply
        assert "Traceback" not in reply.body.decode()
        submit = Api(service.url, "anything").post("/v1/endpoints", json_body={"name": "x"})
        assert submit.status == 503 and submit.error_type() == "identity_unavailable"
    finally:
        assert service.stop() == 0


def test_a_wrong_service_secret_gives_503_not_401(auth: FakeGlobusAuth, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", auth.url)
        service = ServiceProcess(tmp_path / "misconfigured", identity="globus", globus_client_id=CLIENT_ID,
                                 globus_client_secret="not-the-secret")
    try:
        reply = Api(service.url, auth.add_token(SCOPE, str(uuid.uuid4()))).get("/v1/auth/whoami")
        assert reply.status == 503 and reply.error_type() == "identity_unavailable", reply
    finally:
        assert service.stop() == 0


def test_globus_identity_needs_the_client_secret(tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text(f'{{"data_dir": "{tmp_path}", "identity": "globus", "globus_client_id": "{CLIENT_ID}"}}')
    environment = {k: v for k, v in os.environ.items() if k != "FABRIC_GLOBUS_CLIENT_SECRET"}
    done = subprocess.run([sys.executable, "-m", "service", "start", "--config", str(config)], env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "FABRIC_GLOBUS_CLIENT_SECRET" in done.stderr


# -- fabric login --globus -------------------------------------------------------------------
def login(service: ServiceProcess, auth: FakeGlobusAuth, home: Path, *args: str, stdin: str = "",
          **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("FABRIC_", "GLOBUS_SDK_"))}
    environment.update(FABRIC_HOME=str(home), GLOBUS_SDK_SERVICE_URL_AUTH=auth.url, **env)
    return subprocess.run([sys.executable, "-m", "fabric.cli", "login", "--service-url", service.url, "--globus",
                           *args], input=stdin, capture_output=True, text=True, env=environment, timeout=60)


def whoami_with_stored_token(home: Path) -> str:
    check = subprocess.run(
        [sys.executable, "-c", "from fabric import Client; print(Client().whoami()['name'])"],
        capture_output=True, text=True, timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}, "FABRIC_HOME": str(home)})
    assert check.returncode == 0, check.stderr
    return check.stdout.strip()


def test_login_with_client_credentials_stores_a_token_the_service_takes(service: ServiceProcess,
                                                                        auth: FakeGlobusAuth, tmp_path: Path) -> None:
    robot = str(uuid.uuid4())
    auth.add_client("robot-client", "robot-secret", identity=robot)
    home = tmp_path / "home"
    wrong = login(service, auth, home, "--globus-scope", SCOPE,
                  FABRIC_GLOBUS_CLIENT_ID="robot-client", FABRIC_GLOBUS_CLIENT_SECRET="wrong")
    assert wrong.returncode == 1 and "Globus Auth refused" in wrong.stderr, wrong.stderr
    assert not (home / "credentials.json").exists()
    before = auth.requests[TOKEN]
    done = login(service, auth, home, FABRIC_GLOBUS_SCOPE=SCOPE,
                 FABRIC_GLOBUS_CLIENT_ID="robot-client", FABRIC_GLOBUS_CLIENT_SECRET="robot-secret")
    assert done.returncode == 0, done.stderr
    assert auth.requests[TOKEN] == before + 1
    assert stat.S_IMODE((home / "credentials.json").stat().st_mode) == 0o600
    assert whoami_with_stored_token(home) == f"{robot}@example.org"


def test_login_with_a_token_for_another_scope_is_refused_by_the_service(service: ServiceProcess,
                                                                        auth: FakeGlobusAuth, tmp_path: Path) -> None:
    auth.add_client("transfer-robot", "secret", identity=str(uuid.uuid4()))
    home = tmp_path / "home"
    done = login(service, auth, home, "--globus-scope", OTHER_SCOPE,
                 FABRIC_GLOBUS_CLIENT_ID="transfer-robot", FABRIC_GLOBUS_CLIENT_SECRET="secret")
    assert done.returncode == 1 and "401" in done.stderr, done.stderr
    assert not (home / "credentials.json").exists()


def test_login_in_a_browser_exchanges_the_pasted_code(service: ServiceProcess, auth: FakeGlobusAuth,
                                                      tmp_path: Path) -> None:
    person = str(uuid.uuid4())
    auth.add_code("code-from-the-browser", person, SCOPE)
    home = tmp_path / "home"
    missing = login(service, auth, home, "--globus-scope", SCOPE)
    assert missing.returncode == 1 and "--globus-client-id" in missing.stderr
    done = login(service, auth, home, "--globus-scope", SCOPE, "--globus-client-id", "native-app",
                 stdin="code-from-the-browser\n")
    assert done.returncode == 0, done.stderr
    url = re.search(r"(http\S+/v2/oauth2/authorize\S+)", done.stdout)
    assert url is not None, done.stdout
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url.group(1)).query)
    assert query["client_id"] == ["native-app"] and query["scope"] == [SCOPE]
    verifier = auth.verifiers[-1]  # PKCE: the exchange proves it started this flow
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query["code_challenge"] == [challenge]
    assert whoami_with_stored_token(home) == f"{person}@example.org"
