"""``fabric bench environments``: what containers and shell functions cost per task.

On a local ``Endpoint`` with one worker, in rounds whose order alternates (A/B, B/A) so a
busy machine's drift falls on both sides, for each environment (no container,
bubblewrap, podman on the node's own root):

* **cold start**: the first task asking for a container in a fresh endpoint; its
  ``future.timing["start_seconds"]`` (the container's start until its runner is ready)
  and the task's whole round trip;
* **warm per-task cost**: the median and p90 round trip of ``tasks`` sequential no-op
  tasks in the warm container, and the throughput of ``tasks`` submitted at once;

and a ``ShellFunction("true")`` against a Python no-op, both without a container. Prints
one JSON line per environment and round, writes ``record.json`` and ``report.md``.
Runtimes that are not installed are left out and named in the record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable
from typing import Any

from benchmarks import record as records
from benchmarks.measure import percentile
from benchmarks.tasks import noop
from fabric import Endpoint
from fabric.config import ContainerConfig
from fabric.functions import ShellFunction

ENVIRONMENTS = {
    "bubblewrap": ("bwrap", ContainerConfig(type="bubblewrap")),
    "podman": ("podman", ContainerConfig(type="podman", rootfs="/:O")),
}
TIMEOUT = 120.0


def available() -> tuple[dict[str, ContainerConfig], list[str]]:
    """The containers whose runtime is installed here, and the names of those that are not."""
    found = {name: config for name, (program, config) in ENVIRONMENTS.items() if shutil.which(program)}
    return found, [name for name in ENVIRONMENTS if name not in found]


def per_task(submit: Callable[[], Any], tasks: int) -> dict[str, float]:
    """Sequential round trips (median, p90) and the throughput of ``tasks`` submitted at once."""
    durations = []
    for _ in range(tasks):
        started = time.perf_counter()
        submit().result(TIMEOUT)
        durations.append(time.perf_counter() - started)
    durations.sort()
    started = time.perf_counter()
    for future in [submit() for _ in range(tasks)]:
        future.result(TIMEOUT)
    elapsed = time.perf_counter() - started
    return {"median_us": percentile(durations, 0.5) * 1e6, "p90_us": percentile(durations, 0.9) * 1e6,
            "tasks_per_second": tasks / elapsed}


def one_round(containers: dict[str, ContainerConfig], tasks: int, reverse: bool) -> list[dict[str, Any]]:
    """One fresh endpoint: every environment, in order or reversed."""
    rows = []
    with Endpoint(workers=1, containers=containers) as endpoint:
        endpoint.submit(noop).result(TIMEOUT)  # the worker is up
        order = ["none", *containers]
        for name in reversed(order) if reverse else order:
            container = None if name == "none" else name
            started = time.perf_counter()
            first = endpoint.submit_task(noop, container=container)
            first.result(TIMEOUT)
            row = {"environment": name, "first_task_s": time.perf_counter() - started,
                   "container_start_s": (first.timing or {}).get("start_seconds")}
            row.update(per_task(lambda c=container: endpoint.submit_task(noop, container=c), tasks))
            rows.append(row)
        shell = ShellFunction("true")
        pair: list[tuple[str, Callable[..., Any]]] = [("python no-op", noop), ("ShellFunction('true')", shell)]
        for name, function in reversed(pair) if reverse else pair:
            endpoint.submit(function).result(TIMEOUT)
            rows.append({"environment": name, **per_task(lambda f=function: endpoint.submit(f), tasks)})
    return rows


def run_section(options: argparse.Namespace, log: records.Log) -> dict[str, Any]:
    containers, missing = available()
    rounds, tasks = (1, 5) if options.quick else (options.rounds, options.tasks)
    rows = []
    for index in range(rounds):
        log(f"environments: round {index + 1} of {rounds}")
        for row in one_round(containers, tasks, reverse=index % 2 == 1):
            row["round"] = index + 1
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"config": {"rounds": rounds, "tasks": tasks, "workers": 1, "not_installed": missing}, "rows": rows}


def execute(options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    record["sections"]["environments"] = run_section(options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    return 0


def report_lines(section: dict[str, Any]) -> list[str]:
    config = section["config"]
    names = list(dict.fromkeys(row["environment"] for row in section["rows"]))

    def spread(name: str, key: str, scale: float = 1.0, digits: int = 0) -> str:
        values = [row[key] * scale for row in section["rows"]
                  if row["environment"] == name and row.get(key) is not None]
        return records.spread(values, digits) if values else "–"

    rows = [[name, spread(name, "container_start_s", 1000, 0), spread(name, "first_task_s", 1000, 0),
             spread(name, "median_us"), spread(name, "p90_us"), spread(name, "tasks_per_second")] for name in names]
    missing = f" Not installed, not measured: {', '.join(config['not_installed'])}." if config["not_installed"] else ""
    return [
        "## Environments: containers and shell functions",
        "",
        f"One local worker, {config['rounds']} round(s) of a fresh endpoint, {config['tasks']} tasks per figure, "
        "alternating order; median (min–max) over rounds. Cold start: the first task asking for a container "
        "(its start, and the whole first round trip); warm: sequential round trips and the throughput of the same "
        f"tasks submitted at once.{missing}",
        "",
        *records.table(["environment", "container start (ms)", "first task (ms)", "round trip median (µs)",
                        "p90 (µs)", "tasks/s"], rows),
    ]
