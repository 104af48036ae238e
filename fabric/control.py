"""Memory a manager shares with its workers: a stop flag, and how many tasks each began.

A manager makes one ``WorkerControl`` (an anonymous shared file, ``memfd`` on Linux) and
hands its descriptor to every worker it starts. The layout is unsigned 64-bit words:
word 0 is the stop flag, word ``1 + index`` counts the tasks the worker at ``index`` has
begun. A worker reads the flag before each task and starts none once it is set; it
counts a task just before running it. Its manager reads the count after the worker has
exited, so it knows exactly which of the tasks it sent were begun (a worker's tasks run
in the order they were sent). A word costs a memory access, not a system call: the hot
path stays as fast as without it.
"""

from __future__ import annotations

import mmap
import os
import tempfile


class WorkerControl:
    """The shared words; ``WorkerControl.create(workers)`` in a manager,
    ``WorkerControl.attach(fd)`` in a worker."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, size)
        self.words = memoryview(self._map).cast("Q")

    @classmethod
    def create(cls, workers: int) -> WorkerControl:
        size = 8 * (1 + workers)
        memfd_create = getattr(os, "memfd_create", None)
        if memfd_create is not None:
            fd = memfd_create("fabric-worker-control", 0)
        else:  # pragma: no cover - not Linux: a deleted temporary file does the same
            with tempfile.TemporaryFile() as file:
                fd = os.dup(file.fileno())
        os.ftruncate(fd, size)
        return cls(fd, size)

    @classmethod
    def attach(cls, fd: int) -> WorkerControl:
        return cls(fd, os.fstat(fd).st_size)

    @property
    def stopped(self) -> bool:
        return bool(self.words[0])

    def stop(self) -> None:
        """No worker begins another task."""
        self.words[0] = 1

    def began(self, index: int) -> int:
        return int(self.words[1 + index])

    def reset(self, index: int) -> None:
        """A fresh worker starts at ``index``: it has begun nothing."""
        self.words[1 + index] = 0

    def close(self) -> None:
        self.words.release()
        self._map.close()
        os.close(self.fd)
