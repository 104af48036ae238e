"""Helpers for the end-to-end tests: one time constant, polling, process trees.

Tests never sleep to synchronise: they ``poll_until`` a condition holds, and give up
after ``TIMEOUT`` (the only time constant tests use; it bounds waits, it never asserts
how fast something is).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import psutil

TIMEOUT = 30.0
"""Seconds any wait in a test may take before the test fails."""

T = TypeVar("T")


def poll_until(condition: Callable[[], T], what: str, timeout: float = TIMEOUT) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Fails the test with ``what`` in the message once ``timeout`` seconds have passed.
    The pause between calls grows from a tiny one to ``timeout / 300``, derived from
    the one time constant.
    """
    deadline = time.monotonic() + timeout
    pause = timeout / 30000
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, timeout / 300)


def alive(process: psutil.Process) -> bool:
    """True while ``process`` (the very one, not a reused pid) runs and is not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def living(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if alive(p)]


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every living process below ``pid`` (default: this process)."""
    try:
        return living(psutil.Process(pid or os.getpid()).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def module_of(process: psutil.Process) -> str | None:
    """``X`` for a process started as ``python -m X ...``, else None."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return None
    if "-m" in command[:-1]:
        return command[command.index("-m") + 1]
    return None


def worker_processes(manager_pid: int) -> list[psutil.Process]:
    """The living worker processes a manager started."""
    return [p for p in descendants(manager_pid) if module_of(p) == "worker"]


def read_pid(path: os.PathLike[str] | str) -> int | None:
    """The pid a task wrote to ``path`` (atomically), or None while it is not there."""
    try:
        with open(path) as file:
            return int(file.read())
    except FileNotFoundError:
        return None


def wait_gone(processes: Iterable[psutil.Process], what: str) -> None:
    """Wait until none of ``processes`` is alive any more."""
    processes = list(processes)
    poll_until(lambda: not living(processes), f"{what} to exit ({[p.pid for p in processes]})")
