"""Triggers on a real directory: a real service and endpoint, ``fabric trigger`` commands and a
``fabric trigger watch`` process; 500 files (some written slowly, in pieces) give exactly 500
runs, each on a complete file, also across a watcher killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support import TIMEOUT, poll_until

FILES, SLOW, SIZE = 500, 20, 4096


def fabric(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)


def watcher(env: dict[str, str], endpoint_id: str, state: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "fabric.cli", "trigger", "watch", "--endpoint", endpoint_id,
                             "--state-dir", str(state), "--settle", "0.5", "--poll", "0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def write_slowly(path: Path) -> None:
    with open(path, "wb") as file:
        for _ in range(4):
            file.write(b"s" * (SIZE // 4))
            file.flush()
            time.sleep(0.1)  # the writer pauses between pieces: the watcher must not take a partial file


def test_every_new_file_runs_once_and_complete_across_a_watcher_restart(cluster: Any, tmp_path: Path) -> None:
    service = cluster.service()
    token = service.add_user("beamline")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "FABRIC_SERVICE_URL": service.url,
           "FABRIC_TOKEN": token, "FABRIC_HOME": str(tmp_path / "home")}
    from fabric import Client

    registration = Client(service.url, token).register_endpoint("beamline")
    cluster.endpoint(registration)
    endpoint_id = registration["endpoint_id"]
    incoming, log, state = tmp_path / "incoming", tmp_path / "runs.log", tmp_path / "state"
    incoming.mkdir()
    refused = fabric(env, "trigger", "create", "--endpoint", endpoint_id, "--function",
                     "tests.support.sdk_functions:record_file", str(tmp_path / "missing"))
    assert refused.returncode == 1 and "may read" in refused.stderr
    created = fabric(env, "trigger", "create", "--endpoint", endpoint_id, "--function",
                     "tests.support.sdk_functions:record_file", "--max-per-minute", "100000", str(incoming))
    assert created.returncode == 0, created.stderr
    trigger = json.loads(created.stdout)
    assert [json.loads(line)["trigger_id"] for line in fabric(env, "trigger", "list").stdout.splitlines()] == [
        trigger["trigger_id"]]
    watching = watcher(env, endpoint_id, state)
    try:
        slow = [threading.Thread(target=write_slowly, args=(incoming / f"slow-{i:03d}.dat",)) for i in range(SLOW)]
        for thread in slow:
            thread.start()
        for i in range(FILES - SLOW):
            (incoming / f"file-{i:03d}.dat").write_bytes(b"f" * SIZE)
            if i == (FILES - SLOW) // 2:
                poll_until(lambda: len(runs(log)) > 0, "the first runs")
                watching.kill()  # mid-stream: the restarted watcher takes up where it stopped
                watching.wait(TIMEOUT)
                watching = watcher(env, endpoint_id, state)
        for thread in slow:
            thread.join()
        poll_until(lambda: len(runs(log)) >= FILES, "a run per file")
        settled = time.monotonic() + 2.0
        poll_until(lambda: time.monotonic() > settled, "any late duplicate to show")
    finally:
        watching.send_signal(signal.SIGTERM)
        watching.wait(TIMEOUT)
    lines = runs(log)
    assert len(lines) == FILES
    assert sorted(line.split()[0] for line in lines) == sorted(p.name for p in incoming.iterdir())
    assert {line.split()[1] for line in lines} == {str(SIZE)}  # each run saw its whole file
    assert fabric(env, "trigger", "delete", trigger["trigger_id"]).returncode == 0
    assert fabric(env, "trigger", "list").stdout == ""
