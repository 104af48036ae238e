"""Side by side: the same workloads on fabric and its peers, in one run, on this machine.

For each round, each worker count and each system (interleaved, so drift in the machine's
load hits every system alike), one child process runs ``python -m benchmarks.peers --cell
SYSTEM --workers W ...``: it starts the system, times the first no-op result (start-up),
then for each workload runs a warm-up, ``latency_samples`` sequential round trips and one
throughput run of ``tasks`` tasks, checking every result, and prints one JSON line.
Ratios ours / peer are taken between cells of the same round and worker count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import children
from benchmarks import record as records
from benchmarks import tasks
from benchmarks.measure import BenchmarkError, RssSampler, Tally, latency_summary, ratio, usable_cpus
from benchmarks.systems import SYSTEMS, System
from benchmarks.workloads import KINDS, Kind

OURS = "fabric"
QUICK_LATENCY_SAMPLES = 5


def _counts(options: argparse.Namespace, kind: Kind) -> tuple[int, int]:
    """(throughput tasks, latency samples) of ``kind`` under ``options``."""
    tasks_count = options.tasks or (kind.quick_tasks if options.quick else kind.peer_tasks)
    samples = options.latency_samples
    if samples is None:
        samples = QUICK_LATENCY_SAMPLES if options.quick else kind.peer_latency_samples
    return tasks_count, samples


def _judge(tally: Tally, phase: str, kind: Kind, index: int, ok: bool, value: Any) -> None:
    if not ok:
        tally.add(phase, index, value)
    elif not kind.check(index, value):
        tally.add(phase, index, value)


def measure_kind(system: System, kind: Kind, count: int, samples: int) -> dict[str, Any]:
    """Warm-up, sequential round trips, then one throughput run of ``count`` tasks."""
    tally = Tally()
    burst = min(500, max(10, count // 20))
    system.run_all(kind.function, (kind.arguments(i) for i in range(burst)),
                   lambda i, ok, value: _judge(tally, "warm-up", kind, i, ok, value))
    durations = []
    for i in range(samples):
        arguments = kind.arguments(i)
        started = time.perf_counter()
        try:
            value, ok = system.call(kind.function, arguments), True
        except Exception as exc:  # noqa: BLE001 - a failed task is a wrong result
            value, ok = exc, False
        durations.append(time.perf_counter() - started)
        _judge(tally, "latency", kind, i, ok, value)
    started = time.perf_counter()
    system.run_all(kind.function, (kind.arguments(i) for i in range(count)),
                   lambda i, ok, value: _judge(tally, "throughput", kind, i, ok, value))
    elapsed = time.perf_counter() - started
    return {
        "tasks": count, "tasks_per_second": round(count / elapsed, 1), "throughput_seconds": round(elapsed, 4),
        "latency_ms": latency_summary(durations), "latency_samples_ms": [round(d * 1000, 4) for d in durations],
        "correct": tally.wrong == 0, "wrong_results": tally.wrong, "errors": tally.errors,
    }


def measure_cell(name: str, workers: int, options: argparse.Namespace) -> dict[str, Any]:
    """One system at one worker count, every workload; runs in the child process."""
    scratch = Path(tempfile.mkdtemp(prefix=f"fabric-bench-{name}-"))
    system = SYSTEMS[name](workers, scratch)
    cell: dict[str, Any] = {"system": name, "workers": workers, "version": system.version(),
                            "configuration": system.configuration(), "results": {}}
    try:
        with RssSampler(classify=system.classify) as rss:
            started = time.perf_counter()
            system.start()
            try:
                first = system.call(tasks.noop, ())
                cell["startup_seconds"] = round(time.perf_counter() - started, 4)
                if first is not None:
                    raise BenchmarkError(f"the first no-op returned {first!r}")
                rss.rediscover()
                for kind_name in options.kind:
                    kind = KINDS[kind_name]
                    count, samples = _counts(options, kind)
                    cell["results"][kind_name] = measure_kind(system, kind, count, samples)
                    rss.rediscover()
            finally:
                stopping = time.perf_counter()
                system.stop()
                cell["shutdown_seconds"] = round(time.perf_counter() - stopping, 4)
        cell["peak_rss_mb"] = round(rss.peak_bytes / 2**20, 1)
        cell["peak_processes"] = rss.peak_processes
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cell


def run_cell(name: str, workers: int, round_index: int, options: argparse.Namespace) -> dict[str, Any]:
    """Run one cell in a fresh child process; its record, or one with ``error``."""
    command = [sys.executable, "-m", "benchmarks.peers", "--cell", name, "--workers", str(workers),
               "--kind", ",".join(options.kind)]
    if options.tasks is not None:
        command += ["--tasks", str(options.tasks)]
    if options.latency_samples is not None:
        command += ["--latency-samples", str(options.latency_samples)]
    if options.quick:
        command.append("--quick")
    base = {"system": name, "workers": workers, "round": round_index}
    done = children.run_cell(command, options.cell_timeout)
    if done.error is not None or done.record is None:
        return {**base, "error": done.error or "no JSON line"}
    return {**base, **done.record}


def ratios(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """ours / peer for every (round, workers, kind, peer) where both ran correctly."""
    index = {(c["round"], c["workers"], c["system"]): c for c in cells if "error" not in c}
    found = []
    for (round_index, workers, system), cell in sorted(index.items()):
        ours = index.get((round_index, workers, OURS))
        if system == OURS or ours is None:
            continue
        for kind, theirs in cell["results"].items():
            mine = ours["results"].get(kind)
            if mine is None or not (mine["correct"] and theirs["correct"]):
                continue
            found.append({
                "round": round_index, "workers": workers, "kind": kind, "peer": system,
                "tasks_per_second": ratio(mine["tasks_per_second"], theirs["tasks_per_second"]),
                "latency_median": ratio(mine["latency_ms"]["median"], theirs["latency_ms"]["median"]),
                "latency_p99": ratio(mine["latency_ms"]["p99"], theirs["latency_ms"]["p99"]),
            })
    return found


def run_section(options: argparse.Namespace, log: records.Log) -> dict[str, Any]:
    systems: dict[str, dict[str, Any]] = {}
    runnable = []
    for name in options.systems:
        reason = SYSTEMS[name].missing()
        if reason is None:
            runnable.append(name)
        else:
            systems[name] = {"label": SYSTEMS[name].label, "skipped": reason}
            log(f"peers: skipping {name}: {reason}")
    cells = []
    for round_index in range(options.repeat):
        for workers in options.workers:
            for name in runnable:
                log(f"peers: round {round_index + 1}/{options.repeat}, {name}, {workers} worker(s) ...")
                cell = run_cell(name, workers, round_index, options)
                cells.append(cell)
                if "error" in cell:
                    log(f"peers: {name} with {workers} worker(s) failed: {cell['error']}")
                else:
                    system = systems.setdefault(name, {"label": SYSTEMS[name].label, "version": cell["version"],
                                                       "configuration": {}})
                    system["configuration"][str(workers)] = cell["configuration"]
                print(json.dumps(_without_samples(cell)), flush=True)
    return {
        "config": {"systems": options.systems, "kinds": options.kind, "workers": options.workers,
                   "repeat": options.repeat, "quick": options.quick, "usable_cpus": usable_cpus(),
                   "tasks": {k: _counts(options, KINDS[k])[0] for k in options.kind},
                   "latency_samples": {k: _counts(options, KINDS[k])[1] for k in options.kind},
                   "cell": "a fresh `python -m benchmarks.peers --cell SYSTEM` child process per (round, workers, "
                           "system); systems interleaved within each round"},
        "systems": systems,
        "cells": cells,
        "ratios": ratios(cells),
    }


def _without_samples(cell: dict[str, Any]) -> dict[str, Any]:
    shown = dict(cell)
    if "results" in shown:
        shown["results"] = {kind: {k: v for k, v in result.items() if k != "latency_samples_ms"}
                            for kind, result in shown["results"].items()}
    return shown


def execute(options: argparse.Namespace, prog: str) -> int:
    if options.cell is not None:
        return _execute_cell(options, prog)
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    section = record["sections"]["peers"] = run_section(options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    failed = [c for c in section["cells"] if "error" in c or not all(r["correct"] for r in c["results"].values())]
    return 1 if failed else 0


def _execute_cell(options: argparse.Namespace, prog: str) -> int:
    reason = SYSTEMS[options.cell].missing()
    if reason is not None:
        print(f"{prog}: {options.cell}: {reason}", file=sys.stderr)
        return 1
    cell = measure_cell(options.cell, options.workers[0], options)
    print(json.dumps(cell), flush=True)
    return 0


# --- the report ---------------------------------------------------------------------------


def _group(section: dict[str, Any]) -> dict[tuple[int, str, str], list[dict[str, Any]]]:
    """(workers, system, kind) -> the result of each round."""
    grouped: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    for cell in section["cells"]:
        for kind, result in cell.get("results", {}).items():
            grouped.setdefault((cell["workers"], cell["system"], kind), []).append({**result, "cell": cell})
    return grouped


def _ratio_text(found: Sequence[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in found if r[key] is not None]
    return records.spread(values, 2) if values else "—"


def summary_lines(section: dict[str, Any], workers: int = 2) -> list[str]:
    """One table of every workload at ``workers`` workers: figures and ratios ours / peer."""
    config = section["config"]
    if workers not in config["workers"]:
        workers = min(config["workers"], key=lambda w: abs(w - workers))
    grouped = _group(section)
    rows = []
    for kind in config["kinds"]:
        for system in config["systems"]:
            results = grouped.get((workers, system, kind))
            if not results:
                continue
            found = [r for r in section["ratios"]
                     if r["kind"] == kind and r["workers"] == workers and r["peer"] == system]
            rows.append([
                kind, SYSTEMS[system].label, records.spread([r["tasks_per_second"] for r in results]),
                "—" if system == OURS else _ratio_text(found, "tasks_per_second"),
                records.spread([r["latency_ms"]["median"] for r in results], 2),
                "—" if system == OURS else _ratio_text(found, "latency_median"),
                records.spread([r["latency_ms"]["p99"] for r in results], 2),
            ])
    return [f"### Summary: {records.workers_label(workers, config['usable_cpus'])} workers", "",
            *records.table(["workload", "system", "tasks/s", "tasks/s ours/peer", "median (ms)",
                            "median ours/peer", "p99 (ms)"], rows)]


def report_lines(section: dict[str, Any]) -> list[str]:
    config = section["config"]
    cpus = config["usable_cpus"]
    grouped = _group(section)
    rounds = config["repeat"]
    lines = ["## Side by side", ""]
    lines.append(
        f"The same workloads, the same machine, one system at a time in fresh child processes, systems interleaved "
        f"within each of {rounds} round(s). Tasks per throughput run: "
        + ", ".join(f"{k} {v:,}" for k, v in config["tasks"].items()) + "; sequential round trips: "
        + ", ".join(f"{k} {v:,}" for k, v in config["latency_samples"].items())
        + ". Cells show the median over rounds (min–max). Ratios are ours / peer within the same round: "
          "tasks/s ratio > 1 means fabric is faster, latency ratio < 1 means fabric answers sooner.")
    lines.append("")
    for info in section["systems"].values():
        if "skipped" in info:
            lines.append(f"- **{info['label']}**: skipped — {info['skipped']}")
        else:
            configuration: dict[str, Any] = next(iter(info["configuration"].values()), {})
            settings = ", ".join(f"{k}={v}" for k, v in configuration.items())
            shown = next(iter(info["configuration"]), "?")
            lines.append(f"- **{info['label']}** {info['version']} (configuration at {shown} workers): {settings}")
    failed = [c for c in section["cells"] if "error" in c]
    lines += [f"- **{c['system']}**, {c['workers']} worker(s), round {c['round'] + 1}: failed — {c['error'][:300]}"
              for c in failed]
    if section["cells"]:
        lines += ["", *summary_lines(section)]
    for kind in config["kinds"]:
        for workers in config["workers"]:
            rows = []
            for system in config["systems"]:
                results = grouped.get((workers, system, kind))
                if not results:
                    continue
                found = [r for r in section["ratios"] if r["kind"] == kind and r["workers"] == workers
                         and r["peer"] == system]
                rows.append([
                    SYSTEMS[system].label,
                    records.spread([r["tasks_per_second"] for r in results]),
                    records.spread([r["latency_ms"]["median"] for r in results], 3),
                    records.spread([r["latency_ms"]["p99"] for r in results], 3),
                    records.spread([r["latency_ms"]["p999"] for r in results], 3),
                    "—" if system == OURS else _ratio_text(found, "tasks_per_second"),
                    "—" if system == OURS else _ratio_text(found, "latency_median"),
                    records.spread([r["cell"].get("startup_seconds") for r in results], 2),
                    records.spread([r["cell"].get("peak_rss_mb") for r in results]),
                    "yes" if all(r["correct"] for r in results) else "NO",
                ])
            if not rows:
                continue
            lines += ["", f"### {kind}, {records.workers_label(workers, cpus)} workers", ""]
            lines += records.table(["system", "tasks/s", "median (ms)", "p99 (ms)", "p99.9 (ms)",
                                    "tasks/s ours/peer", "median ours/peer", "start-up (s)", "peak RSS (MB)",
                                    "correct"], rows)
    return lines


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.peers") -> int:
    from benchmarks import cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog=prog, description=cli.DESCRIPTIONS["peers"])
    cli.add_peers_arguments(parser)
    return execute(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
