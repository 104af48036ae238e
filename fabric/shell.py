"""Running a shell command for ``ShellFunction`` / ``MPIFunction`` (where the task runs: a worker).

``run_command`` starts ``/bin/bash -c CMD`` in its own session (process group), in a
per-task sandbox directory, and reads its stdout and stderr through pipes as they come:
only the last ``snippet_lines`` lines (and at most ``snippet_bytes`` bytes) of each are
kept, so a command that prints gigabytes never has its output held whole. Where the
caller named files, the whole output also goes there. At ``walltime`` the whole process
group is killed (SIGTERM, then SIGKILL after ``KILL_GRACE``) and the return code is 124,
like ``timeout(1)``; once the command itself exits, whatever it left running in its
group is killed too, so no pipe is held open by an orphan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import signal
import subprocess
import tempfile
import time
from typing import IO

KILL_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL to a command's process group past its walltime."""

SANDBOX_ROOT_VARIABLE = "FABRIC_TASK_SANDBOX_ROOT"
"""Environment variable naming the folder under which each task gets its sandbox folder."""

CHUNK = 1 << 16
POLL = 0.25
"""Seconds between checks whether the command exited while something else holds its pipes."""


class Tail:
    """The last ``lines`` lines of a byte stream, holding at most about ``max_bytes``."""

    def __init__(self, lines: int, max_bytes: int) -> None:
        self.lines, self.max_bytes = lines, max_bytes
        self.buffer = bytearray()
        self.truncated = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 2 * self.max_bytes:
            del self.buffer[:len(self.buffer) - self.max_bytes]
            self.truncated = True

    def text(self) -> str:
        data = bytes(self.buffer[-self.max_bytes:]) if self.max_bytes else b""
        if self.lines <= 0:
            return ""
        kept = data.splitlines(keepends=True)[-self.lines:]
        return b"".join(kept).decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What ``run_command`` saw: exit status, output tails, why it failed (if it did)."""

    returncode: int
    stdout: str
    stderr: str
    exception_name: str | None
    sandbox: str


def make_sandbox(root: str | None = None) -> str:
    """A fresh folder for one task under ``root`` (default: ``$FABRIC_TASK_SANDBOX_ROOT``,
    else ``<tmp>/fabric-tasks-<uid>``)."""
    root = root or os.environ.get(SANDBOX_ROOT_VARIABLE) or os.path.join(tempfile.gettempdir(),
                                                                          f"fabric-tasks-{os.getuid()}")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return tempfile.mkdtemp(prefix="task-", dir=root)


def run_command(cmd: str, *, walltime: float | None = None, snippet_lines: int = 1000,
                snippet_bytes: int = 1 << 20, stdout_path: str | None = None, stderr_path: str | None = None,
                sandbox: str | None = None, env: dict[str, str] | None = None) -> CommandOutcome:
    """Run ``cmd`` with bash in a sandbox folder; see the module docstring."""
    sandbox = sandbox or make_sandbox()
    tails = {name: Tail(snippet_lines, snippet_bytes) for name in ("stdout", "stderr")}
    files: dict[str, IO[bytes] | None] = {"stdout": _open(stdout_path, sandbox), "stderr": _open(stderr_path, sandbox)}
    exception_name = None
    try:
        process = subprocess.Popen(["/bin/bash", "-c", cmd], cwd=sandbox, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                   env=env)
    except OSError as exc:  # e.g. no /bin/bash: reported like a shell's "not found"
        return CommandOutcome(127, "", str(exc), type(exc).__name__, sandbox)
    try:
        timed_out = _pump(process, tails, files, walltime)
    finally:
        _kill_group(process.pid, signal.SIGKILL)
        process.wait()
        for file in files.values():
            if file is not None:
                file.close()
    returncode = process.returncode
    if timed_out:
        returncode, exception_name = 124, "subprocess.TimeoutExpired"
    elif returncode != 0:
        exception_name = "subprocess.CalledProcessError"
    with contextlib.suppress(OSError):  # an empty sandbox is not worth keeping
        os.rmdir(sandbox)
    return CommandOutcome(returncode, tails["stdout"].text(), tails["stderr"].text(), exception_name, sandbox)


def _open(path: str | None, sandbox: str) -> IO[bytes] | None:
    if path is None:
        return None
    path = os.path.join(sandbox, path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, "ab")


def _pump(process: subprocess.Popen[bytes], tails: dict[str, Tail], files: dict[str, IO[bytes] | None],
          walltime: float | None) -> bool:
    """Read both pipes until they close; True if the walltime ran out first."""
    deadline = None if walltime is None else time.monotonic() + walltime
    killed_at: float | None = None
    with selectors.DefaultSelector() as selector:
        assert process.stdout is not None and process.stderr is not None
        selector.register(process.stdout, selectors.EVENT_READ, "stdout")
        selector.register(process.stderr, selectors.EVENT_READ, "stderr")
        while selector.get_map():
            timeout = POLL if deadline is None else min(POLL, max(0.0, deadline - time.monotonic()))
            events = selector.select(timeout if process.poll() is None else 0.05)
            for key, _ in events:
                data = os.read(key.fd, CHUNK)
                if not data:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    continue
                tails[key.data].feed(data)
                file = files[key.data]
                if file is not None:
                    file.write(data)
            if not events and process.poll() is not None:  # exited; an orphan holds the pipes
                _kill_group(process.pid, signal.SIGKILL)
            if deadline is not None and killed_at is None and time.monotonic() >= deadline:
                killed_at = time.monotonic()
                _kill_group(process.pid, signal.SIGTERM)
            if killed_at is not None and time.monotonic() - killed_at >= KILL_GRACE:
                _kill_group(process.pid, signal.SIGKILL)
    return killed_at is not None


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
