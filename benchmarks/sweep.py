"""The endpoint and service paths measured alike: one measurement, or a sweep of kinds x worker counts.

A *path* is what a task travels: ``ENDPOINT`` (``Endpoint`` -> interchange -> manager ->
workers, ``benchmarks.endpoint``) or ``SERVICE`` (``Executor`` -> HTTP -> service ->
endpoint over CurveZMQ, ``benchmarks.service``). Both commands come here (``execute``):

- one kind, one worker count and no ``--output-dir``: one measurement in this process,
  printed as ONE JSON line (``path_record``), no record;
- otherwise a sweep: every (kind, worker count) cell is ``python -m MODULE --kind K
  --workers W ...`` in a fresh child process (``benchmarks.children``), so no cell inherits
  another's memory, caches or stray processes and the client's peak RSS is its own. The
  sweep prints each cell's JSON line (without the raw round-trip samples, which go to
  ``record.json`` for the plots) and writes ``record.json`` and ``report.md``.

A service section made next to an endpoint section (``fabric bench all``) also holds the
ratios service / endpoint of every (kind, workers) cell both measured (``ratios``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import operator
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import fabric
from benchmarks import children
from benchmarks import record as records
from benchmarks.measure import (BenchmarkError, RssSampler, Tally, latency_summary, machine_info, oversubscribed,
                                ratio, usable_cpus)
from benchmarks.workloads import KINDS, Kind
from fabric.errors import FabricError

CELL_TIMEOUT = 900.0
QUICK_LATENCY_SAMPLES = 5


@dataclasses.dataclass(frozen=True, slots=True)
class SweptPath:
    """One path the sweep measures: its cell module, its process roles, its task counts, its report text."""

    name: str
    """The section's name and the cells' ``benchmark`` field."""
    module: str
    """A cell is ``python -m MODULE``."""
    title: str
    explanation: str
    roles: tuple[str, ...]
    """Process roles whose peak RSS the report shows, in this order."""
    tasks: Callable[[Kind], int]
    """A sweep cell's tasks per throughput run (without ``--tasks``)."""
    latency_samples: Callable[[Kind], int]
    """A sweep cell's sequential round trips (without ``--latency-samples``)."""


_RSS = "Peak RSS in MB: the largest process of each role (xN: N processes, their largest sum)."

ENDPOINT = SweptPath(
    "endpoint", "benchmarks.endpoint", "Endpoint path",
    "Endpoint -> interchange -> manager -> workers and back, on this machine. tasks/s: all tasks submitted at "
    "once, each with a real Future, first submit to last result. Round trip: sequential submit-then-result, "
    "after a warm-up (p99.9 needs 1,000 samples). Start-up: Endpoint() to the first result. " + _RSS,
    ("client", "interchange", "manager", "worker"),
    operator.attrgetter("sweep_tasks"), operator.attrgetter("sweep_latency_samples"))

SERVICE = SweptPath(
    "service", "benchmarks.service", "Service path",
    "Executor -> HTTP -> service (SQLite store, forwarder) -> endpoint over CurveZMQ (interchange, manager, "
    "workers) and back, every process on this machine. tasks/s: all tasks submitted at once through "
    "Executor.submit, first submit to last result. Round trip: sequential submit-then-result after a warm-up "
    "(p99.9 needs 1,000 samples). Start-up: starting the endpoint to the first no-op result through the "
    "service. " + _RSS,
    ("client", "service", "interchange", "manager", "worker"),
    operator.attrgetter("service_tasks"), operator.attrgetter("service_latency_samples"))

PATHS = {path.name: path for path in (ENDPOINT, SERVICE)}

VERSUS = ("vs endpoint: this path / the endpoint path for the same kind and worker count in this record "
          "(tasks/s; median round trip), where both ran correctly; the two paths run different task counts.")


# --- one measurement ---------------------------------------------------------------------


def counts(options: argparse.Namespace, kind: Kind, tasks: int, samples: int) -> tuple[int, int]:
    """(throughput tasks, latency samples) of one measurement: the options', else ``--quick``'s, else these."""
    if options.tasks is not None:
        tasks = options.tasks
    elif options.quick:
        tasks = kind.quick_tasks
    if options.latency_samples is not None:
        samples = options.latency_samples
    elif options.quick:
        samples = QUICK_LATENCY_SAMPLES
    return tasks, samples


@dataclasses.dataclass(slots=True)
class Measured:
    """What one measurement of a path found (``path_record`` turns it into the JSON line)."""

    kind: Kind
    tasks: int
    tally: Tally
    durations: list[float]
    throughput_seconds: float
    startup_seconds: float
    rss: RssSampler


