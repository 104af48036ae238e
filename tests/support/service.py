"""A real service process, an HTTP client, a fake interchange, a real endpoint process, an SDK
client for a new user: what the service, SDK and endpoint tests share."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

from fabric import Client, protocol
from fabric.config import InterchangeConfig
from fabric.process import child_environment
from fabric.protocol import Heartbeat, InterchangeRegistration
from tests.support import TIMEOUT, poll_until


class ServiceProcess:
    """``python -m service start`` on free ports in ``data_dir``, with ``settings`` as its config file."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "settings.json"
        config.write_text(json.dumps({"data_dir": str(data_dir), "port": 0, "forwarder_port": 0, **settings}))
        self.log = open(data_dir / "service.log", "ab")  # noqa: SIM115 - closed in stop()
        address_file = data_dir / "service.json"
        if address_file.exists():
            address_file.unlink()  # left by a killed predecessor
        self.process = subprocess.Popen([sys.executable, "-m", "service", "start", "--config", str(config),
                                         "--log-level", "INFO", "--exit-with-parent"],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        info = poll_until(lambda: self._address(address_file), "the service to listen")
        assert info is not None
        self.url: str = info["url"]
        self.forwarder_address: str = info["forwarder_address"]

    def _address(self, path: Path) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            raise AssertionError(f"the service exited with {self.process.returncode}: {self.read_log()}")
        try:
            info = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return info if info.get("pid") == self.process.pid else None

    def read_log(self) -> str:
        return (self.data_dir / "service.log").read_text(errors="replace")

    def add_user(self, name: str) -> str:
        """A token for a new user ``name`` (through the CLI, as an operator would)."""
        out = subprocess.run([sys.executable, "-m", "service", "add-user", name, "--data-dir", str(self.data_dir)],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(TIMEOUT)
        self.log.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:  # headers: case-insensitive
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def msgpack(self) -> Any:
        return msgpack.unpackb(self.body, raw=False)

    def error_type(self) -> str:
        return str(self.json()["error"]["type"])

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:200]!r})"


