"""``fabric endpoint configure|start|stop|list|status`` against a real service process.

Every command runs as a real ``python -m fabric.cli`` subprocess with its own
``FABRIC_HOME``; the endpoint daemons, their managers and workers are real processes,
checked with psutil and killed by the ``endpoints`` fixture whatever happens in a test.
"""

from __future__ import annotations

import json
import re
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.endpoint_cli import (Endpoints, living, one_line_error, online,
                                        process_tree)
from tests.support.service import Api, ServiceProcess

import fabric
from fabric import cli
from endpoint.demo import pi_chunk
from endpoint.home import EndpointSettings
from fabric.errors import TaskError
from fabric.protocol import RESULT_OK, RESULT_TASK_ERROR
from fabric.serialize import SourceCode, deserialize, function_id, serialize_arguments, serialize_function

def run_pi_chunk(api: Api, endpoint_id: str, seed: int) -> int:
    """Register ``endpoint.demo.pi_chunk``, run it once on the endpoint, return its result."""
    function_id, body = serialize_function(pi_chunk)
    assert api.register_function(body, name="pi_chunk") == function_id
    submitted = api.submit({"endpoint_id": endpoint_id, "function_id": function_id,
                            "args": [serialize_arguments((seed, 1000), {}, data_only=True)]}).json()
    (kind, payload), = api.all_results(submitted["task_group_id"], 1).values()
    assert kind == RESULT_OK, payload
    return deserialize(payload)  # type: ignore[no-any-return]


# -- configure -----------------------------------------------------------------------------
def test_configure_writes_a_config_the_real_classes_accept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path))
    monkeypatch.delenv("FABRIC_SERVICE_URL", raising=False)
    assert cli.main(["endpoint", "configure", "gpu-node_1.a", "--service-url", "http://127.0.0.1:8470/",
                     "--workers", "3", "--managers", "2", "--prefetch", "4", "--accelerators", "0,1",
                     "--cpu-affinity", "list:0,1:2,3"]) == 0
    assert "fabric endpoint start gpu-node_1.a" in capsys.readouterr().out
    data = json.loads((tmp_path / "endpoints" / "gpu-node_1.a" / "config.json").read_text())
    assert data["service_url"] == "http://127.0.0.1:8470"
    assert (data["workers_per_manager"], data["local_managers"], data["prefetch"]) == (3, 2, 4)
    assert (data["accelerators"], data["cpu_affinity"]) == (["0", "1"], "list:0,1:2,3")
    assert data["provider"]["kind"] == "local" and data["scaling"] is None
    assert {"heartbeat_period", "heartbeat_threshold"} <= set(data)
    config = EndpointSettings.from_dict(data).interchange_config(
        {"forwarder_address": "tcp://127.0.0.1:9", "endpoint_id": "e"})
    assert (config.workers_per_manager, config.local_managers, config.exit_with_upstream) == (3, 2, False)

    assert cli.main(["endpoint", "configure", "gpu-node_1.a", "--service-url", "http://x"]) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setenv("FABRIC_SERVICE_URL", "https://fabric.example.org")
    assert cli.main(["endpoint", "configure", "gpu-node_1.a", "--force", "--provider", "slurm"]) == 0
    data = json.loads((tmp_path / "endpoints" / "gpu-node_1.a" / "config.json").read_text())
    assert data["service_url"] == "https://fabric.example.org"
    assert data["provider"]["kind"] == "slurm" and data["scaling"]["max_blocks"] >= 1


@pytest.mark.parametrize("args, message", [
    (["ok", "--workers", "0"], "workers_per_manager must be >= 1"),
    (["ok", "--managers", "-1"], "local_managers must be >= 0"),
    (["ok", "--prefetch", "-2"], "prefetch must be a non-negative integer"),
    (["ok", "--cpu-affinity", "sideways"], "cpu_affinity must be"),
    (["ok", "--accelerators", "0,,1"], "--accelerators"),
    (["ok", "--provider", "kubernetes"], "needs an image"),
    (["ok", "--service-url", "ftp://example.org"], "http:// or https://"),
    (["bad/name"], "bad endpoint name"),
    ([".."], "bad endpoint name"),
])
def test_configure_refuses_bad_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path))
    monkeypatch.setenv("FABRIC_SERVICE_URL", "http://127.0.0.1:8470")
    assert cli.main(["endpoint", "configure", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fabric: error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.glob("**/config.json"))


def test_configure_needs_a_service_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path))
    monkeypatch.delenv("FABRIC_SERVICE_URL", raising=False)
    assert cli.main(["endpoint", "configure", "laptop"]) == 1
    assert "service_url is missing" in capsys.readouterr().err