def path_record(path: SweptPath, options: argparse.Namespace, measured: Measured) -> dict[str, Any]:
    """One measurement's JSON line (the fields every path has)."""
    workers = options.workers[0]
    tally = measured.tally
    record: dict[str, Any] = {
        "benchmark": path.name, "kind": measured.kind.name, "tasks": measured.tasks, "workers": workers,
        "managers": options.managers, "prefetch": options.prefetch,
        "oversubscribed": oversubscribed(workers * options.managers),
        "correct": tally.wrong == 0, "wrong_results": tally.wrong,
        "tasks_per_second": round(measured.tasks / measured.throughput_seconds, 1),
        "throughput_seconds": round(measured.throughput_seconds, 4),
        "latency_ms": latency_summary(measured.durations),
        "startup_seconds": round(measured.startup_seconds, 4),
        "peak_rss_mb": round(measured.rss.peak_bytes / 2**20, 1),
        "peak_processes": measured.rss.peak_processes,
        "peak_rss_by_role": measured.rss.roles_mb(),
        "machine": machine_info(), "fabric_version": fabric.__version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "errors": tally.errors,
    }
    if options.record_samples:
        record["latency_samples_ms"] = [round(d * 1000.0, 4) for d in measured.durations]
    return record


def is_single(options: argparse.Namespace) -> bool:
    """One kind, one worker count and no ``--output-dir``: measured in this process."""
    return len(options.kind) == 1 and len(options.workers) == 1 and options.output_dir is None


