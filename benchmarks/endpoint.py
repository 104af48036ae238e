"""Benchmark of the endpoint path: ``Endpoint`` -> interchange -> manager -> workers and back.

Run it as ``python -m benchmarks.endpoint --kind noop --tasks 100000 --workers 2`` (or
``python -m benchmarks endpoint ...``). It prints ONE JSON line on stdout:

``tasks_per_second``
    ``--tasks`` tasks submitted as fast as ``Endpoint.submit`` takes them, each with a real
    ``Future``; timed from the first submit to the last result.
``latency_ms``
    ``--latency-samples`` sequential round trips (submit, then ``.result()``) after a
    warm-up: median, p99, p999 (``null`` below 1,000 samples), min, mean, max.
``startup_seconds``
    from constructing ``Endpoint()`` to the first result of a no-op task.
``peak_rss_mb``
    the largest sum of RSS over this process and all its descendants (interchange,
    managers, workers), sampled every 50 ms by a background thread.

Every result is checked (``noop`` returns ``None``, ``sleep10ms`` returns its argument,
``payload100k`` echoes its own distinct 100 kB of bytes, verified in full); ``correct``
says whether all were right, and the exit status is 1 when any was wrong.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import json
import math
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

import fabric
from benchmarks import tasks
from fabric.errors import FabricError

RSS_INTERVAL = 0.05
"""Seconds between two samples of the process tree's memory."""

RESULT_TIMEOUT = 300.0
"""The benchmark fails if it waits this long for any one result."""

MAX_REPORTED_ERRORS = 5

_PAYLOAD_TAIL = random.Random(0).randbytes(tasks.PAYLOAD_BYTES - 8)


def _payload(index: int) -> bytes:
    """Task ``index``'s payload: its index in 8 bytes, then fixed pseudo-random bytes."""
    return index.to_bytes(8, "little") + _PAYLOAD_TAIL


def _check_payload(index: int, value: Any) -> bool:
    return (type(value) is bytes and len(value) == tasks.PAYLOAD_BYTES
            and value.startswith(index.to_bytes(8, "little")) and value.endswith(_PAYLOAD_TAIL))


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """One kind of benchmark task: its function, arguments and result check."""

    name: str
    function: Callable[..., Any]
    default_tasks: int
    arguments: Callable[[int], tuple[Any, ...]]
    check: Callable[[int, Any], bool]
    description: str


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("noop", tasks.noop, 100_000, lambda i: (), lambda i, value: value is None,
         "returns None at once"),
    Kind("sleep10ms", tasks.sleep10ms, 1_000, lambda i: (i,), lambda i, value: value == i,
         "sleeps 10 ms, returns its argument"),
    Kind("payload100k", tasks.echo, 20_000, lambda i: (_payload(i),), _check_payload,
         "receives 100 kB of bytes and returns them"),
)}


class BenchmarkError(Exception):
    """The benchmark could not finish (the fabric failed or stopped answering)."""


class RssSampler:
    """Peak summed RSS of this process and all its descendants, sampled on a thread.

    Reading every process's memory is cheap; finding the descendants walks all of
    ``/proc`` (about a millisecond), so the tree is rediscovered only every
    ``rediscover_every`` samples, when a known process has gone, and on ``rediscover()``
    (call it once the tree is complete).
    """

    def __init__(self, interval: float = RSS_INTERVAL, rediscover_every: int = 10) -> None:
        self.interval = interval
        self.rediscover_every = rediscover_every
        self.peak_bytes = 0
        self.peak_processes = 0
        self._root = psutil.Process()
        self._tree: list[psutil.Process] = [self._root]
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
        """Measure the tree once, update the peak, return the total RSS in bytes."""
        with self._lock:
            return self._sample()

    def _sample(self) -> int:
        if self._samples % self.rediscover_every == 0:
            self._tree = [self._root, *self._root.children(recursive=True)]
        self._samples += 1
        total = 0
        for process in self._tree:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._samples = 0  # the tree changed: rediscover it next time
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


def _result(future: concurrent.futures.Future[Any]) -> Any:
    """The future's result; ``BenchmarkError`` when none comes within ``RESULT_TIMEOUT``."""
    try:
        return future.result(RESULT_TIMEOUT)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise
        raise BenchmarkError(f"no result within {RESULT_TIMEOUT} s") from None


def _collect(phase: str, index: int, future: concurrent.futures.Future[Any], kind: Kind, tally: Tally) -> None:
    try:
        value = _result(future)
    except BenchmarkError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed task is a wrong result
        tally.add(phase, index, exc)
        return
    if not kind.check(index, value):
        tally.add(phase, index, value)


