"""Removing the podman and docker containers a dead worker leaves behind.

A worker starts its containers itself (``worker.containers``), labelled with its pid. A
worker killed at a task's walltime cannot stop them: its container client gets SIGTERM
(parent-death signal) and passes it on, but a container whose start was under way, or
whose runtime missed the signal, would stay. So when a worker dies, its manager asks each
runtime for the containers with that worker's label and removes them, in a background
thread (a runtime call takes a fraction of a second; the manager's loop never waits).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Iterable

from fabric.config import CONTAINER_WORKER_LABEL

logger = logging.getLogger(__name__)

RUNTIMES = ("podman", "docker")
TIMEOUT = 60.0


def runtimes_in_use(container_types: Iterable[str]) -> list[str]:
    """The container runtimes (of ``RUNTIMES``) an endpoint's containers use."""
    return sorted({kind for kind in container_types if kind in RUNTIMES and shutil.which(kind)})


def remove_worker_containers(runtimes: list[str], worker_pid: int) -> threading.Thread | None:
    """Remove, in the background, the containers of ``runtimes`` that worker ``worker_pid`` started."""
    if not runtimes:
        return None
    thread = threading.Thread(target=_remove, args=(runtimes, worker_pid), name=f"containers-of-{worker_pid}",
                              daemon=True)
    thread.start()
    return thread


def _remove(runtimes: list[str], worker_pid: int) -> None:
    for runtime in runtimes:
        try:
            listed = subprocess.run([runtime, "ps", "-aq", "--filter", f"label={CONTAINER_WORKER_LABEL}={worker_pid}"],
                                    capture_output=True, text=True, timeout=TIMEOUT, check=True).stdout.split()
            if listed:
                subprocess.run([runtime, "rm", "-f", *listed], capture_output=True, timeout=TIMEOUT, check=False)
                logger.info("removed %d %s containers of dead worker pid %d", len(listed), runtime, worker_pid)
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("cannot remove the %s containers of dead worker pid %d: %s", runtime, worker_pid, exc)
