"""What the SDK retries: only what can succeed when sent again.

The refusals a real service gives for bad input come back typed and at once, however long
the client is willing to retry. For the statuses a healthy service never sends on purpose
(500, 502-504, 429 without ``Retry-After``), a real HTTP server on 127.0.0.1 answers a
script of replies and counts the requests the client made.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.support.service import ServiceProcess

from fabric import Client
from fabric.errors import BatchGone, InvalidRequest, RateLimited, ServiceInternalError, ServiceUnavailable

PATIENT = 30.0
"""``retry_for`` of the clients here: a retried failure would take this long to surface."""


class ScriptedService:
    """Answers each request with the next ``(status, headers, error type)`` of a script (then 200)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], str]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                status, headers, kind = outer.script.pop(0) if outer.script else (200, {}, "")
                body: dict[str, Any] = ({"user_id": "u", "name": "scripted"} if status == 200 else
                                        {"error": {"type": kind, "message": f"scripted {status}", "request_id": "r1"}})
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def scripted() -> Iterator[ScriptedService]:
    server = ScriptedService()
    yield server
    server.close()


def test_a_500_is_raised_at_once_with_the_services_message(scripted: ScriptedService) -> None:
    scripted.script = [(500, {}, "internal_error")]
    with pytest.raises(ServiceInternalError) as caught:
        Client(scripted.url, "token", retry_for=PATIENT).whoami()
    assert scripted.requests == 1
    assert caught.value.status == 500 and "scripted 500" in str(caught.value) and caught.value.request_id == "r1"
    assert not isinstance(caught.value, ServiceUnavailable)


def test_gateway_failures_and_unavailability_are_retried(scripted: ScriptedService) -> None:
    scripted.script = [(502, {}, ""), (503, {}, "store_unavailable"), (504, {}, "")]
    assert Client(scripted.url, "token", retry_for=PATIENT).whoami()["name"] == "scripted"
    assert scripted.requests == 4


def test_a_429_is_retried_only_when_it_says_when(scripted: ScriptedService) -> None:
    scripted.script = [(429, {"Retry-After": "0"}, "rate_limited")]
    assert Client(scripted.url, "token", retry_for=PATIENT).whoami()["name"] == "scripted"
    assert scripted.requests == 2
    scripted.script = [(429, {}, "rate_limited")]
    with pytest.raises(RateLimited) as caught:
        Client(scripted.url, "token", retry_for=PATIENT).whoami()
    assert scripted.requests == 3 and caught.value.retry_after is None


def test_a_410_is_a_typed_batch_gone(scripted: ScriptedService) -> None:
    scripted.script = [(410, {}, "batch_gone")]
    with pytest.raises(BatchGone):
        Client(scripted.url, "token", retry_for=PATIENT).whoami()
    assert scripted.requests == 1


def test_content_the_service_cannot_take_fails_at_once_naming_the_field(tmp_path: Any) -> None:
    service = ServiceProcess(tmp_path / "service", rate_limit=0)
    try:
        client = Client(service.url, service.add_user(f"patient-{uuid.uuid4().hex[:6]}"), retry_for=PATIENT)
        endpoint_id = client.register_endpoint("laptop")["endpoint_id"]
        with pytest.raises(InvalidRequest) as caught:  # was: 29 s of retried 500s, then ServiceUnavailable
            client.share_endpoint(endpoint_id, users=["\udc00"])
        assert caught.value.status == 400 and "users[0]" in str(caught.value)
        with pytest.raises(InvalidRequest) as caught:
            client.create_group("team\ud800")
        assert "'name'" in str(caught.value)
        with pytest.raises(InvalidRequest) as caught:
            client.submit_batch(endpoint_id, client.register_function(len), [b"x"],
                                resource_spec={"priority": 2**63})
        assert "resource_spec.priority" in str(caught.value)
    finally:
        log = service.read_log()
        assert service.stop() == 0
    assert "Traceback" not in log, log[-3000:]
