"""Process trees in tests: who is alive below this process, and waiting until they are gone."""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

from tests.support import poll_until


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