def execute(path: SweptPath, options: argparse.Namespace, prog: str,
            run: Callable[[argparse.Namespace], dict[str, Any]]) -> int:
    """What ``options`` ask for: ``run(options)`` here (one measurement), or a sweep of child processes."""
    if not is_single(options):
        return execute_sweep(path, options, prog)
    try:
        record = run(options)
    except (BenchmarkError, FabricError, OSError, subprocess.CalledProcessError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    _emit(options, record)
    if not record["correct"]:
        print(f"{prog}: {record['wrong_results']} wrong results: " + "; ".join(record["errors"]), file=sys.stderr)
        return 1
    return 0


def _emit(options: argparse.Namespace, record: dict[str, Any]) -> None:
    """Print one JSON line; with ``--output FILE`` also append it there."""
    line = json.dumps(record)
    if options.output is not None:
        options.output.parent.mkdir(parents=True, exist_ok=True)
        with options.output.open("a", encoding="utf-8") as output:
            output.write(line + "\n")
    print(line, flush=True)


# --- the sweep -----------------------------------------------------------------------------


def cell_command(path: SweptPath, options: argparse.Namespace, kind: str, workers: int) -> list[str]:
    command = [sys.executable, "-m", path.module, "--kind", kind, "--workers", str(workers),
               "--managers", str(options.managers), "--record-samples"]
    spec = KINDS[kind]
    if options.tasks is not None:
        command += ["--tasks", str(options.tasks)]
    elif not options.quick:
        command += ["--tasks", str(path.tasks(spec))]
    if options.latency_samples is not None:
        command += ["--latency-samples", str(options.latency_samples)]
    elif not options.quick:
        command += ["--latency-samples", str(path.latency_samples(spec))]
    if options.quick:
        command.append("--quick")
    if options.prefetch is not None:
        command += ["--prefetch", str(options.prefetch)]
    if options.log_level:
        command += ["--log-level", options.log_level]
    if getattr(options, "callers", None) is not None:  # the service path's concurrent-callers cell
        command += ["--callers", ",".join(map(str, options.callers))]
    if getattr(options, "calls_per_caller", None) is not None:
        command += ["--calls-per-caller", str(options.calls_per_caller)]
    return command


def run_cell(path: SweptPath, options: argparse.Namespace, kind: str, workers: int) -> dict[str, Any]:
    """One cell's JSON record, or a record with ``error`` when the child failed."""
    done = children.run_cell(cell_command(path, options, kind, workers), CELL_TIMEOUT)
    if done.record is None:
        return {"kind": kind, "workers": workers, "correct": False, "error": done.error or "no JSON line"}
    if done.error is not None:
        done.record["error"] = done.error
    return done.record


def run_section(path: SweptPath, options: argparse.Namespace, log: records.Log,
                endpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every (kind, workers) cell of ``path``; ``endpoint``: an endpoint section to take ratios against."""
    cells = []
    for kind in options.kind:
        for workers in options.workers:
            log(f"{path.name}: {kind}, {workers} worker(s) ...")
            cell = run_cell(path, options, kind, workers)
            cells.append(cell)
            _emit(options, {key: value for key, value in cell.items() if key != "latency_samples_ms"})
    section: dict[str, Any] = {
        "config": {"path": path.name, "kinds": options.kind, "workers": options.workers,
                   "managers": options.managers, "prefetch": options.prefetch, "tasks": options.tasks,
                   "latency_samples": options.latency_samples, "quick": options.quick, "usable_cpus": usable_cpus(),
                   "cell": f"a fresh `python -m {path.module}` child process per (kind, workers)"},
        "cells": cells,
    }
    if endpoint is not None and path is not ENDPOINT:
        section["ratios_to_endpoint"] = ratios(cells, endpoint["cells"])
    return section


def execute_sweep(path: SweptPath, options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    section = record["sections"][path.name] = run_section(path, options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    failed = [c for c in section["cells"] if not _correct(c)]
    for cell in failed:
        records.log(f"{prog}: {cell['kind']} with {cell['workers']} worker(s) failed: "
                    f"{cell.get('error') or cell.get('errors')}")
    return 1 if failed else 0


def _correct(cell: dict[str, Any]) -> bool:
    return bool(cell.get("correct")) and not cell.get("error")


def ratios(cells: Sequence[dict[str, Any]], endpoint_cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """This path / the endpoint path for every (kind, workers) that both measured correctly."""
    measured = {(c["kind"], c["workers"]): c for c in endpoint_cells if _correct(c)}
    found = []
    for cell in cells:
        other = measured.get((cell["kind"], cell["workers"]))
        if other is None or not _correct(cell):
            continue
        found.append({
            "kind": cell["kind"], "workers": cell["workers"],
            "tasks_per_second": ratio(cell["tasks_per_second"], other["tasks_per_second"]),
            "latency_median": ratio(cell["latency_ms"]["median"], other["latency_ms"]["median"]),
            "latency_p99": ratio(cell["latency_ms"]["p99"], other["latency_ms"]["p99"]),
        })
    return found


# --- the report ------------------------------------------------------------------------------


def _rss(path: SweptPath, cell: dict[str, Any]) -> str:
    roles = cell.get("peak_rss_by_role") or {}
    parts = []
    for role in path.roles:
        peak = roles.get(role)
        if peak is None:
            continue
        if peak["processes"] > 1:
            parts.append(f"{role} {peak['largest_mb']:.0f} (x{peak['processes']}: {peak['total_mb']:.0f})")
        else:
            parts.append(f"{role} {peak['largest_mb']:.0f}")
    return "; ".join(parts) or "—"


def _versus(found: dict[str, Any] | None) -> str:
    if found is None:
        return "—"
    return f"{records.number(found['tasks_per_second'], 3)}; {records.number(found['latency_median'], 2)}"


def report_lines(section: dict[str, Any]) -> list[str]:
    path = PATHS[section["config"].get("path", ENDPOINT.name)]
    cpus = section["config"]["usable_cpus"]
    compared = "ratios_to_endpoint" in section
    found = {(r["kind"], r["workers"]): r for r in section.get("ratios_to_endpoint", [])}
    rows = []
    for cell in section["cells"]:
        workers = records.workers_label(cell["workers"], cpus)
        versus = [_versus(found.get((cell["kind"], cell["workers"])))] if compared else []
        if cell.get("error") and "tasks_per_second" not in cell:
            failed = "failed: " + cell["error"][:80]
            rows.append([cell["kind"], workers, "—", failed, "—", "—", "—", *versus, "no"])
            continue
        latency = cell["latency_ms"]
        rows.append([
            cell["kind"], workers, records.number(cell["tasks"]),
            records.number(cell["tasks_per_second"], 1 if cell["tasks_per_second"] < 10 else 0),
            " / ".join(records.number(latency[key], 2) for key in ("median", "p99", "p999")),
            records.number(cell["startup_seconds"], 2), _rss(path, cell), *versus,
            "yes" if _correct(cell) else "NO",
        ])
    header = ["kind", "workers", "tasks", "tasks/s", "round trip median / p99 / p99.9 (ms)", "start-up (s)",
              "peak RSS (MB)", *(["vs endpoint: tasks/s; median"] if compared else []), "correct"]
    explanation = f"{path.explanation} {VERSUS}" if compared else path.explanation
    return [f"## {path.title}", "", explanation, "", *records.table(header, rows)]
