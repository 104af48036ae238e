"""Benchmark of the endpoint path: ``Endpoint`` -> interchange -> manager -> workers and back.

Run it as ``python -m benchmarks.endpoint --kind noop --tasks 100000 --workers 2`` (or
``python -m benchmarks endpoint ...``, ``fabric bench endpoint ...``). One measurement (one
kind, one worker count) prints ONE JSON line on stdout:

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
    managers, workers), sampled every 50 ms by a background thread;
    ``peak_rss_by_role`` the same per process role (``client``, ``interchange``,
    ``manager``, ``worker``): the largest single process and the largest sum.

Every result is checked (see ``benchmarks.workloads``); ``correct`` says whether all were
right, and the exit status is 1 when any was wrong.

Several kinds or worker counts (``--kind all --workers 1,2,4,8``), or ``--output-dir``,
make a sweep (``benchmarks.sweep``): every cell runs in a fresh child process, prints its
JSON line, and the sweep writes ``record.json`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil

from benchmarks import cli, sweep, workloads
from benchmarks.measure import BenchmarkError, RssSampler, Tally, latency_summary, machine_info, module_role, percentile

__all__ = ["KINDS", "BenchmarkError", "Kind", "RssSampler", "Tally", "build_parser", "latency_summary",
           "machine_info", "main", "measure_latency", "measure_throughput", "percentile", "run",
           "warm_up"]

RESULT_TIMEOUT = 300.0
"""The benchmark fails if it waits this long for any one result."""

DEFAULT_LATENCY_SAMPLES = 200
"""Sequential round trips of one measurement (a sweep cell gets its kind's ``sweep_latency_samples``)."""

Kind = workloads.Kind
KINDS = workloads.KINDS
_payload = workloads.payload
_check_payload = workloads.check_payload

FABRIC_ROLES = ("interchange", "manager", "worker")


def fabric_role(process: psutil.Process) -> str:
    """The role of a descendant of the client: ``interchange``, ``manager``, ``worker`` or ``other``."""
    return module_role(process, FABRIC_ROLES)


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
    """A burst (fills caches, starts the adaptive prefetch) then a few sequential tasks (fewer for tiny runs)."""
    burst = min(2_000, tasks_count, max(10, tasks_count // 50))
    futures = [endpoint.submit(kind.function, *kind.arguments(i)) for i in range(burst)]
    for i, future in enumerate(futures):
        _collect("warm-up", i, future, kind, tally)
    for i in range(min(10, tasks_count)):
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


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement (``options.kind`` and ``options.workers`` hold one value each)."""
    from fabric import Endpoint  # noqa: PLC0415 - keeps ``--help`` fast

    kind = KINDS[options.kind[0]]
    count, samples = sweep.counts(options, kind, kind.default_tasks, DEFAULT_LATENCY_SAMPLES)
    tally = Tally()
    with RssSampler(classify=fabric_role) as rss:
        started = time.perf_counter()
        endpoint = Endpoint(workers=options.workers[0], managers=options.managers, prefetch=options.prefetch,
                            log_level=options.log_level)
        try:
            first = endpoint.submit(workloads.tasks.noop)
            _collect("start-up", 0, first, KINDS["noop"], tally)
            startup = time.perf_counter() - started
            endpoint.wait_for_workers()
            rss.rediscover()
            warm_up(endpoint, kind, count, tally)
            durations = measure_latency(endpoint, kind, samples, tally)
            elapsed = measure_throughput(endpoint, kind, count, tally)
        finally:
            stopping = time.perf_counter()
            endpoint.shutdown(wait=False, cancel_futures=True)
            shutdown = time.perf_counter() - stopping
    measured = sweep.Measured(kind, count, tally, durations, elapsed, startup, rss)
    return {**sweep.path_record(sweep.ENDPOINT, options, measured), "shutdown_seconds": round(shutdown, 4)}


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "python -m benchmarks.endpoint",
                                     description=cli.ENDPOINT_DESCRIPTION)
    cli.add_endpoint_arguments(parser)
    return parser


def execute(options: argparse.Namespace, prog: str = "benchmarks.endpoint") -> int:
    """Run what ``options`` ask for: one measurement here, or a sweep of child processes."""
    return sweep.execute(sweep.ENDPOINT, options, prog, run)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    options = build_parser(prog).parse_args(argv)
    return execute(options, prog or "benchmarks.endpoint")


if __name__ == "__main__":
    sys.exit(main())
