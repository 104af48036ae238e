"""``fabric service status`` as an operator runs it: a subprocess, with the service running or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support import TIMEOUT
from tests.support.service import Api, ServiceProcess

STATES = ("received", "waiting-for-endpoint", "waiting-for-dependencies", "dispatched", "running", "success", "failed")


def status(data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", "status", "--data-dir", str(data_dir), *options],
                          capture_output=True, text=True, timeout=TIMEOUT)


def status_json(data_dir: Path) -> dict[str, Any]:
    done = status(data_dir, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_status_of_a_running_service(start_service: Callable[..., ServiceProcess]) -> None:
    service = start_service()
    api = Api(service.url, service.add_user("alice"))
    service.add_user("bob")
    endpoint = api.register_endpoint("laptop")
    function_id = api.register_function(b"body")
    for _ in range(2):
        assert api.submit({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                           "args": [b"a", b"b", b"c"]}).status == 201

    report = status_json(service.data_dir)
    assert report["service"] == {"running": True, "pid": service.process.pid, "url": service.url}
    assert report["users"] == 2 and report["endpoints"] == {"total": 1, "online": 0}
    assert report["task_groups"] == 2
    assert report["tasks"] == {"total": 6, **dict.fromkeys(STATES, 0), "waiting-for-endpoint": 6}
    assert 0 <= report["oldest_unfinished_age"] < 60
    database = report["database"]
    assert database["path"] == str(service.data_dir / "fabric.db") and "fabric.db" in database["files"]
    assert database["bytes"] == sum(database["files"].values()) > 0

    text = status(service.data_dir)
    assert text.returncode == 0, text.stderr
    lines = dict(line.split(":", 1) for line in text.stdout.splitlines())
    assert lines["service"].strip().startswith(f"running (pid {service.process.pid}")
    assert lines["users"].strip() == "2" and lines["endpoints"].strip() == "1 (0 online)"
    assert lines["tasks"].strip().startswith("6 (received 0, waiting-for-endpoint 6,")
    assert lines["oldest unfinished task"].strip().endswith("s old")


def test_status_without_a_service(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "service", "add-user", "carol", "--data-dir", str(tmp_path)], check=True,
                   capture_output=True, timeout=TIMEOUT)
    report = status_json(tmp_path)
    assert report["service"] == {"running": False, "pid": None, "url": None}
    assert (report["users"], report["task_groups"], report["tasks"]["total"]) == (1, 0, 0)
    assert report["oldest_unfinished_age"] is None
    assert "oldest unfinished task: none" in status(tmp_path).stdout


def test_status_of_no_store_is_a_one_line_error(tmp_path: Path) -> None:
    done = status(tmp_path / "nothing here")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no store at" in done.stderr


def test_every_command_uses_one_default_data_dir(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FABRIC_")}
    env["FABRIC_HOME"] = str(tmp_path / "home")

    def service(*arguments: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service", *arguments], capture_output=True, text=True,
                              timeout=TIMEOUT, env={**env, **extra})

    assert service("add-user", "dora").returncode == 0
    default = tmp_path / "home" / "service" / "fabric.db"
    assert json.loads(service("status", "--json").stdout)["database"]["path"] == str(default)
    assert "dora" in service("users").stdout and "dora" in service("tokens", "dora").stdout
    elsewhere = tmp_path / "elsewhere"
    assert service("add-user", "erin", FABRIC_SERVICE_DIR=str(elsewhere)).returncode == 0
    assert "erin" in service("users", "--data-dir", str(elsewhere)).stdout
    assert "erin" not in service("users").stdout
    help_text = service("tokens", "--help").stdout
    assert "$FABRIC_HOME/service" in " ".join(help_text.split())
