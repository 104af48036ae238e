"""Helpers of the Slurm tests: one time constant, polling, and what Slurm lists."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

from fabric import Endpoint
from fabric.protocol import StatusReport, StatusRequest
from interchange.providers.base import safe_name

TIMEOUT = 60.0
"""Seconds any wait in these tests may take (a job starts in about a second here)."""

T = TypeVar("T")


def poll_until(condition: Callable[[], T], what: str, timeout: float = TIMEOUT) -> T:
    """Call ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def jobs_of(endpoint: Endpoint) -> dict[str, str]:
    """``{job id: squeue state code}`` of the jobs of ``endpoint`` that Slurm still lists."""
    prefix = safe_name(endpoint.endpoint_id)
    listed = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%j|%t"], capture_output=True,
                            text=True, check=True, timeout=30).stdout
    jobs = {}
    for line in listed.splitlines():
        job_id, name, state = line.strip().split("|")
        if name.startswith(prefix):
            jobs[job_id] = state
    return jobs


def live_jobs(endpoint: Endpoint) -> dict[str, str]:
    """The jobs of ``endpoint`` that are pending or running."""
    return {job: state for job, state in jobs_of(endpoint).items() if state in ("PD", "CF", "R", "CG")}


def report(endpoint: Endpoint) -> StatusReport:
    """The interchange's whole status report, blocks included."""
    return endpoint._request(lambda rid: StatusRequest(request_id=rid), TIMEOUT)  # noqa: SLF001