# -- start, list, status, stop --------------------------------------------------------------
def test_daemon_runs_tasks_until_stopped(endpoints: Endpoints, service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    endpoints.configure("laptop")
    endpoints.pid_file("laptop").write_text(f"{os.getpid()}\n")  # a stale pid file: a live pid, not the endpoint

    started = endpoints.run("start", "laptop")
    assert started.returncode == 0, started.stderr
    endpoint_id = endpoints.registration("laptop")["endpoint_id"]
    assert endpoint_id in started.stdout and "online" in started.stdout
    assert stat.S_IMODE((endpoints.folder("laptop") / "endpoint.json").stat().st_mode) == 0o600
    daemon = psutil.Process(int(endpoints.pid_file("laptop").read_text()))
    assert daemon.pid != os.getpid() and os.getpgid(daemon.pid) == daemon.pid  # its own session, outliving `start`
    assert online(api, endpoint_id)
    assert run_pi_chunk(api, endpoint_id, seed=7) == pi_chunk(7, 1000)

    listed = endpoints.run("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:4] == ["NAME", "ENDPOINT", "ID", "STATE"]
    assert listed.stdout.splitlines()[1].split() == ["laptop", endpoint_id, "running", service.url]
    relative = endpoints.run("list", env={**endpoints.env, "FABRIC_HOME": endpoints.home.name},
                             cwd=endpoints.home.parent)  # the same folder, spelled another way
    assert relative.stdout == listed.stdout, relative.stderr
    poll_until(lambda: (online(api, endpoint_id) or {}).get("workers") == 1, "the service to count the worker")
    status = endpoints.run("status", "laptop", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert (report["state"], report["pid"], report["endpoint_id"]) == ("running", daemon.pid, endpoint_id)
    assert report["service"]["status"] == "online" and report["service"]["workers"] == 1
    assert report["service"]["managers"] == 1 and report["service"]["outstanding_tasks"] == 0
    text = endpoints.run("status", "laptop").stdout
    assert "online" in text and f"pid {daemon.pid}" in text and "1 worker(s)" in text

    again = endpoints.run("start", "laptop")
    one_line_error(again, f"already running (pid {daemon.pid})")

    tree = process_tree(daemon.pid)
    assert len(tree) >= 3  # the daemon, a manager, a worker
    stopped = endpoints.run("stop", "laptop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert not living(tree) and not endpoints.pid_file("laptop").exists()
    poll_until(lambda: not online(api, endpoint_id), "the service to see the endpoint offline")
    assert "not running" in endpoints.run("stop", "laptop").stdout
    assert endpoints.run("list").stdout.splitlines()[1].split()[2] == "stopped"

    service.stop()
    status = endpoints.run("status", "laptop", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["state"] == "stopped" and report["service"] is None
    assert "cannot reach the service" in report["service_error"]


def test_foreground_endpoint_stops_on_sigterm(endpoints: Endpoints, service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    endpoints.configure("desk")
    process = endpoints.start_foreground("desk")

    def registered_and_online() -> bool:
        assert process.poll() is None, process.communicate()
        return (endpoints.folder("desk") / "endpoint.json").exists() and bool(
            online(api, endpoints.registration("desk")["endpoint_id"]))

    poll_until(registered_and_online, "the endpoint to be online")
    endpoint_id = endpoints.registration("desk")["endpoint_id"]
    assert run_pi_chunk(api, endpoint_id, seed=3) == pi_chunk(3, 1000)
    assert endpoints.run("list").stdout.splitlines()[1].split()[2] == "running"
    poll_until(lambda: len(process_tree(process.pid)) >= 3, "the manager and its worker")
    tree = process_tree(process.pid)

    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert re.search(r"exiting: (stopped|terminated) by SIGTERM", err) and "Traceback" not in err
    poll_until(lambda: not living(tree), "the manager and worker to exit")
    assert not endpoints.pid_file("desk").exists()
    poll_until(lambda: not online(api, endpoint_id), "the service to see the endpoint offline")


def test_a_daemon_that_dies_at_start_shows_its_log(endpoints: Endpoints) -> None:
    endpoints.configure("busy")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = endpoints.folder("busy") / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "manager_port": taken.getsockname()[1]}))
        started = endpoints.run("start", "busy")
    assert started.returncode == 1
    assert "did not start" in started.stderr and "Address already in use" in started.stderr, started.stderr
    assert not endpoints.pid_file("busy").exists()


def test_start_errors_are_one_line(endpoints: Endpoints, service: ServiceProcess) -> None:
    one_line_error(endpoints.run("start", "nowhere"), "no endpoint named 'nowhere'")
    endpoints.configure("laptop")
    no_token = {k: v for k, v in endpoints.env.items() if k != "FABRIC_TOKEN"}
    one_line_error(endpoints.run("start", "laptop", env=no_token), "no token for")
    one_line_error(endpoints.run("start", "laptop", env={**endpoints.env, "FABRIC_TOKEN": "wrong"}),
                   "refused the token")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert endpoints.run("configure", "laptop", "--force", "--service-url", f"http://127.0.0.1:{port}").returncode == 0
    one_line_error(endpoints.run("start", "laptop"), "cannot reach the service")
    assert not endpoints.pid_file("laptop").exists()


# -- the allow-list ------------------------------------------------------------------------
def test_configure_stores_the_allow_list_and_status_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path))
    monkeypatch.setenv("FABRIC_SERVICE_URL", "http://127.0.0.1:9")  # status: the service is unreachable
    monkeypatch.delenv("FABRIC_TOKEN", raising=False)
    config = tmp_path / "endpoints" / "lab" / "config.json"
    assert cli.main(["endpoint", "configure", "lab", "--allow-function", "f00d", "--allow-function", "beef",
                     "--allow-function", "f00d"]) == 0
    data = json.loads(config.read_text())
    assert data["allowed_functions"] == ["f00d", "beef"]
    settings = EndpointSettings.from_dict(data)
    assert settings.allowed_functions == ["f00d", "beef"]
    assert settings.interchange_config({"forwarder_address": "tcp://127.0.0.1:9", "endpoint_id": "e"}
                                       ).allowed_functions == ["f00d", "beef"]
    capsys.readouterr()
    assert cli.main(["endpoint", "status", "lab", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["allowed_functions"] == ["f00d", "beef"]
    assert cli.main(["endpoint", "status", "lab"]) == 0
    shown = capsys.readouterr().out
    assert "functions:    only f00d, beef" in shown and "arguments:    data only" in shown  # the allow-list's default
    assert cli.main(["endpoint", "configure", "lab", "--force", "--allow-function", "f00d", "--pickled-arguments",
                     "--sandbox-workers", "required"]) == 0
    assert (json.loads(config.read_text())["data_only_arguments"], json.loads(config.read_text())["sandbox_workers"]
            ) == (False, True)
    capsys.readouterr()
    assert cli.main(["endpoint", "status", "lab"]) == 0
    shown = capsys.readouterr().out
    assert "arguments:    pickles accepted" in shown
    assert "sandbox:      workers hide the fabric home (required)" in shown

    assert cli.main(["endpoint", "configure", "lab", "--force", "--allow-any-function"]) == 0
    assert json.loads(config.read_text())["allowed_functions"] is None
    capsys.readouterr()
    assert cli.main(["endpoint", "status", "lab"]) == 0
    assert "functions:    any function" in capsys.readouterr().out
    assert cli.main(["endpoint", "configure", "lab", "--force", "--allow-function", "f00d"]) == 0
    assert cli.main(["endpoint", "configure", "lab", "--force"]) == 0  # a new configuration: any function
    assert json.loads(config.read_text())["allowed_functions"] is None

    assert cli.main(["endpoint", "configure", "lab", "--force", "--allow-function", ""]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "allowed_functions must be a list of function ids" in err, err
    with pytest.raises(SystemExit) as exited:
        cli.main(["endpoint", "configure", "lab", "--force", "--allow-function", "f00d", "--allow-any-function"])
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert json.loads(config.read_text())["allowed_functions"] is None  # neither changed it


def test_start_sends_the_allow_list_and_the_endpoint_enforces_it(endpoints: Endpoints,
                                                                 service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    allowed, _ = serialize_function(pi_chunk)
    other, other_body = serialize_function(fabric.cli._version)
    assert api.register_function(other_body, name="other") == other
    endpoints.configure("lab", "--allow-function", allowed)
    started = endpoints.run("start", "lab")
    assert started.returncode == 0, started.stderr
    first = endpoints.registration("lab")
    endpoint_id = first["endpoint_id"]
    assert api.get(f"/v1/endpoints/{endpoint_id}").json()["allowed_functions"] == [allowed]
    assert run_pi_chunk(api, endpoint_id, seed=5) == pi_chunk(5, 1000)
    status = endpoints.run("status", "lab")
    assert f"functions:    only {allowed}" in status.stdout and "service list" not in status.stdout, status

    # the owner lets the service take any function: the endpoint's own list still refuses the others
    reply = api.call("PUT", f"/v1/endpoints/{endpoint_id}/allowed_functions", json_body={"allowed_functions": None})
    assert reply.status == 200, reply
    assert "service list: any function" in endpoints.run("status", "lab").stdout
    submitted = api.submit({"endpoint_id": endpoint_id, "function_id": other,
                            "args": [serialize_arguments((), {}, data_only=True)]}).json()
    (kind, payload), = api.all_results(submitted["task_group_id"], 1).values()
    assert kind == RESULT_TASK_ERROR
    error = TaskError.from_wire(msgpack.unpackb(payload, raw=False))
    assert isinstance(error, fabric.FunctionNotAllowed) and error.function_id == other

    # a new start sends the configured list again, and the daemon uses the rotated keys
    assert endpoints.run("stop", "lab").returncode == 0
    assert endpoints.run("configure", "lab", "--force", "--service-url", service.url, "--workers", "1",
                         "--allow-any-function").returncode == 0
    started = endpoints.run("start", "lab")
    assert started.returncode == 0, started.stderr
    second = endpoints.registration("lab")
    assert second["endpoint_id"] == endpoint_id
    assert (second["public_key"], second["secret_key"]) != (first["public_key"], first["secret_key"])
    assert stat.S_IMODE((endpoints.folder("lab") / "endpoint.json").stat().st_mode) == 0o600
    assert api.get(f"/v1/endpoints/{endpoint_id}").json()["allowed_functions"] is None
    assert run_pi_chunk(api, endpoint_id, seed=6) == pi_chunk(6, 1000)


def snoop(paths: list[str]) -> dict[str, str]:
    """A task that tries to read the owner's secrets: files, its environment, the memory and
    environment of its manager and of the endpoint daemon (its parent and grandparent)."""
    import os

    seen: dict[str, str] = {}

    def attempt(name: str, read: Any) -> None:
        try:
            seen[name] = read()
        except OSError as exc:
            seen[name] = f"refused: {type(exc).__name__}"

    for path in paths:
        attempt(path, lambda path=path: open(path, "rb").read().decode(errors="replace"))
    seen["environment"] = repr(dict(os.environ))
    pid = os.getppid()
    for _ in range(2):  # the manager, then the daemon
        attempt(f"/proc/{pid}/environ", lambda pid=pid: open(f"/proc/{pid}/environ", "rb").read().decode())
        attempt(f"/proc/{pid}/mem", lambda pid=pid: open(f"/proc/{pid}/mem", "rb").close() or "opened")
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rsplit(")", 1)[1].split()[1])
    return seen


def test_a_task_cannot_read_the_owners_token_or_the_endpoints_keys(endpoints: Endpoints,
                                                                   service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    endpoints.home.mkdir(parents=True, exist_ok=True)
    credentials = endpoints.home / "credentials.json"  # as `fabric login` leaves it
    credentials.write_text(json.dumps({"service_url": service.url, "token": endpoints.token}))
    credentials.chmod(0o600)
    endpoints.configure("shared", "--sandbox-workers", "required")
    started = endpoints.run("start", "shared")
    assert started.returncode == 0, started.stderr
    registration = endpoints.registration("shared")
    body = SourceCode.header + SourceCode.dumps(snoop)  # by value: the daemon cannot import this module
    assert api.register_function(body, name="snoop") == function_id(body)
    paths = [str(credentials), str(endpoints.folder("shared") / "endpoint.json"), "endpoint.json",
             str(endpoints.folder("shared") / "config.json")]
    submitted = api.submit({"endpoint_id": registration["endpoint_id"], "function_id": function_id(body),
                            "args": [serialize_arguments((paths,), {})]}).json()
    (kind, payload), = api.all_results(submitted["task_group_id"], 1).values()
    assert kind == RESULT_OK, payload
    seen = deserialize(payload)
    for secret in (endpoints.token, registration["secret_key"]):
        assert not [what for what, text in seen.items() if secret in text], seen
    assert all(seen[path] == "refused: FileNotFoundError" for path in paths), seen  # an empty folder there
    assert [text for what, text in seen.items() if what.startswith("/proc/")] == ["refused: PermissionError"] * 4


def test_concurrent_starts_leave_one_endpoint_with_the_latest_keys(endpoints: Endpoints,
                                                                   service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    endpoints.configure("twice")
    starts = [subprocess.Popen(endpoints.command("start", "twice"), env=endpoints.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outcomes = [(start.wait(timeout=3 * TIMEOUT), *start.communicate()) for start in starts]
    endpoints.remember("twice")
    assert sorted(code for code, _, _ in outcomes) == [0, 1], outcomes
    (_, _, refusal), = [outcome for outcome in outcomes if outcome[0] == 1]
    assert "already running" in refusal, refusal  # it waited for the start lock, then found the endpoint
    endpoint_id = endpoints.registration("twice")["endpoint_id"]
    assert online(api, endpoint_id)
    assert run_pi_chunk(api, endpoint_id, seed=8) == pi_chunk(8, 1000)
