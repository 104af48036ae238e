"""``LocalProvider``: blocks as child processes of the interchange, on this machine.

A block is ``/bin/bash -c SCRIPT``: ``worker_init``, then the launcher's command. With one
node per block the shell ``exec``s the manager, so the block *is* the manager process.
Its calls are quick and run on the interchange's own thread, so every manager's parent
is that thread and managers exit with the interchange (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Sequence

from fabric.config import ProviderConfig
from fabric.process import child_environment, stop
from interchange.providers.base import JobState, JobStatus, Provider, script_body

logger = logging.getLogger(__name__)


class LocalProvider(Provider):
    kind = "local"
    blocking = False

    def __init__(self, config: ProviderConfig, *, label: str) -> None:
        super().__init__(config, label=label)
        self.poll_period = 0.0  # a wait() per block: cheap enough for every strategy run
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.cancelled: set[str] = set()

    def submit(self, command: str, block_id: str) -> str:
        process = subprocess.Popen(["/bin/bash", "-c", script_body(self.config, block_id, command)],
                                   env=child_environment(), stdin=subprocess.DEVNULL, close_fds=True)
        job_id = str(process.pid)
        self.processes[job_id] = process
        logger.info("block %s is local process %s", block_id, job_id)
        return job_id

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        statuses = {}
        for job_id in job_ids:
            process = self.processes.get(job_id)
            code = process.poll() if process is not None else 0
            if code is None:
                statuses[job_id] = JobStatus(JobState.RUNNING)
                continue
            self.processes.pop(job_id, None)
            if job_id in self.cancelled:
                self.cancelled.discard(job_id)
                statuses[job_id] = JobStatus(JobState.CANCELLED)
            elif code == 0:
                statuses[job_id] = JobStatus(JobState.COMPLETED)
            elif code < 0:
                statuses[job_id] = JobStatus(JobState.FAILED, f"killed by {signal.Signals(-code).name}")
            else:
                statuses[job_id] = JobStatus(JobState.FAILED, f"exit code {code}")
        return statuses

    def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            process = self.processes.get(job_id)
            if process is not None and process.poll() is None:
                self.cancelled.add(job_id)
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()

    def close(self, timeout: float = 5.0) -> None:
        """Wait for every block to end (its managers were told to stop), then end the rest."""
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(process, timeout=1.0)
        self.processes.clear()
