"""``SlurmProvider``: blocks as Slurm batch jobs (``sbatch``, ``squeue``, ``scancel``).

The job script is rendered from the provider configuration (``render_script``): one
``#SBATCH`` line per setting, then ``worker_init``, then the launcher's command
(``srun`` for blocks of several nodes). Job states come from ``squeue``; a job that
``squeue`` no longer lists is looked up with ``sacct`` (which needs Slurm's accounting
database; without one it is not asked again), then with ``scontrol show job``; a job
that none of them knows has ended and is reported ``COMPLETED``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from fabric.config import ProviderConfig
from interchange.providers.base import (BatchProvider, CommandRunner, JobState, JobStatus, ProviderError,
                                        format_walltime, run_command, script_body)

logger = logging.getLogger(__name__)

# squeue's compact state codes and sacct's / scontrol's state names.
STATES = {
    "PD": JobState.PENDING, "CF": JobState.PENDING, "RQ": JobState.PENDING, "RF": JobState.PENDING,
    "RH": JobState.HELD, "RS": JobState.HELD, "S": JobState.HELD, "ST": JobState.HELD, "SO": JobState.RUNNING,
    "R": JobState.RUNNING, "CG": JobState.RUNNING, "SI": JobState.RUNNING, "RD": JobState.HELD,
    "CD": JobState.COMPLETED, "F": JobState.FAILED, "NF": JobState.FAILED, "OOM": JobState.FAILED,
    "BF": JobState.FAILED, "DL": JobState.TIMEOUT, "PR": JobState.CANCELLED, "CA": JobState.CANCELLED,
    "TO": JobState.TIMEOUT, "SE": JobState.FAILED, "RV": JobState.CANCELLED,
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING, "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING, "REQUEUE_HOLD": JobState.HELD, "RESV_DEL_HOLD": JobState.HELD,
    "SUSPENDED": JobState.HELD, "STOPPED": JobState.HELD, "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING, "SIGNALING": JobState.RUNNING, "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING, "COMPLETED": JobState.COMPLETED, "FAILED": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED, "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.TIMEOUT, "TIMEOUT": JobState.TIMEOUT, "PREEMPTED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED, "REVOKED": JobState.CANCELLED, "SPECIAL_EXIT": JobState.FAILED,
}

_UNKNOWN_JOB = re.compile(r"invalid job id", re.IGNORECASE)
_NO_ACCOUNTING = re.compile(r"accounting storage is disabled|slurmdbd|Connection refused", re.IGNORECASE)
_ALREADY_DONE = re.compile(r"already completing or completed|invalid job id", re.IGNORECASE)


def slurm_state(name: str) -> JobState:
    """A squeue code or a sacct/scontrol state name (``CANCELLED by 0`` too) as a ``JobState``."""
    word = name.split()[0].rstrip("+").upper() if name.strip() else ""
    return STATES.get(word, JobState.PENDING if not word else JobState.FAILED)


class SlurmProvider(BatchProvider):
    kind = "slurm"
    script_suffix = ".sbatch"

    def __init__(self, config: ProviderConfig, *, label: str, runner: CommandRunner = run_command) -> None:
        super().__init__(config, label=label, runner=runner)
        self.use_sacct = True

    # -- the script ----------------------------------------------------------------------
    def directives(self, block_id: str) -> list[str]:
        c = self.config
        lines = [f"--job-name={self.job_name(block_id)}", f"--output={self.output_path(block_id, 'out')}",
                 f"--error={self.output_path(block_id, 'err')}", f"--nodes={c.nodes_per_block}",
                 "--ntasks-per-node=1"]
        optional = {"--partition": c.partition, "--account": c.account, "--qos": c.qos,
                    "--cpus-per-task": c.cores_per_node, "--gpus-per-node": c.gpus_per_node,
                    "--mem": f"{c.mem_per_node}M" if c.mem_per_node else None,
                    "--time": format_walltime(c.walltime) if c.walltime else None}
        lines += [f"{flag}={value}" for flag, value in optional.items() if value is not None]
        if c.exclusive:
            lines.append("--exclusive")
        return [f"#SBATCH {line}" for line in lines] + [
            line if line.startswith("#") else f"#SBATCH {line}" for line in c.scheduler_options]

    def render_script(self, command: str, block_id: str) -> str:
        header = "\n".join(["#!/bin/bash", *self.directives(block_id)])
        return f"{header}\n\n{script_body(self.config, block_id, command)}"

    # -- the calls -----------------------------------------------------------------------
    def submit(self, command: str, block_id: str) -> str:
        path = self.write_script(block_id, self.render_script(command, block_id))
        output = self.run(["sbatch", "--parsable", str(path)]).strip()
        job_id = output.splitlines()[-1].split(";")[0].strip() if output else ""
        if not job_id.isdigit():
            raise ProviderError(["sbatch", "--parsable", str(path)], 0, f"no job id in sbatch's output {output!r}")
        logger.info("block %s is Slurm job %s", block_id, job_id)
        self.blocks[job_id] = block_id
        return job_id

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        if not job_ids:
            return {}
        statuses = self._squeue(job_ids)
        for job_id in [j for j in job_ids if j not in statuses]:
            statuses[job_id] = self._finished(job_id)
        return statuses

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        result = self.runner(["scancel", *job_ids], None)
        if result.exit_code != 0 and not _ALREADY_DONE.search(result.stderr):
            raise ProviderError(["scancel", *job_ids], result.exit_code, result.stderr)

    # -- status sources ------------------------------------------------------------------
    def _squeue(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["squeue", "--noheader", "--states=all", "--format=%i|%t|%r", f"--jobs={','.join(job_ids)}"]
        result = self.runner(argv, None)
        if result.exit_code != 0:
            if _UNKNOWN_JOB.search(result.stderr):  # none of them is known any more
                return {}
            raise ProviderError(argv, result.exit_code, result.stderr)
        statuses = {}
        for line in result.stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) >= 2 and fields[0] in job_ids:
                reason = fields[2] if len(fields) > 2 and fields[2] not in ("None", "") else ""
                statuses[fields[0]] = self.with_detail(fields[0], JobStatus(slurm_state(fields[1]), reason))
        return statuses

    def _finished(self, job_id: str) -> JobStatus:
        """A job squeue does not list: ask sacct, then scontrol; unknown means ended."""
        if self.use_sacct:
            result = self.runner(["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", job_id,
                                  "--format=State,ExitCode"], None)
            if result.exit_code == 0 and result.stdout.strip():
                state, _, code = result.stdout.strip().splitlines()[0].partition("|")
                return self.with_detail(job_id, JobStatus(slurm_state(state), f"exit code {code}" if code else ""))
            if result.exit_code != 0 and _NO_ACCOUNTING.search(result.stderr + result.stdout):
                logger.info("sacct unavailable (%s): job states come from squeue and scontrol",
                            result.stderr.strip() or result.stdout.strip())
                self.use_sacct = False
        result = self.runner(["scontrol", "show", "job", job_id], None)
        if result.exit_code == 0:
            fields = dict(re.findall(r"(\w+)=(\S*)", result.stdout))
            detail = " ".join(f"{k}={fields[k]}" for k in ("Reason", "ExitCode") if fields.get(k) not in (None, "None"))
            return self.with_detail(job_id, JobStatus(slurm_state(fields.get("JobState", "")), detail))
        if _UNKNOWN_JOB.search(result.stderr):
            return JobStatus(JobState.COMPLETED, "no longer known to Slurm")
        raise ProviderError(["scontrol", "show", "job", job_id], result.exit_code, result.stderr)
