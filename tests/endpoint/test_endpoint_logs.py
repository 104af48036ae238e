"""``fabric endpoint logs NAME [-f]`` and the daemon's rotating log (JSON lines here), with a
real daemon and service (the fixtures of test_endpoint_cli)."""

from __future__ import annotations

import json
import subprocess

from tests.support.endpoint_cli import Endpoints
from tests.support import TIMEOUT, poll_until


def test_logs_rotate_and_follow_across_rotations(endpoints: Endpoints) -> None:
    endpoints.env.update(FABRIC_LOG_MAX_BYTES="400", FABRIC_LOG_BACKUPS="2")
    endpoints.configure("laptop")
    started = endpoints.run("start", "laptop", "--log-level", "DEBUG", "--log-format", "json")
    assert started.returncode == 0, started.stderr
    follower = subprocess.Popen(endpoints.command("logs", "laptop", "-f", "-n", "1"), env=endpoints.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        folder = endpoints.folder("laptop")
        poll_until(lambda: (folder / "endpoint.log.2").exists(), "the log to rotate twice")  # 400 bytes: ~2 lines
        assert not (folder / "endpoint.log.3").exists()  # two backups kept
        last = endpoints.run("logs", "laptop", "-n", "3")
        assert last.returncode == 0 and len(last.stdout.splitlines()) == 3, last
        assert all(json.loads(line)["logger"] for line in last.stdout.splitlines())
        assert endpoints.run("stop", "laptop").returncode == 0  # its exit lines rotate the log again
        last_lines = [(folder / name).read_text().splitlines()[-1] for name in ("endpoint.log.1", "endpoint.log")]
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=TIMEOUT)
    assert all(line in out for line in last_lines), (out, err)  # followed from one file into the next
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any("exiting: terminated by SIGTERM" in line["message"] or "stopped by SIGTERM" in line["message"]
               for line in lines), out[-2000:]


def test_logs_of_an_unknown_or_unstarted_endpoint(endpoints: Endpoints) -> None:
    missing = endpoints.run("logs", "nowhere")
    assert missing.returncode == 1 and "no endpoint named 'nowhere'" in missing.stderr
    endpoints.configure("fresh")
    fresh = endpoints.run("logs", "fresh")
    assert fresh.returncode == 0 and "has no log yet" in fresh.stderr