class Api:
    """A bare HTTP client (stdlib ``urllib``) for one user of a service."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token = url, token

    def call(self, method: str, path: str, *, json_body: Any = None, body: bytes | None = None,
             content_type: str | None = None, headers: dict[str, str] | None = None) -> Reply:
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        if content_type:
            all_headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT + 5) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, error.headers, error.read())

    def get(self, path: str, **options: Any) -> Reply:
        return self.call("GET", path, **options)

    def post(self, path: str, **options: Any) -> Reply:
        return self.call("POST", path, **options)

    def delete(self, path: str, **options: Any) -> Reply:
        return self.call("DELETE", path, **options)

    def submit(self, batch: dict[str, Any]) -> Reply:
        return self.post("/v1/batches", body=msgpack.packb(batch, use_bin_type=True),
                         content_type="application/msgpack")

    # -- a few steps most tests need ----------------------------------------------------
    def register_function(self, body: bytes, name: str = "f") -> str:
        import base64

        reply = self.post("/v1/functions", json_body={"body": base64.b64encode(body).decode(), "name": name})
        assert reply.status == 200, reply
        return str(reply.json()["function_id"])

    def register_endpoint(self, name: str, *, rotate_keys: bool = False) -> dict[str, Any]:
        reply = self.post("/v1/endpoints", json_body={"name": name, "rotate_keys": rotate_keys})
        assert reply.status in (200, 201), reply
        return reply.json()  # type: ignore[no-any-return]

    def results(self, group: str, after: int = 0, wait: float = 0.0) -> dict[str, Any]:
        reply = self.get(f"/v1/task_groups/{group}/results?after={after}&wait={wait}")
        assert reply.status == 200, reply
        return reply.msgpack()  # type: ignore[no-any-return]

    def all_results(self, group: str, count: int) -> dict[str, tuple[int, bytes]]:
        """Long-poll until ``count`` results of the group are in; task id -> (kind, payload)."""
        collected: dict[str, tuple[int, bytes]] = {}
        cursor = 0
        deadline = time.monotonic() + TIMEOUT
        while len(collected) < count:
            assert time.monotonic() < deadline, f"only {len(collected)} of {count} results arrived"
            page = self.results(group, cursor, wait=1.0)
            for task_id, kind, payload in zip(page["task_ids"], page["kinds"], page["payloads"]):
                assert task_id not in collected, f"result of {task_id} delivered twice"
                collected[task_id] = (kind, payload)
            cursor = page["cursor"]
        return collected


class FakeInterchange:
    """A DEALER with an endpoint's CurveZMQ keys, playing the part of its interchange."""

    def __init__(self, address: str, registration: dict[str, Any], *, identity: str | None = None,
                 public_key: str | None = None, secret_key: str | None = None,
                 server_key: str | None = None) -> None:
        self.endpoint_id: str = registration["endpoint_id"]
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.curve_publickey = (public_key or registration["public_key"]).encode()
        self.socket.curve_secretkey = (secret_key or registration["secret_key"]).encode()
        self.socket.curve_serverkey = (server_key or registration["server_public_key"]).encode()
        self.socket.setsockopt(zmq.IDENTITY, (identity or self.endpoint_id).encode())
        self.monitor = self.socket.get_monitor_socket()
        self.socket.connect(address)
        self.received: list[protocol.Message] = []
        self.events: list[int] = []

    def register(self) -> None:
        self.send(InterchangeRegistration(endpoint_id=self.endpoint_id, hostname=socket.gethostname(),
                                          pid=os.getpid(), manager_address="tcp://127.0.0.1:1"))

    def send(self, message: protocol.Message) -> None:
        self.socket.send_multipart(message.to_frames())

    def send_raw(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames)

    def pump(self) -> list[protocol.Message]:
        """Send a heartbeat, take in what arrived (socket and monitor events); returns the new messages."""
        with contextlib.suppress(zmq.Again):  # not connected (yet, or ever): nothing to keep alive
            self.socket.send_multipart(Heartbeat().to_frames(), zmq.NOBLOCK)
        new = []
        while self.socket.poll(0):
            new.append(protocol.decode(self.socket.recv_multipart()))
        while self.monitor.poll(0):
            from zmq.utils.monitor import recv_monitor_message

            self.events.append(recv_monitor_message(self.monitor)["event"])
        self.received += new
        return new

    def tasks(self) -> list[protocol.Task]:
        return [t for m in self.received if isinstance(m, protocol.TaskBatch) for t in m.tasks]

    def wait_for_tasks(self, count: int) -> list[protocol.Task]:
        poll_until(lambda: self.pump() is not None and len(self.tasks()) >= count, f"{count} tasks to arrive")
        return self.tasks()

    def close(self) -> None:
        self.socket.disable_monitor()
        self.monitor.close()
        self.socket.close()
        self.context.term()


CLUSTER_SETTINGS = {"heartbeat_period": 0.2, "heartbeat_threshold": 2.0, "rate_limit": 0, "max_task_bytes": 256 * 1024}
"""A service for end-to-end tests: quick heartbeats, no rate limit, 256 KiB task arguments."""


class EndpointProcess:
    """``python -m interchange`` in service mode for a registered endpoint: what `fabric endpoint start` runs."""

    def __init__(self, registration: dict[str, Any], spool: Path, workers: int = 2, *,
                 env: dict[str, str] | None = None, **settings: Any) -> None:
        config = InterchangeConfig(
            upstream_address=registration["forwarder_address"], endpoint_id=registration["endpoint_id"],
            upstream_server_key=registration["server_public_key"], upstream_public_key=registration["public_key"],
            upstream_secret_key=registration["secret_key"], spool_dir=str(spool), exit_with_upstream=False,
            workers_per_manager=workers, heartbeat_period=0.2, heartbeat_threshold=2.0, **settings)
        self.process = subprocess.Popen([sys.executable, "-m", "interchange", "--config", config.to_json()],
                                        env=child_environment(env))  # workers import sdk_functions

    def kill(self) -> None:
        """SIGKILL the interchange; returns once its managers and workers, which follow it
        (parent-death signal), are gone too."""
        tree = psutil.Process(self.process.pid).children(recursive=True)
        self.process.kill()
        self.process.wait(TIMEOUT)
        _, alive = psutil.wait_procs(tree, timeout=TIMEOUT)
        assert not alive, f"left behind: {alive}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def user(service: ServiceProcess, name: str = "alice") -> Client:
    return Client(service.url, service.add_user(f"{name}-{uuid.uuid4().hex[:6]}"))
