"""The benchmark suite (``fabric bench ...`` / ``python -m benchmarks ...``) run for real in quick mode.

Tiny task counts and no timing thresholds: these tests prove that every command runs,
checks its results and writes its record, not how fast anything is. Peers that are not
installed (CI installs only ``.[test]``) are skipped with the reason; the
``ProcessPoolExecutor`` peer needs nothing and always runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import cli, peers, plot, scale, suite
from benchmarks import record as records
from benchmarks.measure import usable_cpus
from benchmarks.systems import SYSTEMS
from fabric import cli as fabric_cli

REPOSITORY = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# --- micro -----------------------------------------------------------------------------------


def test_micro_benchmarks_pass_with_benchmarks_disabled() -> None:
    completed = run("-m", "pytest", "benchmarks/micro", "--benchmark-disable", "-q", "-p", "no:cacheprovider")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert " passed" in completed.stdout and "failed" not in completed.stdout


def test_micro_command_writes_pytest_benchmark_json_and_a_record(tmp_path: Path) -> None:
    completed = run("-m", "benchmarks", "micro", "--quick", "-k", "encode_task_batch or no-arg",
                    "--output-dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    record = records.load(tmp_path)
    section = record["sections"]["micro"]
    assert section["pytest_exit_status"] == 0
    names = {entry["name"] for entry in section["benchmarks"]}
    assert "test_encode_task_batch" in names
    batch = next(e for e in section["benchmarks"] if e["name"] == "test_encode_task_batch")
    assert batch["items"] == 1000 and batch["items_per_second"] > 0
    assert "benchmarks" in json.loads((tmp_path / "micro.json").read_text())
    assert "## Micro benchmarks" in (tmp_path / "report.md").read_text()


# --- endpoint sweep ----------------------------------------------------------------------------


def test_endpoint_sweep_writes_one_line_per_cell_and_a_record(tmp_path: Path) -> None:
    lines = tmp_path / "lines.jsonl"
    completed = run("-m", "benchmarks", "endpoint", "--quick", "--kind", "noop,numpy", "--workers", "1,2",
                    "--output-dir", str(tmp_path / "record"), "--output", str(lines))
    assert completed.returncode == 0, completed.stderr
    printed = json_lines(completed.stdout)
    assert [(c["kind"], c["workers"]) for c in printed] == [("noop", 1), ("noop", 2), ("numpy", 1), ("numpy", 2)]
    assert all("latency_samples_ms" not in c for c in printed)
    assert len(lines.read_text().splitlines()) == 4
    record = records.load(tmp_path / "record")
    assert record["versions"]["fabric-faas"] and record["machine"]["usable_cpus"] >= 1
    for cell in record["sections"]["endpoint"]["cells"]:
        assert cell["correct"] is True
        assert cell["oversubscribed"] == (cell["workers"] > usable_cpus())
        roles = cell["peak_rss_by_role"]
        assert {"client", "interchange", "manager", "worker"} <= set(roles)
        assert roles["worker"]["processes"] == cell["workers"]
        assert len(cell["latency_samples_ms"]) == cell["latency_ms"]["samples"] == 5
    report = (tmp_path / "record" / "report.md").read_text()
    assert "## Endpoint path" in report and "| numpy | 2" in report


def test_single_measurement_keeps_its_one_json_line_and_writes_no_record(tmp_path: Path) -> None:
    completed = run("-m", "benchmarks.endpoint", "--kind", "payload10m", "--quick", "--workers", "1")
    assert completed.returncode == 0, completed.stderr
    (record,) = json_lines(completed.stdout)
    assert record["kind"] == "payload10m" and record["tasks"] == 3 and record["correct"] is True
    assert "latency_samples_ms" not in record
    assert "record written" not in completed.stderr


# --- peers ---------------------------------------------------------------------------------------


def test_fabric_and_processpool_side_by_side_with_ratios(tmp_path: Path) -> None:
    completed = run("-m", "benchmarks", "peers", "--quick", "--systems", "fabric,processpool", "--workers", "1",
                    "--kind", "noop,sleep10ms", "--output-dir", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    section = records.load(tmp_path)["sections"]["peers"]
    assert {c["system"] for c in section["cells"]} == {"fabric", "processpool"}
    for cell in section["cells"]:
        assert cell["version"] and cell["configuration"]
        assert all(result["correct"] for result in cell["results"].values())
    assert {(r["peer"], r["kind"]) for r in section["ratios"]} == {("processpool", "noop"), ("processpool", "sleep10ms")}
    assert all(r["tasks_per_second"] > 0 for r in section["ratios"])
    report = (tmp_path / "report.md").read_text()
    assert "ProcessPoolExecutor" in report and "ours/peer" in report


@pytest.mark.parametrize("system", ["dask", "ray", "parsl"])
def test_an_installed_peer_runs_its_cell(system: str) -> None:
    reason = SYSTEMS[system].missing()
    if reason is not None:
        pytest.skip(f"peer {system}: {reason}")
    completed = run("-m", "benchmarks.peers", "--cell", system, "--workers", "1", "--kind", "noop", "--quick",
                    "--tasks", "10", "--latency-samples", "2")
    assert completed.returncode == 0, completed.stderr[-2000:]
    (cell,) = json_lines(completed.stdout)
    assert cell["system"] == system and cell["version"] != "not installed"
    assert cell["results"]["noop"]["correct"] is True


def _peer_options(**overrides: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_peers_arguments(parser)
    options = parser.parse_args(["--quick"])
    for name, value in overrides.items():
        setattr(options, name, value)
    return options


def test_a_missing_peer_is_skipped_with_its_reason_never_faked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SYSTEMS["ray"], "missing", classmethod(lambda cls: "ray is not installed (pip ...)"))
    messages: list[str] = []
    section = peers.run_section(_peer_options(systems=["ray"], workers=[1]), messages.append)
    assert section["cells"] == [] and section["ratios"] == []
    assert section["systems"]["ray"] == {"label": "Ray", "skipped": "ray is not installed (pip ...)"}
    assert any("skipping ray" in message for message in messages)
    assert any("skipped — ray is not installed" in line for line in peers.report_lines(section))


def test_ratios_are_ours_over_peer_within_a_round() -> None:
    def cell(system: str, round_index: int, rate: float, median: float) -> dict[str, Any]:
        result = {"tasks_per_second": rate, "latency_ms": {"median": median, "p99": median * 2}, "correct": True}
        return {"system": system, "workers": 2, "round": round_index, "results": {"noop": result}}

    cells = [cell("fabric", 0, 1000.0, 1.0), cell("dask", 0, 250.0, 4.0),
             cell("fabric", 1, 500.0, 2.0), cell("dask", 1, 500.0, 1.0),
             {"system": "ray", "workers": 2, "round": 0, "error": "timed out"}]
    found = peers.ratios(cells)
    assert [(r["round"], r["tasks_per_second"], r["latency_median"]) for r in found] == [(0, 4.0, 0.25), (1, 1.0, 2.0)]


# --- scale -------------------------------------------------------------------------------------------


def test_scale_simulation_drives_the_real_scheduler() -> None:
    options = argparse.Namespace(managers=[10, 100], workers_per_manager=4, turns=5, repeat=2, quick=False)
    section = scale.run_section(options, lambda message: None)
    rows = section["rows"]
    assert [row["managers"] for row in rows] == [10, 100]
    assert [row["workers"] for row in rows] == [40, 400]
    for row in rows:
        assert row["fill_tasks"] == row["managers"] * 8  # every manager filled to capacity 2 x workers
        assert row["steady_1_tasks_per_second"] > 0 and row["steady_busy_tasks_per_second"] > 0
        assert row["expired_managers"] == 1 and row["expiry_requeued_tasks"] == 8
        assert "steady_1_tasks_per_second_range" in row
    assert set(section["bends"]) >= {"steady_1_tasks_per_second", "steady_busy_tasks_per_second"}


def test_bends_names_the_first_drop_below_half() -> None:
    rows = [{"managers": 10, "rate": 100.0}, {"managers": 100, "rate": 80.0}, {"managers": 1000, "rate": 20.0}]
    assert scale.bends(rows, "rate").startswith("bends between 100 and 1,000 managers")
    assert scale.bends(rows[:2], "rate").startswith("flat")


# --- record, report, plots, all ------------------------------------------------------------------------


def test_all_runs_the_chosen_sections_into_one_record(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_all_arguments(parser)
    options = parser.parse_args(["--quick", "--skip", "endpoint,service,peers,micro", "--no-plots",
                                 "--output-dir", str(tmp_path)])
    assert suite.execute(options, "test") == 0
    record = records.load(tmp_path)
    assert list(record["sections"]) == ["scale"] and record["finished"]
    assert "## Scale" in (tmp_path / "report.md").read_text()
    endpoint_options = suite.section_options("endpoint", parser.parse_args(["--workers", "1,8"]))
    assert endpoint_options.kind == list(cli.KINDS) and endpoint_options.workers == [1, 8]
    service_options = suite.section_options("service", parser.parse_args(["--workers", "2", "--quick"]))
    assert service_options.kind == list(cli.KINDS) and service_options.workers == [2] and service_options.quick
    peer_options = suite.section_options("peers", parser.parse_args(["--systems", "processpool", "--repeat", "3"]))
    assert peer_options.systems == ["processpool"] and peer_options.repeat == 3


def test_plot_draws_pngs_from_a_record(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (it comes with the peers extra)")
    record = records.new_record("test")
    record["sections"]["scale"] = scale.run_section(
        argparse.Namespace(managers=[10, 100], workers_per_manager=2, turns=3, repeat=1, quick=False), lambda m: None)
    records.write(tmp_path, record)
    completed = run("-m", "benchmarks", "plot", str(tmp_path), "--output-dir", str(tmp_path / "charts"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == [str(tmp_path / "charts" / "scale.png")]
    assert (tmp_path / "charts" / "scale.png").read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_says_so(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    monkeypatch.setattr(plot, "matplotlib_missing", lambda: plot.MISSING)
    options = argparse.Namespace(directory=tmp_path, output_dir=None, workers=2)
    assert plot.execute(options, "fabric bench plot") == 1
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_report_tolerates_failed_cells() -> None:
    section = {"config": {"usable_cpus": 2},
               "cells": [{"kind": "noop", "workers": 8, "correct": False, "error": "timed out after 900 s"}]}
    from benchmarks import sweep

    lines = sweep.report_lines(section)
    assert any("8 (oversubscribed)" in line and "failed: timed out" in line for line in lines)


# --- command lines -------------------------------------------------------------------------------------


def test_fabric_bench_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        fabric_cli.main(["bench", "--help"])
    shown = capsys.readouterr().out
    for command in ("endpoint", "service", "flows", "peers", "scale", "micro", "routing", "all", "plot"):
        assert command in shown
    assert fabric_cli.main(["bench"]) == 2


@pytest.mark.parametrize("args, message", [
    (["bench", "peers", "--systems", "slurm"], "invalid choice"),
    (["bench", "endpoint", "--workers", "1,x"], "--workers: expected an integer"),
    (["bench", "scale", "--managers", "0"], "must be at least 1"),
    (["bench", "routing", "--modes", "random"], "invalid choice"),
])
def test_bad_bench_arguments_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        fabric_cli.main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_fabric_bench_runs_through_the_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("fabric")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fabric.cli"]
    completed = subprocess.run([*command, "bench", "scale", "--quick", "--managers", "10", "--output-dir",
                                str(tmp_path)], capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "fabric bench scale: record written to" in completed.stderr
    assert records.load(tmp_path)["sections"]["scale"]["rows"][0]["managers"] == 10
