"""The provider interface: how an interchange gets *blocks* of nodes that run managers.

A block is one unit of allocation: a batch job (Slurm, PBS Pro), a pod (Kubernetes) or a
local process. It runs ``nodes_per_block`` managers, one per node, all started by one
shell command that a launcher (``interchange.providers.launchers``) builds. A provider
only does three things, each a plain blocking call:

* ``submit(command, block_id) -> job_id``: start a block running ``command``;
* ``status(job_ids) -> {job_id: JobStatus}``: where each job is (every id asked about is
  answered; a job the scheduler no longer knows has ended: ``COMPLETED``, or
  ``CANCELLED`` for a pod that was deleted);
* ``cancel(job_ids)``: give the blocks back (a job that already ended is not an error).

Deciding *when* to call them is the sans-IO ``interchange.strategy``'s job; running them
off the interchange's loop is ``interchange.scaling``'s. Providers that talk to a batch
scheduler run its commands through a ``CommandRunner``, so tests can check the exact
command lines and scripts where no such scheduler can run. A failed command raises
``ProviderError`` carrying the command, its exit status and its stderr.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import enum
import logging
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from fabric.config import ProviderConfig
from fabric.errors import FabricError

logger = logging.getLogger(__name__)

COMMAND_TIMEOUT = 60.0
"""Seconds any scheduler command may take before it counts as failed."""


class ProviderError(FabricError):
    """A scheduler command failed: ``command`` exited with ``exit_code``, saying ``stderr``."""

    def __init__(self, command: Sequence[str], exit_code: int | None, stderr: str) -> None:
        super().__init__(list(command), exit_code, stderr)
        self.command, self.exit_code, self.stderr = list(command), exit_code, stderr

    def __str__(self) -> str:
        return f"{' '.join(self.command[:3])} ... exited with {self.exit_code}: {self.stderr.strip()[:500]}"


class JobState(enum.Enum):
    """Where a block's job is, in the words every provider maps its scheduler's states to."""

    PENDING = "pending"      # queued, waiting for nodes
    HELD = "held"            # held by the scheduler or an administrator
    RUNNING = "running"      # started (managers may still be starting)
    COMPLETED = "completed"  # ended with exit status 0, or no longer known to the scheduler
    FAILED = "failed"        # ended with a non-zero exit status, or the node failed
    CANCELLED = "cancelled"  # cancelled (by us or by someone else)
    TIMEOUT = "timeout"      # killed at its walltime

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT})


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state, and for an ended job what the scheduler said about it."""

    state: JobState
    message: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


CommandRunner = Callable[[Sequence[str], "str | None"], CommandResult]
"""``runner(argv, stdin_text) -> CommandResult``: how providers run scheduler commands."""


def run_command(argv: Sequence[str], stdin: str | None = None) -> CommandResult:
    """Run ``argv`` (no shell), with ``stdin`` as its input; a missing program or a timeout
    is reported as exit status 127 or 124, like a shell would."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        return CommandResult(127, "", str(exc))
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"timed out after {COMMAND_TIMEOUT} s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


class Provider(abc.ABC):
    """Starts, watches and cancels blocks. Subclasses set ``kind`` and implement the calls.

    ``label`` names this endpoint's jobs (``{label}-{block_id}``); ``blocking`` says whether
    the calls may take long (they then run off the interchange's loop); ``poll_period``
    is how often ``status`` should be asked (batch schedulers dislike being polled often).
    """

    kind: ClassVar[str]
    blocking: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig, *, label: str) -> None:
        self.config = config
        self.label = label
        self.poll_period = config.poll_period

    @abc.abstractmethod
    def submit(self, command: str, block_id: str) -> str:
        """Start a block that runs ``command``; returns its job id."""

    @abc.abstractmethod
    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of each of ``job_ids``."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel ``job_ids``; jobs that already ended are ignored."""

    def close(self, timeout: float = 5.0) -> None:
        """Release what the provider itself holds (not the jobs: cancel those first)."""

    def job_name(self, block_id: str) -> str:
        return safe_name(f"{self.label}-{block_id}")


class BatchProvider(Provider):
    """Shared by providers that submit a rendered script to a batch scheduler.

    Scripts, and the job's stdout and stderr, go to ``config.script_dir`` (default: a
    world-readable folder under the system's temporary directory), which the job must be
    able to read: on a cluster, a shared file system.
    """

    script_suffix: ClassVar[str] = ".sh"

    def __init__(self, config: ProviderConfig, *, label: str, runner: CommandRunner = run_command) -> None:
        super().__init__(config, label=label)
        self.runner = runner
        self.script_dir = Path(config.script_dir or default_script_dir(label))
        self.blocks: dict[str, str] = {}  # job id -> block id, for failure reports

    def run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        result = self.runner(argv, stdin)
        if result.exit_code != 0:
            raise ProviderError(argv, result.exit_code, result.stderr or result.stdout)
        return result.stdout

    def write_script(self, block_id: str, text: str) -> Path:
        self.script_dir.mkdir(parents=True, exist_ok=True)
        path = self.script_dir / f"{self.job_name(block_id)}{self.script_suffix}"
        path.write_text(text)
        path.chmod(0o755)
        return path

    def output_path(self, block_id: str, stream: str) -> Path:
        return self.script_dir / f"{self.job_name(block_id)}.{stream}"

    def tail(self, block_id: str, stream: str = "err", lines: int = 5) -> str:
        """The last lines a block's job wrote to ``stream`` (for failure reports)."""
        try:
            text = self.output_path(block_id, stream).read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def with_detail(self, job_id: str, status: JobStatus) -> JobStatus:
        """A failed job's status, with the end of what it wrote to stderr."""
        if status.state not in (JobState.FAILED, JobState.TIMEOUT) or job_id not in self.blocks:
            return status
        tail = self.tail(self.blocks[job_id])
        return JobStatus(status.state, "; ".join(part for part in (status.message, tail) if part))


def default_script_dir(label: str) -> str:
    """A per-endpoint folder for job scripts and logs that any job on this host can read."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / "fabric-blocks" / safe_name(label)
    folder.mkdir(parents=True, exist_ok=True)
    for path in (folder.parent, folder):
        with contextlib.suppress(OSError):  # someone else's folder: leave it as it is
            path.chmod(0o755)
    return str(folder)


def safe_name(text: str, limit: int = 63) -> str:
    """``text`` reduced to lower-case letters, digits and dashes (a DNS label; any job name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:limit].rstrip("-") or "fabric"


def format_walltime(seconds: float) -> str:
    """``HH:MM:SS`` (hours may exceed 24), rounded up to the next whole second."""
    total = int(-(-seconds // 1))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def drain_at_line(config: ProviderConfig) -> str:
    """The job-script line that tells managers when to drain (nothing without a walltime)."""
    if config.walltime is None:
        return ""
    lead = int(config.walltime - config.effective_drain_margin)
    return f"export FABRIC_DRAIN_AT=$(( $(date +%s) + {lead} ))\n"


def script_body(config: ProviderConfig, block_id: str, command: str) -> str:
    """What every batch script runs after its scheduler directives."""
    init = "".join(f"{line}\n" for line in config.worker_init)
    return (f"{init}export FABRIC_BLOCK_ID={block_id}\n{drain_at_line(config)}"
            f"{command}\n")
