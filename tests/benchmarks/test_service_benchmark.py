"""The service path's benchmark (``benchmarks.service``, swept by ``benchmarks.sweep``) run for real, quick.

A real service, a real endpoint over CurveZMQ and the SDK's ``Executor`` with tiny task
counts: the tests check the JSON line, the record and the report, and that no process is
left behind, never how fast anything is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks import children, plot, sweep
from benchmarks import record as records
from benchmarks import service as benchmark
from benchmarks.measure import usable_cpus

REPOSITORY = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0
"""Seconds any command or wait here may take (a bound, never a measurement)."""

KEYS = {"benchmark", "kind", "tasks", "workers", "managers", "prefetch", "oversubscribed", "correct",
        "wrong_results", "tasks_per_second", "throughput_seconds", "latency_ms", "startup_seconds", "peak_rss_mb",
        "peak_processes", "peak_rss_by_role", "machine", "fabric_version", "timestamp", "errors",
        "latency_ms_by_argument_bytes", "latency_samples_per_size"}
ROLES = {"client", "service", "interchange", "manager", "worker"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_a_quick_cell_prints_one_checked_json_line_with_every_field() -> None:
    completed = run("benchmarks.service", "--quick", "--kind", "noop", "--workers", "2")
    assert completed.returncode == 0, completed.stderr
    (record,) = json_lines(completed.stdout)
    assert set(record) == KEYS
    assert (record["benchmark"], record["kind"], record["workers"], record["managers"]) == ("service", "noop", 2, 1)
    assert record["tasks"] == sweep.KINDS["noop"].quick_tasks
    assert record["correct"] is True and record["wrong_results"] == 0 and record["errors"] == []
    assert record["tasks_per_second"] > 0 and record["startup_seconds"] > 0 and record["peak_rss_mb"] > 0
    assert record["oversubscribed"] == (2 > usable_cpus())
    roles = record["peak_rss_by_role"]
    assert ROLES <= set(roles)
    assert roles["service"]["processes"] == 1  # the service itself; `service add-user` is not counted as one
    assert roles["worker"]["processes"] == 2
    latency = record["latency_ms"]
    assert latency["samples"] == 5 and latency["p999"] is None
    assert 0 < latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"]
    by_size = record["latency_ms_by_argument_bytes"]
    assert list(by_size) == ["100", "1000", "10000", "100000"]
    assert all(figures["samples"] == record["latency_samples_per_size"] and figures["median"] > 0
               for figures in by_size.values())
    assert "record written" not in completed.stderr


def test_a_quick_sweep_writes_a_line_per_cell_a_record_and_the_service_table(tmp_path: Path) -> None:
    completed = run("benchmarks", "service", "--quick", "--kind", "noop,payload100k", "--workers", "1,2",
                    "--output-dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    printed = json_lines(completed.stdout)
    assert [(c["kind"], c["workers"]) for c in printed] == [
        ("noop", 1), ("noop", 2), ("payload100k", 1), ("payload100k", 2)]
    assert all("latency_samples_ms" not in c for c in printed)
    record = records.load(tmp_path)
    assert list(record["sections"]) == ["service"] and record["finished"]
    section = record["sections"]["service"]
    assert section["config"]["path"] == "service" and "benchmarks.service" in section["config"]["cell"]
    assert "ratios_to_endpoint" not in section  # no endpoint section to compare with
    for cell in section["cells"]:
        assert cell["benchmark"] == "service" and cell["correct"] is True
        assert ROLES <= set(cell["peak_rss_by_role"])
        assert len(cell["latency_samples_ms"]) == cell["latency_ms"]["samples"] == 5
    report = (tmp_path / "report.md").read_text()
    assert "## Service path" in report and "| payload100k | 2 | 40 |" in report
    assert "client " in report and "; service " in report and "; interchange " in report
    assert "vs endpoint" not in report


def _cell(kind: str, workers: int, rate: float, median: float, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "workers": workers, "tasks": 100, "tasks_per_second": rate, "correct": True,
            "latency_ms": {"median": median, "p99": median * 2, "p999": None}, "startup_seconds": 0.5,
            "peak_rss_by_role": {}, **extra}


def test_the_service_table_shows_service_over_endpoint_where_both_ran() -> None:
    endpoint = {"cells": [_cell("noop", 2, 40_000.0, 1.0), _cell("noop", 4, 30_000.0, 1.0, correct=False),
                          {"kind": "numpy", "workers": 2, "correct": False, "error": "timed out after 900 s"}]}
    cells = [_cell("noop", 2, 10_000.0, 5.0), _cell("noop", 4, 9_000.0, 5.0), _cell("numpy", 2, 200.0, 9.0),
             {"kind": "payload10m", "workers": 8, "correct": False, "error": "exit status 1: boom"}]
    found = sweep.ratios(cells, endpoint["cells"])
    assert found == [{"kind": "noop", "workers": 2, "tasks_per_second": 0.25, "latency_median": 5.0,
                      "latency_p99": 5.0}]
    section = {"config": {"path": "service", "usable_cpus": 2}, "cells": cells, "ratios_to_endpoint": found}
    lines = sweep.report_lines(section)
    assert lines[0] == "## Service path"
    assert any(line.startswith("| noop | 2 | 100 | 10,000 |") and "| 0.250; 5.00 | yes |" in line for line in lines)
    assert any(line.startswith("| noop | 4 (oversubscribed) |") and "| — | yes |" in line for line in lines)
    assert any("8 (oversubscribed)" in line and "failed: exit status 1" in line for line in lines)


def test_an_old_record_without_a_path_is_the_endpoint_section() -> None:
    lines = sweep.report_lines({"config": {"usable_cpus": 2}, "cells": [_cell("noop", 1, 1.0, 1.0)]})
    assert lines[0] == "## Endpoint path" and "vs endpoint" not in "\n".join(lines)


def test_a_timed_out_cell_is_stopped_with_everything_it_started() -> None:
    script = ("import json, subprocess, sys, time; "
              "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(600)']); "
              "print(json.dumps({'grandchild': child.pid}), flush=True); time.sleep(600)")
    done = children.run_cell([sys.executable, "-c", script], timeout=2.0)
    assert done.error == "timed out after 2 s"
    assert done.record is not None
    _assert_gone(done.record["grandchild"])


def test_the_service_process_ends_when_the_benchmark_is_killed() -> None:
    script = ("import subprocess, sys; from benchmarks.service import _exit_with_parent; "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
              "preexec_fn=_exit_with_parent()); print(child.pid, flush=True); sys.stdin.read()")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPOSITORY, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.communicate(timeout=TIMEOUT)
    _assert_gone(pid)


def _assert_gone(pid: int) -> None:
    """The process ``pid`` ends within ``TIMEOUT`` (a zombie no one reaped counts as ended)."""
    try:
        process = psutil.Process(pid)
        process.wait(timeout=TIMEOUT)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        assert process.status() == psutil.STATUS_ZOMBIE, f"process {pid} outlived the benchmark"


def test_service_roles_leave_tool_runs_out() -> None:
    class Fake:
        def __init__(self, *command: str) -> None:
            self.command = list(command)

        def cmdline(self) -> list[str]:
            return self.command

    def role(*command: str) -> str:
        return benchmark.service_role(Fake(sys.executable, "-m", *command))  # type: ignore[arg-type]

    assert role("service", "start", "--config", "x") == "service"
    assert role("service", "add-user", "bench") == "other"
    assert role("interchange", "--config", "{}") == "interchange"


def test_plot_draws_both_paths_when_the_record_has_both(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (it comes with the peers extra)")
    record = records.new_record("test")
    for name, rate in (("endpoint", 40_000.0), ("service", 9_000.0)):
        cells = [_cell(kind, workers, rate / workers, 1.0, latency_samples_ms=[1.0, 2.0, 3.0])
                 for kind in ("noop", "numpy") for workers in (1, 2)]
        record["sections"][name] = {"config": {"path": name, "usable_cpus": 2}, "cells": cells}
    written = plot.draw(tmp_path, record)
    assert [path.name for path in written] == ["endpoint-throughput.png", "endpoint-latency.png",
                                               "service-throughput.png", "service-latency.png",
                                               "paths-throughput.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in written)
