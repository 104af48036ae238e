"""Benchmark of the service path: ``Executor`` -> HTTP -> service (store, forwarder) -> endpoint -> back.

Run it as ``python -m benchmarks.service --kind noop --tasks 100000`` (or ``fabric bench
service ...``). It starts, on this machine and on free ports, a real service process
(``python -m service start``, a fresh SQLite store in a temporary folder), a user, and a
real endpoint connected to it over CurveZMQ (``python -m interchange`` in service mode,
with its managers and workers), then drives it with the SDK's ``Executor``. One
measurement (one kind, one worker count) prints ONE JSON line, with the same fields as
``benchmarks.endpoint``'s (``benchmarks.sweep.path_record``):

``tasks_per_second``
    ``--tasks`` tasks streamed through the ``Executor`` the way ``Executor.map`` does it: at
    most ``WINDOW`` unfinished at once, results taken in order (``map`` itself for kinds
    whose function takes one argument); timed from the first submit to the last result,
    every result checked. So a million tasks run in bounded memory in every process.
``latency_ms``
    ``--latency-samples`` sequential round trips (submit, then ``.result()``) after a
    warm-up: median, p99, p999, min, mean, max.
``latency_ms_by_argument_bytes``
    the same for ``len`` of a bytes argument of each size in ``ARGUMENT_SIZES`` (100 B to
    100 kB; the result is tiny), ``latency_samples_per_size`` round trips each.
``startup_seconds``
    from starting the endpoint process to the first result of a no-op task through the service.
``peak_rss_by_role``
    peak RSS per process role (``client``, ``service``, ``interchange``, ``manager``,
    ``worker``), sampled every 50 ms.

Default task counts are the kind's ``service_tasks`` and ``service_latency_samples``
(``benchmarks.workloads``). Several kinds or worker counts (``--kind all --workers
1,2,4,8``), or ``--output-dir``, make a sweep (``benchmarks.sweep``): each cell in a fresh
child process, then ``record.json`` and ``report.md``.

The service is started so that the kernel stops it when this process ends, however it
ends (the interchange, its managers and workers already exit with their parents), so a
killed benchmark leaves no process behind.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks import cli, sweep, workloads
from benchmarks.endpoint import _collect, measure_latency, warm_up
from benchmarks.measure import BenchmarkError, RssSampler, Tally, latency_summary, module_role

ROLES = ("service", "interchange", "manager", "worker")
START_TIMEOUT = 60.0


def service_role(process: psutil.Process) -> str:
    """The role of a descendant; ``python -m service add-user`` (a short tool run) is ``other``."""
    role = module_role(process, ROLES)
    if role == "service" and "start" not in _command(process):
        return "other"
    return role


def _command(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


@contextlib.contextmanager
def running_service(data_dir: Path, log_level: str | None) -> Iterator[dict[str, Any]]:
    """A ``python -m service start`` process on free ports; yields its ``service.json`` (url, ...)."""
    settings = data_dir / "settings.json"
    settings.write_text(json.dumps({"data_dir": str(data_dir), "port": 0, "forwarder_port": 0}))  # default limits
    log = (data_dir / "service.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "service", "start", "--config", str(settings),
                                "--log-level", log_level or "WARNING"], stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=_exit_with_parent())  # noqa: PLW1509 - one syscall, no locks
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


_PR_SET_PDEATHSIG = 1


def _exit_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGTERM the child when this process exits (Linux; else ``None``).

    libc is looked up here, before the fork, so the child only makes the ``prctl`` call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return in_child


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


ARGUMENT_SIZES = (100, 1_000, 10_000, 100_000)
"""Argument sizes (bytes) of the round trips in ``latency_ms_by_argument_bytes``."""


def measure_latency_by_size(executor: Any, samples: int) -> dict[str, dict[str, float]]:
    """Sequential round trips of ``len(argument)`` for each size in ``ARGUMENT_SIZES``, sizes
    taking turns so that a slow spell of the machine does not fall on one size."""
    durations: dict[int, list[float]] = {size: [] for size in ARGUMENT_SIZES}
    arguments = {size: os.urandom(size) for size in ARGUMENT_SIZES}
    for size in ARGUMENT_SIZES:  # warm-up
        executor.submit(len, arguments[size]).result(START_TIMEOUT)
    for _ in range(samples):
        for size in ARGUMENT_SIZES:
            started = time.perf_counter()
            value = executor.submit(len, arguments[size]).result(START_TIMEOUT)
            durations[size].append(time.perf_counter() - started)
            if value != size:
                raise BenchmarkError(f"len of a {size}-byte argument came back as {value!r}")
    return {str(size): latency_summary(found) for size, found in durations.items()}


WINDOW = 50_000
"""Unfinished tasks at most while the throughput is measured (``Executor.map``'s default window,
``sdk.executor.MAP_WINDOW``)."""


def measure_streamed_throughput(executor: Any, kind: workloads.Kind, count: int, tally: Tally) -> float:
    """Seconds from the first submit to the last result of ``count`` tasks, at most ``WINDOW``
    of them unfinished at once, results checked in order as they are taken."""
    started = time.perf_counter()
    if len(kind.arguments(0)) == 1:
        results = executor.map(kind.function, (kind.arguments(i)[0] for i in range(count)), window=WINDOW)
        for index, value in enumerate(results):
            if not kind.check(index, value):
                tally.add("throughput", index, value)
        return time.perf_counter() - started
    pending: collections.deque[tuple[int, Any]] = collections.deque()
    for index in range(count):
        pending.append((index, executor.submit(kind.function, *kind.arguments(index))))
        if len(pending) >= WINDOW:
            _collect("throughput", *pending.popleft(), kind, tally)
    while pending:
        _collect("throughput", *pending.popleft(), kind, tally)
    return time.perf_counter() - started


def run(options: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement (``options.kind`` and ``options.workers`` hold one value each)."""
    from fabric import Client, Executor  # noqa: PLC0415 - keeps ``--help`` fast

    kind = workloads.KINDS[options.kind[0]]
    count, samples = sweep.counts(options, kind, kind.service_tasks, kind.service_latency_samples)
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
                    per_size = max(5, samples // 4)
                    by_size = measure_latency_by_size(executor, per_size)
                    rss.rediscover()
                    elapsed = measure_streamed_throughput(executor, kind, count, tally)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    measured = sweep.Measured(kind, count, tally, durations, elapsed, startup, rss)
    record = sweep.path_record(sweep.SERVICE, options, measured)
    record["latency_ms_by_argument_bytes"] = by_size
    record["latency_samples_per_size"] = per_size
    return record


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or "python -m benchmarks.service", description=cli.SERVICE_DESCRIPTION)
    cli.add_service_arguments(parser)
    return parser


def execute(options: argparse.Namespace, prog: str = "benchmarks.service") -> int:
    """Run what ``options`` ask for: one measurement here, or a sweep of child processes."""
    return sweep.execute(sweep.SERVICE, options, prog, run)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    return execute(build_parser(prog).parse_args(argv), prog or "benchmarks.service")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