def warm_up(endpoint: Any, kind: Kind, tasks_count: int, tally: Tally) -> None:
    """A burst (fills caches, starts the adaptive prefetch) then a few sequential tasks."""
    burst = min(2_000, max(10, tasks_count // 50))
    futures = [endpoint.submit(kind.function, *kind.arguments(i)) for i in range(burst)]
    for i, future in enumerate(futures):
        _collect("warm-up", i, future, kind, tally)
    for i in range(10):
        _collect("warm-up", i, endpoint.submit(kind.function, *kind.arguments(i)), kind, tally)


def measure_latency(endpoint: Any, kind: Kind, samples: int, tally: Tally) -> list[float]:
    """Seconds of ``samples`` sequential round trips (submit, then wait for the result)."""
    durations = []
    for i in range(samples):
        arguments = kind.arguments(i)
        started = time.perf_counter()
        future = endpoint.submit(kind.function, *arguments)
        try:
            future.result(RESULT_TIMEOUT)
        except Exception:  # noqa: BLE001 - judged by _collect below
            pass
        durations.append(time.perf_counter() - started)
        _collect("latency", i, future, kind, tally)
    return durations


def measure_throughput(endpoint: Any, kind: Kind, count: int, tally: Tally) -> float:
    """Seconds from the first submit to the last result of ``count`` tasks."""
    submit, function, arguments = endpoint.submit, kind.function, kind.arguments
    started = time.perf_counter()
    futures: list[concurrent.futures.Future[Any] | None] = [submit(function, *arguments(i)) for i in range(count)]
    for i, future in enumerate(futures):
        assert future is not None
        _collect("throughput", i, future, kind, tally)
        futures[i] = None  # drop each result once checked (20,000 x 100 kB would add up)
    return time.perf_counter() - started


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


def machine_info() -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity else os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark; returns the JSON record."""
    from fabric import Endpoint  # noqa: PLC0415 - keeps ``--help`` fast

    kind = KINDS[options.kind]
    count = options.tasks if options.tasks is not None else kind.default_tasks
    tally = Tally()
    with RssSampler() as rss:
        started = time.perf_counter()
        endpoint = Endpoint(workers=options.workers, managers=options.managers, prefetch=options.prefetch,
                            log_level=options.log_level)
        try:
            first = endpoint.submit(tasks.noop)
            _collect("start-up", 0, first, KINDS["noop"], tally)
            startup = time.perf_counter() - started
            endpoint.wait_for_workers()
            rss.rediscover()
            warm_up(endpoint, kind, count, tally)
            durations = measure_latency(endpoint, kind, options.latency_samples, tally)
            elapsed = measure_throughput(endpoint, kind, count, tally)
        finally:
            stopping = time.perf_counter()
            endpoint.shutdown(wait=False, cancel_futures=True)
            shutdown = time.perf_counter() - stopping
    return {
        "benchmark": "endpoint",
        "kind": kind.name,
        "tasks": count,
        "workers": options.workers,
        "managers": options.managers,
        "prefetch": options.prefetch,
        "correct": tally.wrong == 0,
        "wrong_results": tally.wrong,
        "tasks_per_second": round(count / elapsed, 1),
        "throughput_seconds": round(elapsed, 4),
        "latency_ms": latency_summary(durations),
        "startup_seconds": round(startup, 4),
        "shutdown_seconds": round(shutdown, 4),
        "peak_rss_mb": round(rss.peak_bytes / 2**20, 1),
        "peak_processes": rss.peak_processes,
        "machine": machine_info(),
        "fabric_version": fabric.__version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "errors": tally.errors,
    }


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    kinds = "; ".join(f"{k.name}: {k.description}, default {k.default_tasks:,} tasks" for k in KINDS.values())
    parser = argparse.ArgumentParser(
        prog=prog or "python -m benchmarks.endpoint",
        description="Measure a local Endpoint (interchange, managers, workers on this machine) and print "
                    "one JSON line: throughput, round-trip latency, start-up time and peak RSS of the "
                    "process tree. Every result is checked; the exit status is 1 if any is wrong.",
    )
    parser.add_argument("--kind", choices=list(KINDS), default="noop", help=f"the task to run ({kinds})")
    parser.add_argument("--tasks", type=_at_least(1), default=None,
                        help="tasks in the throughput run (default: depends on --kind)")
    parser.add_argument("--workers", type=_at_least(1), default=2, help="workers per manager (default: 2)")
    parser.add_argument("--managers", type=_at_least(1), default=1, help="local managers (default: 1)")
    parser.add_argument("--prefetch", type=_at_least(0), default=None,
                        help="tasks each manager holds beyond one per worker (default: adaptive)")
    parser.add_argument("--latency-samples", type=_at_least(0), default=200,
                        help="sequential round trips to time (default: 200)")
    parser.add_argument("--output", type=Path, default=None,
                        help="also append the JSON line to this file")
    parser.add_argument("--log-level", default=None,
                        help="log level of the endpoint's processes (default: FABRIC_LOG_LEVEL or WARNING)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    options = build_parser(prog).parse_args(argv)
    try:
        record = run(options)
    except (BenchmarkError, FabricError) as exc:
        print(f"{prog or 'benchmarks.endpoint'}: error: {exc}", file=sys.stderr)
        return 1
    line = json.dumps(record)
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        with options.output.open("a", encoding="utf-8") as output:
            output.write(line + "\n")
    print(line, flush=True)
    if not record["correct"]:
        print(f"{prog or 'benchmarks.endpoint'}: {record['wrong_results']} wrong results: "
              + "; ".join(record["errors"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
