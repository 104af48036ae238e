"""Pipelines through the service: dependencies, memoization and data by reference.

A real service and a real endpoint on this machine (as ``benchmarks.service``), then:

- ``pipeline``: chains of three steps (``increment``) released by the service (each step's
  future is the next one's argument), against the same chains driven by the client (submit,
  wait for the result, submit the next step): milliseconds per step, medians over chains.
- ``memo``: the latency of a memoized call answered from the store (a hit), against the
  same call run (a miss), medians.
- ``shared10m``: one 10 MB value put once (``fabric.data.put``) and given to ``--shared-tasks``
  tasks: tasks/s, uploads, fetches (the blob's downloads: once per node), the service's peak RSS.

Prints one JSON line; the exit status is 1 if any result was wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import cli, tasks
from benchmarks.measure import RssSampler
from benchmarks.service import START_TIMEOUT, _add_user, running_endpoint, running_service, service_role


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def pipeline(executor: Any, chains: int) -> dict[str, Any]:
    by_service, by_client, wrong = [], [], 0
    for start in range(chains):
        began = time.perf_counter()
        step = executor.submit(tasks.increment, start)
        for _ in range(2):
            step = executor.submit(tasks.increment, step)
        wrong += step.result(START_TIMEOUT) != start + 3
        by_service.append((time.perf_counter() - began) / 3)
        began = time.perf_counter()
        value = start
        for _ in range(3):
            value = executor.submit(tasks.increment, value).result(START_TIMEOUT)
        wrong += value != start + 3
        by_client.append((time.perf_counter() - began) / 3)
    return {"chains": chains, "ms_per_step_service": _ms(by_service), "ms_per_step_client": _ms(by_client),
            "wrong": wrong}


def memo(executor: Any, samples: int) -> dict[str, Any]:
    hits, misses, wrong = [], [], 0
    for index in range(samples):
        for timings in (misses, hits):
            began = time.perf_counter()
            wrong += executor.submit(tasks.increment, 10**6 + index).result(START_TIMEOUT) != 10**6 + index + 1
            timings.append(time.perf_counter() - began)
    return {"samples": samples, "hit_ms": _ms(hits), "miss_ms": _ms(misses), "wrong": wrong}


def shared10m(client: Any, executor: Any, count: int, rss: RssSampler) -> dict[str, Any]:
    from fabric import data  # noqa: PLC0415

    value = os.urandom(tasks.LARGE_PAYLOAD_BYTES)
    began = time.perf_counter()
    ref = data.put(value, client)
    futures = [executor.submit(tasks.length, ref) for _ in range(count)]
    wrong = sum(f.result(START_TIMEOUT) != len(value) for f in futures)
    elapsed = time.perf_counter() - began
    info = client.blob_info(ref.digest) or {}
    service = rss.roles.get("service")
    return {"tasks": count, "tasks_per_second": round(count / elapsed, 1), "uploads": 1,
            "fetches": info.get("downloads"), "bytes_moved_to_endpoint": (info.get("downloads") or 0) * info.get(
                "size", 0), "service_peak_rss_mb": round(service.largest_bytes / 2**20, 1) if service else None,
            "wrong": wrong}


def run(options: argparse.Namespace) -> dict[str, Any]:
    from fabric import Client, Executor  # noqa: PLC0415

    folder = Path(tempfile.mkdtemp(prefix="fabric-bench-flows-"))
    os.environ["FABRIC_DATA_CACHE"] = str(folder / "node-cache")  # a fresh node cache
    try:
        with RssSampler(classify=service_role) as rss, running_service(folder, options.log_level) as info:
            client = Client(info["url"], _add_user(folder))
            registration = client.register_endpoint("bench")
            with running_endpoint(registration, options, folder / "spool"):
                with Executor(registration["endpoint_id"], client=client) as executor:
                    executor.submit(tasks.noop).result(START_TIMEOUT)
                    rss.rediscover()
                    record = {"benchmark": "flows", "pipeline": pipeline(executor, options.chains)}
                    with Executor(registration["endpoint_id"], client=client, memoize=True) as memoized:
                        record["memo"] = memo(memoized, options.memo_samples)
                    record["shared10m"] = shared10m(client, executor, options.shared_tasks, rss)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return record


def execute(options: argparse.Namespace, prog: str = "benchmarks.flows") -> int:
    record = run(options)
    print(json.dumps(record))
    return 1 if any(part.get("wrong") for part in record.values() if isinstance(part, dict)) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flows", description=__doc__)
    cli.add_flows_arguments(parser)
    return execute(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
