"""``LocalProvider``: managers as child processes of the interchange, on this machine."""

from __future__ import annotations

import logging
import os
import subprocess
import time

from fabric.config import InterchangeConfig
from fabric.process import pidfd, spawn, stop

logger = logging.getLogger(__name__)

RESTART_INTERVAL = 1.0
"""Seconds between two restarts of crashed managers, so a crash loop cannot spin."""


class LocalProvider:
    """Starts ``local_managers`` managers and replaces any that exit unexpectedly."""

    def __init__(self, config: InterchangeConfig, manager_address: str) -> None:
        self.config = config
        self.manager_address = manager_address
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.fds: dict[int, str] = {}
        self.started = 0
        self.stopping = False
        self.last_restart = 0.0
        self.target = config.local_managers

    def start(self) -> None:
        for _ in range(self.target):
            self.start_manager()

    def start_manager(self) -> str:
        self.started += 1
        manager_id = f"{self.config.endpoint_id}-m{self.started}"
        config = self.config.manager_config(manager_id, self.manager_address)
        process = spawn("manager", ["--config", config.to_json()])
        self.processes[manager_id] = process
        fd = pidfd(process)
        if fd is not None:
            self.fds[fd] = manager_id
        logger.info("started manager %s (pid %d)", manager_id, process.pid)
        return manager_id

    def check(self, ready_fds: set[int] | None = None) -> list[str]:
        """Reap exited managers and replace them; returns the ids of those that exited."""
        exited = []
        for manager_id, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            del self.processes[manager_id]
            exited.append(manager_id)
            if not self.stopping:
                logger.warning("manager %s exited with code %s", manager_id, process.returncode)
        for fd, manager_id in list(self.fds.items()):
            if manager_id not in self.processes:
                os.close(fd)
                del self.fds[fd]
        missing = self.target - len(self.processes)
        now = time.monotonic()
        if missing > 0 and not self.stopping and now - self.last_restart >= RESTART_INTERVAL:
            self.last_restart = now
            for _ in range(missing):
                self.start_manager()
        return exited

    def retire(self, manager_id: str) -> None:
        """A manager is being drained on purpose: do not replace it when it exits."""
        if manager_id in self.processes:
            self.target -= 1

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping = True
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(process, timeout=1.0)
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.processes.clear()
