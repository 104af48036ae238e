"""The service process itself: ``--exit-with-parent`` leaves nothing behind when whatever
started it dies, however it dies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
from tests.support import TIMEOUT, poll_until


def test_a_service_started_with_exit_with_parent_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"data_dir": str(tmp_path / "data"), "port": 0, "forwarder_port": 0}))
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-m", "service", "start", "--config", {str(settings)!r},
                                  "--exit-with-parent"], stderr=open({str(tmp_path / "service.log")!r}, "w"))
        print(child.pid, flush=True)
        sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    service = psutil.Process(int(parent.stdout.readline()))
    poll_until(lambda: (tmp_path / "data" / "service.json").exists(), "the service to listen")
    parent.kill()
    parent.wait(TIMEOUT)
    service.wait(TIMEOUT)  # psutil.TimeoutExpired if it outlived its parent
    assert "service exiting: signalled" in (tmp_path / "service.log").read_text()  # stopped as on SIGTERM
