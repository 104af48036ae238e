"""``PBSProProvider``: blocks as PBS Pro batch jobs (``qsub``, ``qstat``, ``qdel``).

The job script asks for ``select=N:ncpus=C:mem=M:ngpus=G`` chunks, the walltime, the
queue (``partition``) and account, and starts one manager per node with ``mpiexec``.
Job states come from ``qstat -f -x -F json`` (``-x`` keeps finished jobs, with their
exit status); a job qstat no longer knows has ended and is reported ``COMPLETED``.
No PBS Pro server runs on the machines the tests run on: the tests check the rendered
scripts and the exact command lines and parse recorded ``qstat`` output.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from interchange.providers.base import (BatchProvider, JobState, JobStatus, ProviderError, format_walltime,
                                        script_body)

logger = logging.getLogger(__name__)

STATES = {
    "Q": JobState.PENDING, "W": JobState.PENDING, "T": JobState.PENDING, "B": JobState.RUNNING,
    "H": JobState.HELD, "S": JobState.HELD, "U": JobState.HELD, "R": JobState.RUNNING, "E": JobState.RUNNING,
    "X": JobState.COMPLETED, "M": JobState.CANCELLED,
}

_UNKNOWN_JOB = re.compile(r"unknown job id|job has finished", re.IGNORECASE)

EXIT_STATUS_WALLTIME = -29
"""PBS Pro's ``Exit_status`` for a job killed at its walltime (JOB_EXEC_KILL_WALLTIME)."""


def pbs_status(job: dict[str, Any]) -> JobStatus:
    """One job of ``qstat -f -F json`` as a ``JobStatus``."""
    code = str(job.get("job_state", ""))
    if code != "F":
        comment = str(job.get("comment", ""))
        return JobStatus(STATES.get(code, JobState.PENDING), comment)
    exit_status = job.get("Exit_status")
    if exit_status == 0:
        return JobStatus(JobState.COMPLETED)
    if exit_status == EXIT_STATUS_WALLTIME:
        return JobStatus(JobState.TIMEOUT, "walltime exceeded")
    if isinstance(exit_status, int) and exit_status > 256:  # 256 + signal: killed, e.g. by qdel
        return JobStatus(JobState.CANCELLED, f"killed by signal {exit_status - 256}")
    return JobStatus(JobState.FAILED, f"exit status {exit_status}")


class PBSProProvider(BatchProvider):
    kind = "pbspro"
    script_suffix = ".pbs"

    def directives(self, block_id: str) -> list[str]:
        c = self.config
        chunk = [f"select={c.nodes_per_block}"]
        chunk += [f"{name}={value}" for name, value in (("ncpus", c.cores_per_node), ("ngpus", c.gpus_per_node))
                  if value is not None]
        if c.mem_per_node is not None:
            chunk.append(f"mem={c.mem_per_node}mb")
        lines = [f"-N {self.job_name(block_id)[:15]}", f"-o {self.output_path(block_id, 'out')}",
                 f"-e {self.output_path(block_id, 'err')}", f"-l {':'.join(chunk)}",
                 f"-l place={'scatter:excl' if c.exclusive else 'scatter'}", "-V"]
        if c.walltime is not None:
            lines.append(f"-l walltime={format_walltime(c.walltime)}")
        if c.partition:
            lines.append(f"-q {c.partition}")
        if c.account:
            lines.append(f"-A {c.account}")
        return [f"#PBS {line}" for line in lines] + [
            line if line.startswith("#") else f"#PBS {line}" for line in c.scheduler_options]

    def render_script(self, command: str, block_id: str) -> str:
        header = "\n".join(["#!/bin/bash", *self.directives(block_id)])
        return f"{header}\n\n{script_body(self.config, block_id, command)}"

    def submit(self, command: str, block_id: str) -> str:
        path = self.write_script(block_id, self.render_script(command, block_id))
        job_id = self.run(["qsub", str(path)]).strip()
        if not job_id:
            raise ProviderError(["qsub", str(path)], 0, "qsub printed no job id")
        logger.info("block %s is PBS job %s", block_id, job_id)
        self.blocks[job_id] = block_id
        return job_id

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        argv = ["qstat", "-f", "-x", "-F", "json", *job_ids]
        result = self.runner(argv, None)
        if result.exit_code != 0 and not result.stdout.strip():
            if not _UNKNOWN_JOB.search(result.stderr):
                raise ProviderError(argv, result.exit_code, result.stderr)
            jobs: dict[str, Any] = {}
        else:  # qstat exits non-zero when some ids are unknown, and still prints the others
            try:
                jobs = json.loads(result.stdout).get("Jobs", {}) or {}
            except ValueError as exc:
                raise ProviderError(argv, result.exit_code, f"qstat printed no JSON: {exc}") from exc
        statuses = {}
        for job_id in job_ids:
            job = jobs.get(job_id) or next((v for k, v in jobs.items() if k.split(".")[0] == job_id.split(".")[0]),
                                           None)
            status = pbs_status(job) if job is not None else JobStatus(JobState.COMPLETED, "no longer known to PBS")
            statuses[job_id] = self.with_detail(job_id, status)
        return statuses

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        result = self.runner(["qdel", *job_ids], None)
        if result.exit_code != 0 and not _UNKNOWN_JOB.search(result.stderr):
            raise ProviderError(["qdel", *job_ids], result.exit_code, result.stderr)
