"""The README's service walkthrough, run as written: its shell block line by line, then its
Python block, in a fresh ``FABRIC_HOME``, as a new user would.

Two things differ from a user's terminal, neither in what the commands do: the service
listens on free ports instead of 8470/8471 (other tests run beside this one; the README's
URL is rewritten to match, and ``--exit-with-parent`` keeps it from outliving the test),
and a line the README runs in the background (``&``) is waited on until the service
listens, as a user waits for its first line of output.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.processes import alive

import fabric

README = Path(fabric.__file__).resolve().parents[1] / "README.md"
SECTION = "## Running functions through the service"
README_URL = "http://127.0.0.1:8470"


def walkthrough() -> tuple[list[str], str]:
    """The shell lines (comments dropped) and the Python code of the README's walkthrough."""
    text = README.read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    shell = re.search(r"```bash\n(.*?)```", section, re.S)
    python = re.search(r"```python\n(.*?)```", section, re.S)
    assert shell is not None and python is not None, "the walkthrough's code blocks are missing"
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in shell.group(1).splitlines()]
    return [line for line in lines if line], python.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Terminal:
    """A user's shell: ``FABRIC_HOME`` in a temporary folder, the ``fabric`` command on the PATH."""

    def __init__(self, home: Path) -> None:
        self.home, self.log = home, home.parent / "background.log"
        self.http_port, self.forwarder_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("FABRIC_") or key == "FABRIC_LOG_LEVEL"}
        self.env.update(FABRIC_HOME=str(home), PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                                      os.environ.get("PATH", "")]))
        self.background: list[subprocess.Popen[bytes]] = []

    def adapt(self, line: str) -> str:
        line = line.replace(README_URL, self.url)
        return line.replace("fabric service start", f"fabric service start --port {self.http_port} "
                                                    f"--forwarder-port {self.forwarder_port} --exit-with-parent")

    def run(self, line: str) -> str:
        command = self.adapt(line)
        if command.endswith("&"):
            with open(self.log, "ab") as log:  # FABRIC_HOME is the user's: made by the commands alone
                self.background.append(subprocess.Popen(shlex.split(command[:-1]), env=self.env, stdout=log,
                                                        stderr=subprocess.STDOUT))
            poll_until(self.service_listens, f"`{line}` to listen")
            return ""
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=self.env, capture_output=True,
                              text=True, timeout=3 * TIMEOUT)
        assert done.returncode == 0, f"`{line}` failed ({done.returncode}): {done.stderr}"
        return done.stdout

    def service_listens(self) -> bool:
        assert all(p.poll() is None for p in self.background), self.log.read_text()
        try:
            return json.loads((self.home / "service" / "service.json").read_text())["url"] == self.url
        except (FileNotFoundError, ValueError):
            return False

    def stop(self) -> None:
        daemon = self.home / "endpoints" / "laptop" / "daemon.pid"
        if daemon.exists():
            subprocess.run(["fabric", "endpoint", "stop", "laptop"], env=self.env, capture_output=True,
                           timeout=3 * TIMEOUT)
        for process in self.background:
            process.send_signal(signal.SIGTERM)
            process.wait(TIMEOUT)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    shell = Terminal(tmp_path / "fabric-home")
    yield shell
    shell.stop()


def test_the_readme_service_walkthrough_runs_as_written(terminal: Terminal) -> None:
    lines, python = walkthrough()
    assert lines[0].startswith("fabric service start") and lines[0].endswith("&")
    outputs = {line: terminal.run(line) for line in lines}
    daemon = psutil.Process(int((terminal.home / "endpoints" / "laptop" / "daemon.pid").read_text().split()[0]))
    endpoint_id = json.loads((terminal.home / "endpoints" / "laptop" / "endpoint.json").read_text())["endpoint_id"]
    started = next(out for line, out in outputs.items() if line.startswith("fabric endpoint start"))
    assert endpoint_id in started
    status = next(out for line, out in outputs.items() if line == "fabric service status")
    assert "running (pid" in status and "1 (1 online)" in status  # the default data directory, as `start`'s

    done = subprocess.run([sys.executable, "-c", python], env=terminal.env, capture_output=True, text=True,
                          timeout=3 * TIMEOUT)  # before the fix, a lookup rotated the keys: this hung
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[:2]
    assert first.split()[0] == "49" and len(first.split()) == 2
    assert int(second) == sum(x * x for x in range(10_000))
    assert alive(daemon)  # the snippet left the running endpoint alone
