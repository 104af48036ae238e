"""``benchmarks.endpoint`` run for real with tiny task counts: its JSON line and checks.

No timing thresholds here: the numbers are the benchmark's business, not the tests'.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import endpoint as benchmark
from benchmarks import tasks

REPOSITORY = Path(__file__).resolve().parents[2]
TIMEOUT = 90.0

KEYS = {"benchmark", "kind", "tasks", "workers", "managers", "prefetch", "correct", "wrong_results",
        "tasks_per_second", "throughput_seconds", "latency_ms", "startup_seconds", "shutdown_seconds",
        "peak_rss_mb", "peak_processes", "machine", "fabric_version", "timestamp", "errors"}
LATENCY_KEYS = {"samples", "median", "p99", "p999", "min", "mean", "max"}


def run_benchmark(*args: str, module: tuple[str, ...] = ("benchmarks.endpoint",)) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *module, *args], cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def json_line(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    record = json.loads(lines[0])
    assert isinstance(record, dict)
    return record


@pytest.mark.parametrize("kind, count", [("noop", 300), ("sleep10ms", 40), ("payload100k", 60),
                                                 ("oneway100k", 60)])
def test_each_kind_prints_one_checked_json_line(kind: str, count: int) -> None:
    completed = run_benchmark("--kind", kind, "--tasks", str(count), "--workers", "2", "--latency-samples", "10")
    assert completed.returncode == 0, completed.stderr
    record = json_line(completed.stdout)
    assert KEYS <= set(record)
    assert record["benchmark"] == "endpoint"
    assert record["kind"] == kind
    assert record["tasks"] == count
    assert record["workers"] == 2
    assert record["correct"] is True
    assert record["wrong_results"] == 0
    assert record["errors"] == []
    assert record["tasks_per_second"] > 0
    assert record["startup_seconds"] > 0
    assert record["peak_rss_mb"] > 0
    assert record["peak_processes"] >= 4  # this process, the interchange, a manager, its workers
    latency = record["latency_ms"]
    assert set(latency) == LATENCY_KEYS
    assert latency["samples"] == 10
    assert 0 < latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"]
    assert latency["p999"] is None  # too few samples for a p999
    assert {"cpu_count", "python", "platform"} <= set(record["machine"])


def test_dispatcher_and_output_file(tmp_path: Path) -> None:
    output = tmp_path / "results" / "endpoint.jsonl"
    completed = run_benchmark("endpoint", "--tasks", "50", "--workers", "1", "--managers", "2",
                              "--latency-samples", "0", "--output", str(output), module=("benchmarks",))
    assert completed.returncode == 0, completed.stderr
    record = json_line(completed.stdout)
    assert record["kind"] == "noop"
    assert record["managers"] == 2
    assert record["latency_ms"]["samples"] == 0
    assert record["latency_ms"]["median"] is None
    assert output.read_text().splitlines() == [completed.stdout.strip()]


@pytest.mark.parametrize("args, message", [
    (["--kind", "nothing"], "invalid choice"),
    (["--tasks", "0"], "--tasks: must be at least 1"),
    (["--workers", "two"], "--workers: expected an integer"),
])
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    completed = run_benchmark(*args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize("kind, right, wrong", [
    ("noop", None, 0),
    ("sleep10ms", 5, 6),
    ("payload100k", benchmark._payload(5), benchmark._payload(6)),
    ("payload100k", benchmark._payload(5), benchmark._payload(5)[:-1]),
    ("payload100k", benchmark._payload(5), benchmark._payload(5)[:-1] + b"?"),
    ("oneway100k", (5, tasks.PAYLOAD_BYTES), (6, tasks.PAYLOAD_BYTES)),
    ("oneway100k", (5, tasks.PAYLOAD_BYTES), (5, tasks.PAYLOAD_BYTES - 1)),
])
def test_result_checks_reject_wrong_results(kind: str, right: Any, wrong: Any) -> None:
    check = benchmark.KINDS[kind].check
    assert check(5, right)
    assert not check(5, wrong)


def test_task_functions_do_what_the_checks_expect() -> None:
    for kind in benchmark.KINDS.values():
        arguments = kind.arguments(3)
        assert kind.check(3, kind.function(*arguments))
    assert len(benchmark._payload(0)) == tasks.PAYLOAD_BYTES


def test_the_one_way_kind_sends_a_large_argument_and_gets_a_small_result() -> None:
    kind = benchmark.KINDS["oneway100k"]
    (argument,) = kind.arguments(7)
    assert len(argument) == tasks.PAYLOAD_BYTES
    assert kind.function(argument) == (7, tasks.PAYLOAD_BYTES)


def test_latency_summary_uses_nearest_rank() -> None:
    summary = benchmark.latency_summary([i / 1000 for i in range(1, 1001)])
    assert summary["samples"] == 1000
    assert summary["median"] == pytest.approx(500.5)
    assert summary["p99"] == pytest.approx(990.0)
    assert summary["p999"] == pytest.approx(999.0)
    assert summary["max"] == pytest.approx(1000.0)


def test_rss_sampler_sums_this_process_and_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with benchmark.RssSampler(interval=0.01) as sampler:
            alone = benchmark.psutil.Process().memory_info().rss
            total = sampler.rediscover()
        assert sampler.peak_processes >= 2
        assert total > alone
        assert sampler.peak_bytes >= total
    finally:
        child.communicate(b"", timeout=TIMEOUT)
