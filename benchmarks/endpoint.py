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
make a sweep (``benchmarks.endpoint_sweep``): every cell runs in a fresh child process,
prints its JSON line, and the sweep writes ``record.json`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil

import fabric
from benchmarks import cli, workloads
from benchmarks.measure import (BenchmarkError, RssSampler, Tally, latency_summary, machine_info, module_role,
                                oversubscribed, percentile)
from fabric.errors import FabricError

__all__ = ["KINDS", "BenchmarkError", "Kind", "RssSampler", "Tally", "build_parser", "latency_summary",
           "machine_info", "main", "measure_latency", "measure_throughput", "percentile", "run",
           "warm_up"]

RESULT_TIMEOUT = 300.0
"""The benchmark fails if it waits this long for any one result."""

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


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement (``options.kind`` and ``options.workers`` hold one value each)."""
    from fabric import Endpoint  # noqa: PLC0415 - keeps ``--help`` fast

    kind = KINDS[options.kind[0]]
    workers = options.workers[0]
    count = options.tasks if options.tasks is not None else (kind.quick_tasks if options.quick else kind.default_tasks)
    samples = options.latency_samples if options.latency_samples is not None else (5 if options.quick else 200)
    tally = Tally()
    with RssSampler(classify=fabric_role) as rss:
        started = time.perf_counter()
        endpoint = Endpoint(workers=workers, managers=options.managers, prefetch=options.prefetch,
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
    record: dict[str, Any] = {
        "benchmark": "endpoint",
        "kind": kind.name,
        "tasks": count,
        "workers": workers,
        "managers": options.managers,
        "prefetch": options.prefetch,
        "oversubscribed": oversubscribed(workers * options.managers),
        "correct": tally.wrong == 0,
        "wrong_results": tally.wrong,
        "tasks_per_second": round(count / elapsed, 1),
        "throughput_seconds": round(elapsed, 4),
        "latency_ms": latency_summary(durations),
        "startup_seconds": round(startup, 4),
        "shutdown_seconds": round(shutdown, 4),
        "peak_rss_mb": round(rss.peak_bytes / 2**20, 1),
        "peak_processes": rss.peak_processes,
        "peak_rss_by_role": rss.roles_mb(),
        "machine": machine_info(),
        "fabric_version": fabric.__version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "errors": tally.errors,
    }
    if options.record_samples:
        record["latency_samples_ms"] = [round(d * 1000.0, 4) for d in durations]
    return record


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "python -m benchmarks.endpoint",
                                     description=cli.ENDPOINT_DESCRIPTION)
    cli.add_endpoint_arguments(parser)
    return parser


def is_single(options: argparse.Namespace) -> bool:
    """One kind, one worker count and no ``--output-dir``: measured in this process."""
    return len(options.kind) == 1 and len(options.workers) == 1 and options.output_dir is None


def execute(options: argparse.Namespace, prog: str = "benchmarks.endpoint") -> int:
    """Run what ``options`` ask for: one measurement here, or a sweep of child processes."""
    if not is_single(options):
        from benchmarks import endpoint_sweep  # noqa: PLC0415

        return endpoint_sweep.execute(options, prog)
    try:
        record = run(options)
    except (BenchmarkError, FabricError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    line = json.dumps(record)
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        with options.output.open("a", encoding="utf-8") as output:
            output.write(line + "\n")
    print(line, flush=True)
    if not record["correct"]:
        print(f"{prog}: {record['wrong_results']} wrong results: " + "; ".join(record["errors"]), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    options = build_parser(prog).parse_args(argv)
    return execute(options, prog or "benchmarks.endpoint")


if __name__ == "__main__":
    sys.exit(main())
