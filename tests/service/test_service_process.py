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

from service.store import NewTasks, SQLiteStore


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


def test_a_store_with_a_smashed_page_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "fabric.db")
    for _ in range(10):
        store.add_tasks("alice", NewTasks(endpoint_id="e", function_ids=["f"] * 200,
                                          payloads=[bytes(300)] * 200), "received")
    store.close()
    path = tmp_path / "fabric.db"
    pages = path.stat().st_size // 4096
    assert pages > 100
    with open(path, "r+b") as file:  # a page in the middle, as a bad disk sector or a stray write leaves it
        file.seek(pages // 2 * 4096)
        file.write(b"\xa5" * 4096)
    done = subprocess.run([sys.executable, "-m", "service", "start", "--data-dir", str(tmp_path), "--port", "0",
                           "--forwarder-port", "0", "--log-level", "ERROR"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"the store {path} is damaged" in done.stderr and "restore it from a backup" in done.stderr
    assert not (tmp_path / "service.json").exists()  # it never listened
