"""Helpers of the Slurm tests: one time constant, polling, and what Slurm lists."""

from __future__ import annotations

import functools
import subprocess

from fabric import Endpoint
from fabric.protocol import StatusReport, StatusRequest
from interchange.providers.base import safe_name
from tests import support

TIMEOUT = 60.0
"""Seconds any wait in these tests may take (a job starts in about a second here)."""

poll_until = functools.partial(support.poll_until, timeout=TIMEOUT)
"""``tests.support.poll_until`` with this folder's longer ``TIMEOUT``."""


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
