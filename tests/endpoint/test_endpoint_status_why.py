"""``fabric endpoint status`` says why an endpoint is stopped or cannot connect: stopped,
crashed (with the log's tail), killed without a word, or its keys rotated by another start.
Real ``fabric`` subprocesses, real daemons, a real service (the fixtures of test_endpoint_cli)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket

import psutil
from tests.support.endpoint_cli import Endpoints, online
from tests.support import poll_until
from tests.support.service import Api, ServiceProcess


def diagnosis(endpoints: Endpoints, name: str) -> tuple[dict, str]:
    report = endpoints.run("status", name, "--json")
    assert report.returncode == 0, report.stderr
    text = endpoints.run("status", name)
    assert text.returncode == 0, text.stderr
    return json.loads(report.stdout)["diagnosis"], text.stdout


def test_status_says_stopped_then_killed(endpoints: Endpoints, service: ServiceProcess) -> None:
    endpoints.configure("laptop")
    assert endpoints.run("start", "laptop").returncode == 0
    assert diagnosis(endpoints, "laptop")[0] is None  # running and online: nothing to explain
    assert endpoints.run("stop", "laptop").returncode == 0
    found, text = diagnosis(endpoints, "laptop")
    assert found["why"] == "stopped" and "SIGTERM" in found["reason"] and not found["log_tail"]
    assert "why:          stopped at " in text

    assert endpoints.run("start", "laptop").returncode == 0
    assert diagnosis(endpoints, "laptop")[0] is None  # the new daemon cleared the old exit
    daemon = int(endpoints.pid_file("laptop").read_text())
    tree = [psutil.Process(daemon), *psutil.Process(daemon).children(recursive=True)]
    os.killpg(daemon, signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    found, text = diagnosis(endpoints, "laptop")
    assert found["why"] == "crashed" and "without recording why" in found["reason"]
    assert "starting, pid" in found["log_tail"] and "log tail:" in text


def test_status_shows_a_crash_with_the_log_tail(endpoints: Endpoints) -> None:
    endpoints.configure("busy")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = endpoints.folder("busy") / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "manager_port": taken.getsockname()[1]}))
        assert endpoints.run("start", "busy").returncode == 1
    found, text = diagnosis(endpoints, "busy")
    assert found["why"] == "crashed" and "Address already in use" in found["reason"]
    assert "Traceback" in found["log_tail"] and "Address already in use" in text


def test_status_says_the_keys_were_rotated(endpoints: Endpoints, service: ServiceProcess) -> None:
    api = Api(service.url, endpoints.token)
    endpoints.configure("shared")
    assert endpoints.run("start", "shared").returncode == 0
    endpoint_id = endpoints.registration("shared")["endpoint_id"]
    elsewhere = Endpoints(endpoints.home.parent / "elsewhere", service, endpoints.token)
    try:
        shutil.copytree(endpoints.folder("shared"), elsewhere.folder("shared"),
                        ignore=shutil.ignore_patterns("daemon.pid", "*.log", "spool", "start.lock"))
        assert elsewhere.run("start", "shared").returncode == 0  # new keys: the first daemon's are refused
        assert elsewhere.run("stop", "shared").returncode == 0
    finally:
        elsewhere.clean_up()
    assert not online(api, endpoint_id)

    def rotated() -> dict | None:
        found = diagnosis(endpoints, "shared")[0]
        return found if found and found["why"] == "keys rotated" else None

    found = poll_until(rotated, "status to say the keys were rotated")
    assert "registered again with new keys" in found["reason"], found
    assert "fabric endpoint start shared" in found["reason"] and "revoked" in found["log_tail"]
