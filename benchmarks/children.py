"""Cells in child processes: run one, take its JSON line, never leave its processes behind.

A cell (``python -m benchmarks.endpoint ...``, ``benchmarks.service``, ``benchmarks.peers
--cell ...``) starts processes of its own: an interchange, managers, workers, a service.
When a cell runs past its time or the sweep is interrupted, the cell is interrupted first
(SIGINT, so its own clean-up stops what it started), and whatever of its process tree is
still there after ``STOP_GRACE`` seconds is killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

import psutil

STOP_GRACE = 30.0
"""Seconds an interrupted cell gets to stop what it started before its whole tree is killed."""

STDERR_TAIL = 500
"""Characters of a failed cell's stderr kept in its error."""


@dataclasses.dataclass(frozen=True, slots=True)
class CellRun:
    """What a cell's child process left: its last JSON line (if any) and why it failed (if it did)."""

    record: dict[str, Any] | None
    error: str | None


def run_cell(command: Sequence[str], timeout: float) -> CellRun:
    """Run ``command``; its last stdout line that starts with ``{``, parsed, and any failure."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
            error = None
            if child.returncode != 0:
                error = f"exit status {child.returncode}: {stderr.strip()[-STDERR_TAIL:]}"
        except subprocess.TimeoutExpired:
            stdout, _ = stop(child, interrupt=True)
            error = f"timed out after {timeout:.0f} s"
        except BaseException as exc:
            # Ctrl-C in a terminal has interrupted the child already; anything else has not.
            stop(child, interrupt=not isinstance(exc, KeyboardInterrupt))
            raise
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return CellRun(json.loads(lines[-1]) if lines else None, error)


def stop(child: subprocess.Popen[str], *, interrupt: bool) -> tuple[str, str]:
    """End ``child`` and every process below it; returns what it wrote (stdout, stderr).

    Its descendants are killed once it has exited (or been killed after ``STOP_GRACE``):
    one left running would hold the output pipes open for ever.
    """
    tree = _descendants(child)
    if interrupt and child.poll() is None:
        child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        tree += _descendants(child)
        child.kill()
    left = [process for process in tree if process.is_running()]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=STOP_GRACE)
    try:
        return child.communicate(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        return "", "a process the cell started, not found to kill, still holds its output"


def _descendants(child: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        return psutil.Process(child.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
