"""The endpoint sweep: every (kind, worker count) cell measured in a fresh child process.

Each cell is ``python -m benchmarks.endpoint --kind K --workers W ...`` (one measurement,
one JSON line), so no cell inherits another's memory, caches or stray processes, and the
client's peak RSS is its own. The sweep prints each cell's JSON line (without the raw
round-trip samples, which go to ``record.json`` for the plots) and writes the record.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from benchmarks import record as records
from benchmarks.measure import usable_cpus
from benchmarks.workloads import KINDS

CELL_TIMEOUT = 900.0
ROLES = ("client", "interchange", "manager", "worker")


def cell_command(options: argparse.Namespace, kind: str, workers: int) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.endpoint", "--kind", kind, "--workers", str(workers),
               "--managers", str(options.managers), "--record-samples"]
    spec = KINDS[kind]
    if options.tasks is not None:
        command += ["--tasks", str(options.tasks)]
    elif not options.quick:
        command += ["--tasks", str(spec.sweep_tasks)]
    if options.latency_samples is not None:
        command += ["--latency-samples", str(options.latency_samples)]
    elif not options.quick:
        command += ["--latency-samples", str(spec.sweep_latency_samples)]
    if options.quick:
        command.append("--quick")
    if options.prefetch is not None:
        command += ["--prefetch", str(options.prefetch)]
    if options.log_level:
        command += ["--log-level", options.log_level]
    return command


def run_cell(options: argparse.Namespace, kind: str, workers: int) -> dict[str, Any]:
    """One cell's JSON record, or a record with ``error`` when the child failed."""
    command = cell_command(options, kind, workers)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=CELL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "workers": workers, "correct": False, "error": f"timed out after {CELL_TIMEOUT:.0f} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"kind": kind, "workers": workers, "correct": False,
                "error": f"exit status {completed.returncode}: {completed.stderr.strip()[-500:]}"}
    cell: dict[str, Any] = json.loads(lines[-1])
    if completed.returncode != 0:
        cell["error"] = f"exit status {completed.returncode}: {completed.stderr.strip()[-500:]}"
    return cell


def run_section(options: argparse.Namespace, log: records.Log) -> dict[str, Any]:
    cells = []
    for kind in options.kind:
        for workers in options.workers:
            log(f"endpoint: {kind}, {workers} worker(s) ...")
            cell = run_cell(options, kind, workers)
            cells.append(cell)
            shown = {key: value for key, value in cell.items() if key != "latency_samples_ms"}
            print(json.dumps(shown), flush=True)
            if options.output is not None:
                options.output.parent.mkdir(parents=True, exist_ok=True)
                with options.output.open("a", encoding="utf-8") as output:
                    output.write(json.dumps(shown) + "\n")
    return {
        "config": {"kinds": options.kind, "workers": options.workers, "managers": options.managers,
                   "prefetch": options.prefetch, "tasks": options.tasks, "latency_samples": options.latency_samples,
                   "quick": options.quick, "usable_cpus": usable_cpus(),
                   "cell": "a fresh `python -m benchmarks.endpoint` child process per (kind, workers)"},
        "cells": cells,
    }


def execute(options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    record["sections"]["endpoint"] = run_section(options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    failed = [c for c in record["sections"]["endpoint"]["cells"] if not c.get("correct") or c.get("error")]
    for cell in failed:
        records.log(f"{prog}: {cell['kind']} with {cell['workers']} worker(s) failed: "
                    f"{cell.get('error') or cell.get('errors')}")
    return 1 if failed else 0


def _rss(cell: dict[str, Any]) -> str:
    roles = cell.get("peak_rss_by_role") or {}
    parts = []
    for role in ROLES:
        peak = roles.get(role)
        if peak is None:
            continue
        if peak["processes"] > 1:
            parts.append(f"{role} {peak['largest_mb']:.0f} (x{peak['processes']}: {peak['total_mb']:.0f})")
        else:
            parts.append(f"{role} {peak['largest_mb']:.0f}")
    return "; ".join(parts) or "—"


def report_lines(section: dict[str, Any]) -> list[str]:
    cpus = section["config"]["usable_cpus"]
    rows = []
    for cell in section["cells"]:
        if cell.get("error") and "tasks_per_second" not in cell:
            rows.append([cell["kind"], records.workers_label(cell["workers"], cpus), "—", "failed: " + cell["error"][:80],
                         "—", "—", "—", "no"])
            continue
        latency = cell["latency_ms"]
        rows.append([
            cell["kind"], records.workers_label(cell["workers"], cpus), records.number(cell["tasks"]),
            records.number(cell["tasks_per_second"]),
            " / ".join(records.number(latency[key], 2) for key in ("median", "p99", "p999")),
            records.number(cell["startup_seconds"], 2), _rss(cell),
            "yes" if cell.get("correct") and not cell.get("error") else "NO",
        ])
    return [
        "## Endpoint path",
        "",
        "Endpoint -> interchange -> manager -> workers and back, on this machine. tasks/s: all tasks submitted at "
        "once, each with a real Future, first submit to last result. Round trip: sequential submit-then-result, "
        "after a warm-up (p99.9 needs 1,000 samples). Start-up: Endpoint() to the first result. Peak RSS in MB: "
        "the largest process of each role (xN: N processes, their largest sum).",
        "",
        *records.table(["kind", "workers", "tasks", "tasks/s", "round trip median / p99 / p99.9 (ms)",
                        "start-up (s)", "peak RSS (MB)", "correct"], rows),
    ]
