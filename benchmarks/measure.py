"""What every benchmark measures the same way: memory of a process tree, latency statistics,
result tallies, the machine and the versions, and the argument parsers the CLIs share.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import platform
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psutil

RSS_INTERVAL = 0.05
"""Seconds between two samples of the process tree's memory."""

MAX_REPORTED_ERRORS = 5

CLIENT = "client"
"""The role of the measuring process itself."""


class BenchmarkError(Exception):
    """The benchmark could not finish (the system under test failed or stopped answering)."""


@dataclasses.dataclass(slots=True)
class RolePeak:
    """Peaks of one role's processes: the largest single process, the largest sum, the most processes."""

    largest_bytes: int = 0
    total_bytes: int = 0
    processes: int = 0

    def as_mb(self) -> dict[str, Any]:
        return {"largest_mb": round(self.largest_bytes / 2**20, 1), "total_mb": round(self.total_bytes / 2**20, 1),
                "processes": self.processes}


def module_role(process: psutil.Process, roles: Sequence[str]) -> str:
    """``ROLE`` when ``process`` runs ``python -m ROLE`` for one of ``roles``, else ``"other"``."""
    try:
        command = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other"
    for i, word in enumerate(command[:-1]):
        if word == "-m" and command[i + 1] in roles:
            return command[i + 1]
    return "other"


class RssSampler:
    """Peak summed RSS of this process and all its descendants, sampled on a thread.

    Reading every process's memory is cheap; finding the descendants walks all of
    ``/proc`` (about a millisecond), so the tree is rediscovered only every
    ``rediscover_every`` samples, when a known process has gone, and on ``rediscover()``
    (call it once the tree is complete). ``classify(process)`` names the role of each
    descendant (this process is ``client``); ``roles`` keeps the peaks per role.
    """

    def __init__(self, interval: float = RSS_INTERVAL, rediscover_every: int = 10,
                 classify: Callable[[psutil.Process], str] | None = None) -> None:
        self.interval = interval
        self.rediscover_every = rediscover_every
        self.peak_bytes = 0
        self.peak_processes = 0
        self.roles: dict[str, RolePeak] = {}
        self._classify = classify or (lambda process: "other")
        self._root = psutil.Process()
        self._tree: list[psutil.Process] = [self._root]
        self._role_of: dict[int, str] = {self._root.pid: CLIENT}
        self._samples = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.sample()

    def rediscover(self) -> int:
        """Find the descendants now and take a sample; returns the total RSS in bytes."""
        with self._lock:
            self._samples = 0
        return self.sample()

    def sample(self) -> int:
        """Measure the tree once, update the peaks, return the total RSS in bytes."""
        with self._lock:
            return self._sample()

    def roles_mb(self) -> dict[str, dict[str, Any]]:
        """Per role: ``largest_mb`` (one process), ``total_mb`` (all of them), ``processes``."""
        return {role: peak.as_mb() for role, peak in sorted(self.roles.items())}

    def _discover(self) -> None:
        self._tree = [self._root, *self._root.children(recursive=True)]
        for process in self._tree:
            if process.pid not in self._role_of:
                self._role_of[process.pid] = self._classify(process)

    def _sample(self) -> int:
        if self._samples % self.rediscover_every == 0:
            self._discover()
        self._samples += 1
        total = 0
        totals: dict[str, list[int]] = {}
        for process in self._tree:
            try:
                rss = process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._samples = 0  # the tree changed: rediscover it next time
                continue
            total += rss
            role = self._role_of.get(process.pid, "other")
            peak = self.roles.get(role)
            if peak is None:
                peak = self.roles[role] = RolePeak()
            peak.largest_bytes = max(peak.largest_bytes, rss)
            summed = totals.setdefault(role, [0, 0])
            summed[0] += rss
            summed[1] += 1
        for role, (role_total, count) in totals.items():
            peak = self.roles[role]
            peak.total_bytes = max(peak.total_bytes, role_total)
            peak.processes = max(peak.processes, count)
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_processes = max(self.peak_processes, len(self._tree))
        return total


class Tally:
    """Counts wrong results and keeps the first few descriptions."""

    def __init__(self) -> None:
        self.wrong = 0
        self.errors: list[str] = []

    def add(self, phase: str, index: int, what: object) -> None:
        self.wrong += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            shown = repr(what)
            self.errors.append(f"{phase} task {index}: {shown[:200]}")


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(durations: Sequence[float]) -> dict[str, Any]:
    """Round-trip statistics in milliseconds (``None`` where there are too few samples)."""
    values = sorted(d * 1000.0 for d in durations)
    if not values:
        return {"samples": 0, "median": None, "p99": None, "p999": None, "min": None, "mean": None, "max": None}
    middle = len(values) // 2
    median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
    return {
        "samples": len(values),
        "median": round(median, 4),
        "p99": round(percentile(values, 0.99), 4),
        "p999": round(percentile(values, 0.999), 4) if len(values) >= 1000 else None,
        "min": round(values[0], 4),
        "mean": round(sum(values) / len(values), 4),
        "max": round(values[-1], 4),
    }


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs`` to 3 decimals; ``None`` when either is missing or ``theirs`` is 0."""
    return round(ours / theirs, 3) if ours is not None and theirs else None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu_model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "cpu_model": cpu_model or platform.processor(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
    }


DISTRIBUTIONS = ("fabric-faas", "pyzmq", "msgpack", "dill", "psutil", "numpy", "pytest-benchmark", "matplotlib",
                 "parsl", "dask", "distributed", "ray")


def versions(names: Sequence[str] = DISTRIBUTIONS) -> dict[str, str | None]:
    """Installed version of each distribution (``None``: not installed)."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def oversubscribed(workers: int) -> bool:
    """More workers than usable CPUs."""
    return workers > usable_cpus()
