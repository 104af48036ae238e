"""The endpoint CLI's test harness: a fabric home with its own credentials, ``fabric endpoint``
commands run as subprocesses, and what they leave behind (used by every test of ``tests/endpoint``;
its fixtures are registered by ``tests/endpoint/conftest.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import fabric
from tests.support import TIMEOUT
from tests.support.service import Api, ServiceProcess

REPOSITORY = Path(fabric.__file__).resolve().parents[1]


class Endpoints:
    """Runs ``fabric`` commands in one FABRIC_HOME and remembers every endpoint process they start."""

    def __init__(self, home: Path, service: ServiceProcess, token: str) -> None:
        self.home, self.service, self.token = home, service, token
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ("FABRIC_SERVICE_URL", "FABRIC_TOKEN", "FABRIC_LOG_LEVEL")}
        self.env.update(FABRIC_HOME=str(home), FABRIC_TOKEN=token,
                        PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])))
        self.pids: set[int] = set()  # daemons and foreground endpoints: each leads what it started
        self.foreground: list[subprocess.Popen[str]] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fabric.cli", "endpoint", *args]

    def run(self, *args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=3 * TIMEOUT,
                                  env=env or self.env, cwd=cwd, check=False)
        finally:
            self.remember(args[1] if args[0] == "start" and len(args) > 1 else None)

    def remember(self, name: str | None) -> None:
        if name is not None and self.pid_file(name).exists():
            with contextlib.suppress(ValueError):
                self.pids.add(int(self.pid_file(name).read_text()))

    def start_foreground(self, name: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(self.command("start", name, "--foreground"), env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.foreground.append(process)
        self.pids.add(process.pid)
        return process

    def configure(self, name: str, *options: str) -> None:
        completed = self.run("configure", name, "--service-url", self.service.url, "--workers", "1", *options)
        assert completed.returncode == 0, completed.stderr

    def folder(self, name: str) -> Path:
        return self.home / "endpoints" / name

    def pid_file(self, name: str) -> Path:
        return self.folder(name) / "daemon.pid"

    def registration(self, name: str) -> dict[str, Any]:
        return json.loads((self.folder(name) / "endpoint.json").read_text())  # type: ignore[no-any-return]

    def clean_up(self) -> None:
        """SIGKILL every endpoint of this test with all it started (daemons lead their process group)."""
        leaders = set(self.pids)
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if any(str(self.home) in arg for arg in process.cmdline()):
                    leaders.add(process.pid)
        doomed: list[psutil.Process] = []
        for pid in leaders:
            doomed += group_members(pid)
            with contextlib.suppress(psutil.Error):
                doomed += [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for process in living(doomed):
            with contextlib.suppress(psutil.Error):
                process.kill()
        for foreground in self.foreground:
            foreground.communicate(timeout=TIMEOUT)


def group_members(group: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == group:
                members.append(process)
    return members


def living(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive


def process_tree(pid: int) -> list[psutil.Process]:
    """The endpoint process, its managers and their workers."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def one_line_error(completed: subprocess.CompletedProcess[str], text: str) -> None:
    assert completed.returncode == 1, (completed.stdout, completed.stderr)
    assert completed.stderr.count("\n") == 1 and completed.stderr.startswith("fabric: error: "), completed.stderr
    assert text in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.fixture
def service(start_service: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_service()


@pytest.fixture
def endpoints(tmp_path: Path, service: ServiceProcess) -> Iterator[Endpoints]:
    made = Endpoints(tmp_path / "home", service, service.add_user("alice"))
    try:
        yield made
    finally:
        made.clean_up()


def online(api: Api, endpoint_id: str) -> dict[str, Any] | None:
    view = api.get(f"/v1/endpoints/{endpoint_id}").json()
    return view if view["status"] == "online" else None  # type: ignore[no-any-return]
