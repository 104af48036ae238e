"""Benchmark of the service path: ``Executor`` -> HTTP -> service (store, forwarder) -> endpoint -> back.

Run it as ``python -m benchmarks.service --tasks 100000`` (or ``fabric bench service ...``).
It starts, on this machine and on free ports, a real service process (``python -m service
start``, a fresh SQLite store in a temporary folder), a user, and a real endpoint connected
to it over CurveZMQ (``python -m interchange`` in service mode, with its managers and
workers), then drives it with the SDK's ``Executor``. It prints ONE JSON line:

``tasks_per_second``
    ``--tasks`` tasks through ``Executor.submit``, timed from the first submit to the last
    result (every result checked).
``latency_ms``
    ``--latency-samples`` sequential round trips (submit, then ``.result()``) after a
    warm-up: median, p99, p999, min, mean, max.
``startup_seconds``
    from starting the endpoint process to the first result of a no-op task through the service.
``peak_rss_by_role``
    peak RSS per process role (``client``, ``service``, ``interchange``, ``manager``,
    ``worker``), sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

import fabric
from benchmarks import cli, workloads
from benchmarks.endpoint import measure_latency, measure_throughput, warm_up
from benchmarks.measure import (BenchmarkError, RssSampler, Tally, latency_summary, machine_info, module_role,
                                oversubscribed)
from fabric.errors import FabricError

ROLES = ("service", "interchange", "manager", "worker")
START_TIMEOUT = 60.0


def service_role(process: psutil.Process) -> str:
    return module_role(process, ROLES)


@contextlib.contextmanager
def running_service(data_dir: Path, log_level: str | None) -> Iterator[dict[str, Any]]:
    """A ``python -m service start`` process on free ports; yields its ``service.json`` (url, ...)."""
    settings = data_dir / "settings.json"
    settings.write_text(json.dumps({"data_dir": str(data_dir), "port": 0, "forwarder_port": 0, "rate_limit": 0}))
    log = (data_dir / "service.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "service", "start", "--config", str(settings),
                                "--log-level", log_level or "WARNING"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield _wait_for_file(data_dir / "service.json", process, "the service")
    finally:
        _stop(process)
        log.close()


@contextlib.contextmanager
def running_endpoint(registration: dict[str, Any], options: argparse.Namespace,
                     spool: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The endpoint: an interchange in service mode (and its managers and workers)."""
    from fabric.config import InterchangeConfig  # noqa: PLC0415

    config = InterchangeConfig(
        upstream_address=registration["forwarder_address"], endpoint_id=registration["endpoint_id"],
        upstream_server_key=registration["server_public_key"], upstream_public_key=registration["public_key"],
        upstream_secret_key=registration["secret_key"], spool_dir=str(spool), exit_with_upstream=False,
        local_managers=options.managers, workers_per_manager=options.workers[0], prefetch=options.prefetch)
    command = [sys.executable, "-m", "interchange", "--config", config.to_json()]
    if options.log_level:
        command += ["--log-level", options.log_level]
    process = subprocess.Popen(command)
    try:
        yield process
    finally:
        _stop(process)


def _wait_for_file(path: Path, process: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(FileNotFoundError, ValueError):
            info: dict[str, Any] = json.loads(path.read_text())
            if info.get("pid") == process.pid:
                return info
        time.sleep(0.05)
    raise BenchmarkError(f"{what} did not start within {START_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _add_user(data_dir: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "service", "add-user", "bench", "--data-dir", str(data_dir)],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


def run(options: argparse.Namespace) -> dict[str, Any]:
    from fabric import Client, Executor  # noqa: PLC0415 - keeps ``--help`` fast

    kind = workloads.KINDS[options.kind[0]]
    count = options.tasks if options.tasks is not None else (kind.quick_tasks if options.quick else 100_000)
    samples = options.latency_samples if options.latency_samples is not None else (5 if options.quick else 200)
    tally = Tally()
    folder = Path(tempfile.mkdtemp(prefix="fabric-bench-service-"))
    try:
        with RssSampler(classify=service_role) as rss, running_service(folder, options.log_level) as info:
            client = Client(info["url"], _add_user(folder))
            registration = client.register_endpoint("bench")
            started = time.perf_counter()
            with running_endpoint(registration, options, folder / "spool"):
                with Executor(registration["endpoint_id"], client=client) as executor:
                    first = executor.submit(workloads.tasks.noop)
                    first.result(START_TIMEOUT)
                    startup = time.perf_counter() - started
                    rss.rediscover()
                    warm_up(executor, kind, count, tally)
                    durations = measure_latency(executor, kind, samples, tally)
                    rss.rediscover()
                    elapsed = measure_throughput(executor, kind, count, tally)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    workers = options.workers[0]
    return {
        "benchmark": "service", "kind": kind.name, "tasks": count, "workers": workers,
        "managers": options.managers, "oversubscribed": oversubscribed(workers * options.managers),
        "correct": tally.wrong == 0, "wrong_results": tally.wrong,
        "tasks_per_second": round(count / elapsed, 1), "throughput_seconds": round(elapsed, 4),
        "latency_ms": latency_summary(durations), "startup_seconds": round(startup, 4),
        "peak_rss_mb": round(rss.peak_bytes / 2**20, 1), "peak_rss_by_role": rss.roles_mb(),
        "machine": machine_info(), "fabric_version": fabric.__version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "errors": tally.errors,
    }


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "python -m benchmarks.service", description=__doc__.split("\n\n")[0]
                                     + ": a real service, a real endpoint, the SDK's Executor; one JSON line.")
    cli.add_service_arguments(parser)
    return parser


def execute(options: argparse.Namespace, prog: str = "benchmarks.service") -> int:
    try:
        record = run(options)
    except (BenchmarkError, FabricError, OSError, subprocess.CalledProcessError) as exc:
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
    return execute(build_parser(prog).parse_args(argv), prog or "benchmarks.service")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
