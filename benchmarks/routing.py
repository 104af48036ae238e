"""Benchmark of routing: a bag of tasks over three endpoints of unequal capacity.

``fabric bench routing`` starts a real service and three real endpoints on this machine
(``w1``, ``w2``, ``w4``: 1, 2 and 4 workers; ``w2`` slowed by ``--delay`` per task) and
runs ``--tasks`` tasks of ``--task-ms`` each (``benchmarks.tasks.sleep_where``, which names
the endpoint that ran it) in each *mode*:

``single``       every task to ``w4`` (the largest endpoint) directly: one endpoint only
``round-robin``  task ``i`` to endpoint ``i mod 3`` directly (the client spreads, blindly)
``least-loaded``, ``fastest``, ``cheapest``, ``closest``
                 every task to the endpoint group, the service picking per task
                 (``cost_per_core_hour`` w1 0.01, w2 0.02, w4 0.04; ``near`` of w2 names the
                 place ``closest`` asks for)

For each: the makespan (first submit to last result, every result checked), tasks per
endpoint, and makespan / ideal, where ideal = total work / total capacity =
tasks / sum(workers_e / seconds per task on e). Then the service's dispatch cost with
routing: ``--cost-tasks`` no-op tasks to ``w4`` directly and to a group of ``w4`` alone,
alternated ``--repeat`` times: tasks per second of each and the routed path's extra cost per
task as a share of the direct one. Writes record.json, report.md and routing.png (with
matplotlib). The endpoints' sleeps use no CPU, so the bag is fair on a small machine; the
no-op throughput is what the machine allows, alternated to share its noise.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import cli
from benchmarks import record as records
from benchmarks import tasks
from benchmarks.measure import BenchmarkError
from benchmarks.service import _add_user, _stop, running_service

MODES = cli.ROUTING_MODES
ENDPOINTS = {"w1": (1, 0.01, {}), "w2": (2, 0.02, {"near": ["beamline-7"]}), "w4": (4, 0.04, {})}
"""name: (workers, cost_per_core_hour, more labels)."""
SLOWED = "w2"
TARGET = 1.15
"""least-loaded and fastest should finish within this factor of the ideal makespan."""

@contextlib.contextmanager
def running_endpoints(client: Any, folder: Path, delay: float) -> Iterator[dict[str, str]]:
    """The three endpoints, registered and connected; yields name -> endpoint id."""
    from fabric.config import InterchangeConfig  # noqa: PLC0415
    from fabric.process import child_environment  # noqa: PLC0415

    processes: list[subprocess.Popen[bytes]] = []
    ids: dict[str, str] = {}
    try:
        for name, (workers, cost, labels) in ENDPOINTS.items():
            registration = client.register_endpoint(name)
            ids[name] = registration["endpoint_id"]
            config = InterchangeConfig(
                upstream_address=registration["forwarder_address"], endpoint_id=registration["endpoint_id"],
                upstream_server_key=registration["server_public_key"], upstream_public_key=registration["public_key"],
                upstream_secret_key=registration["secret_key"], spool_dir=str(folder / f"spool-{name}"),
                exit_with_upstream=False, workers_per_manager=workers,
                labels={"cost_per_core_hour": cost, **labels})
            env = {"FABRIC_BENCH_ENDPOINT": name, "FABRIC_BENCH_DELAY": str(delay if name == SLOWED else 0.0)}
            processes.append(subprocess.Popen([sys.executable, "-m", "interchange", "--config", config.to_json()],
                                              env=child_environment(env)))
        deadline = time.monotonic() + 60
        for name, endpoint_id in ids.items():
            while (client.get_endpoint_status(endpoint_id).get("report") or {}).get("workers") != ENDPOINTS[name][0]:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"endpoint {name} did not report its workers within 60 s")
                time.sleep(0.1)
        yield ids
    finally:
        for process in processes:
            _stop(process)


def run_mode(client: Any, mode: str, ids: dict[str, str], group: str, count: int, seconds: float) -> dict[str, Any]:
    """One bag of tasks in one mode: makespan and tasks per endpoint, every result checked."""
    from fabric import Executor  # noqa: PLC0415

    names = list(ENDPOINTS)
    if mode == "single":
        executors = [Executor(ids["w4"], client=client)]
    elif mode == "round-robin":
        executors = [Executor(ids[name], client=client) for name in names]
    else:
        executors = [Executor(client=client, endpoint_group=group, policy=mode,
                              near="beamline-7" if mode == "closest" else None)]
    try:
        for executor in executors:  # functions registered, connections open: not part of the makespan
            executor.submit(tasks.sleep_where, 0.0).result(60)
        started = time.perf_counter()
        futures = [executors[i % len(executors)].submit(tasks.sleep_where, seconds) for i in range(count)]
        ran = Counter(future.result(600) for future in futures)
        makespan = time.perf_counter() - started
    finally:
        for executor in executors:
            executor.shutdown()
    if sum(ran.values()) != count or set(ran) - set(names):
        raise BenchmarkError(f"{mode}: wrong results {dict(ran)}")
    return {"mode": mode, "makespan_seconds": makespan, "tasks_per_endpoint": {n: ran.get(n, 0) for n in names}}


def ideal_makespan(count: int, seconds: float, delay: float) -> float:
    capacity = sum(workers / (seconds + (delay if name == SLOWED else 0.0))
                   for name, (workers, _, _) in ENDPOINTS.items())
    return count / capacity


def dispatch_cost(client: Any, endpoint_id: str, count: int, repeat: int) -> dict[str, Any]:
    """No-op tasks to one endpoint directly and through a one-member group, alternated, each
    after a warm-up of half as many."""
    from fabric import Executor  # noqa: PLC0415

    group = client.create_endpoint_group(f"alone-{time.time_ns()}", [endpoint_id])["endpoint_group_id"]
    rates: dict[str, list[float]] = {"direct": [], "routed": []}
    for _ in range(repeat):
        for how in ("direct", "routed"):
            executor = (Executor(endpoint_id, client=client) if how == "direct"
                        else Executor(client=client, endpoint_group=group))
            with executor:
                for _ in executor.map(tasks.noop_of, range(count // 2)):  # warm-up: the routed window follows
                    pass  # the measured throughput, which takes a second or two to adapt to a new workload
                started = time.perf_counter()
                for value in executor.map(tasks.noop_of, range(count)):
                    if value is not None:
                        raise BenchmarkError(f"{how}: a no-op returned {value!r}")
                rates[how].append(count / (time.perf_counter() - started))
    direct, routed = records.median(rates["direct"]), records.median(rates["routed"])
    return {"tasks": count, "repeat": repeat, "direct_tasks_per_second": rates["direct"],
            "routed_tasks_per_second": rates["routed"], "direct_us_per_task": 1e6 / direct,
            "routed_us_per_task": 1e6 / routed, "extra_share": (1 / routed - 1 / direct) / (1 / direct)}


def decision_cost(count: int, repeat: int) -> dict[str, Any]:
    """The service's own work per task, in this process on a fresh SQLite store: storing a
    batch dispatched at submit to one endpoint (direct) vs a group's batch placed at submit
    (routed), alternated; and the policy's decision (``plan``) per task."""
    from service.routing import Candidate, Hardware, Measured, Placement, RoutingSpec, plan  # noqa: PLC0415
    from service.store import NewTasks, SQLiteStore  # noqa: PLC0415

    folder = Path(tempfile.mkdtemp(prefix="fabric-bench-routing-store-"))
    store = SQLiteStore(folder / "fabric.db")
    batch = NewTasks("e", ["f"] * count, [b"x" * 64] * count)
    direct, routed, waiting = [], [], []
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            store.add_dispatched("bench", batch)
            direct.append((time.perf_counter() - started) / count)
            started = time.perf_counter()
            placed = [Placement("e", count, "least-loaded: 0 in flight on 4 workers")]  # placed at submit
            store.add_routed("bench", batch, "group", {"policy": "least-loaded"}, ["e"], placed)
            routed.append((time.perf_counter() - started) / count)
            started = time.perf_counter()  # no room at submit: stored waiting, placed by the forwarder later
            added = store.add_routed("bench", batch, "group", {"policy": "least-loaded"}, ["e"])
            assert added is not None
            while store.take_routed(added.route_id, "e", 1000, "least-loaded: 0 in flight on 4 workers", 1.0):
                pass
            waiting.append((time.perf_counter() - started) / count)
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    candidates = [Candidate(name, Hardware(({"workers": workers},), {}), Measured(tasks_per_s=500.0 * workers), 0)
                  for name, (workers, _, _) in ENDPOINTS.items()]
    started, decided = time.perf_counter(), 0
    for _ in range(100):
        decided += sum(p.count for p in plan(RoutingSpec(), candidates, count))
    return {"tasks": count, "direct_store_us_per_task": [t * 1e6 for t in direct],
            "routed_store_us_per_task": [t * 1e6 for t in routed],
            "routed_waiting_store_us_per_task": [t * 1e6 for t in waiting],
            "plan_us_per_task": (time.perf_counter() - started) / decided * 1e6}


def run_section(options: argparse.Namespace, log: records.Log) -> dict[str, Any]:
    from fabric import Client  # noqa: PLC0415

    count = 300 if options.quick else options.tasks
    cost_tasks = min(options.cost_tasks, 2000) if options.quick else options.cost_tasks
    repeat = 1 if options.quick else options.repeat
    modes = list(options.modes)
    seconds, delay = options.task_ms / 1000, options.delay_ms / 1000
    ideal = ideal_makespan(count, seconds, delay)
    folder = Path(tempfile.mkdtemp(prefix="fabric-bench-routing-"))
    rows = []
    cost: dict[str, Any] | None = None
    try:
        with running_service(folder, None) as info:
            client = Client(info["url"], _add_user(folder))
            with running_endpoints(client, folder, delay) as ids:
                group = client.create_endpoint_group("bench", list(ids.values()))["endpoint_group_id"]
                for mode in modes:
                    row = run_mode(client, mode, ids, group, count, seconds)
                    row["makespan_over_ideal"] = row["makespan_seconds"] / ideal
                    log(f"routing {mode}: {row['makespan_seconds']:.2f} s, {row['makespan_over_ideal']:.2f} x "
                        f"ideal, {row['tasks_per_endpoint']}")
                    rows.append(row)
                cost = dispatch_cost(client, ids["w4"], cost_tasks, repeat) if cost_tasks else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if cost:
        decision = decision_cost(cost_tasks, max(3, repeat))
        extra = (records.median(decision["routed_store_us_per_task"])
                 - records.median(decision["direct_store_us_per_task"]) + decision["plan_us_per_task"])
        cost.update(decision=decision, decision_extra_us_per_task=extra,
                    decision_share=extra / cost["direct_us_per_task"])
        log(f"routing dispatch cost: end to end {cost['extra_share'] * 100:+.1f}% per task "
            f"({cost['direct_us_per_task']:.0f} vs {cost['routed_us_per_task']:.0f} us); the service's own extra "
            f"work {extra:.1f} us = {cost['decision_share'] * 100:.1f}% of the direct path's cost per task")
    config = {"tasks": count, "task_ms": options.task_ms, "delay_ms": options.delay_ms, "slowed": SLOWED,
              "endpoints": {n: {"workers": w, "cost_per_core_hour": c} for n, (w, c, _) in ENDPOINTS.items()},
              "ideal_seconds": ideal, "target": TARGET}
    return {"config": config, "rows": rows, "dispatch_cost": cost}


def report_lines(section: dict[str, Any]) -> list[str]:
    config = section["config"]
    names = list(config["endpoints"])
    rows = [[row["mode"], records.number(row["makespan_seconds"], 2), records.number(row["makespan_over_ideal"], 2),
             *[f"{row['tasks_per_endpoint'][n]:,}" for n in names]] for row in section["rows"]]
    endpoints = ", ".join(f"{n} {e['workers']} worker(s)" + (f" +{config['delay_ms']:g} ms a task"
                                                            if n == config["slowed"] else "")
                          for n, e in config["endpoints"].items())
    lines = ["## Routing: a bag of tasks over three endpoints", "",
             f"{config['tasks']:,} tasks of {config['task_ms']:g} ms per mode over {endpoints}; ideal makespan "
             f"(total work / total capacity) {config['ideal_seconds']:.2f} s. Target: least-loaded and fastest "
             f"within {config['target']}x of ideal.", "",
             *records.table(["mode", "makespan (s)", "makespan / ideal", *[f"tasks on {n}" for n in names]], rows)]
    cost = section.get("dispatch_cost")
    if cost:
        lines += ["", f"Dispatch cost, {cost['tasks']:,} no-op tasks to w4 (after {cost['tasks'] // 2:,} to warm up), "
                  f"direct and routed through a one-member group alternated {cost['repeat']} time(s) "
                  "(median (min–max)): direct "
                  f"{records.spread(cost['direct_tasks_per_second'])} tasks/s, routed "
                  f"{records.spread(cost['routed_tasks_per_second'])} tasks/s; routing adds "
                  f"{cost['extra_share'] * 100:+.1f}% to the service path's cost per task "
                  f"({cost['direct_us_per_task']:.0f} -> {cost['routed_us_per_task']:.0f} µs, end to end: "
                  "noisy on a shared machine)."]
        decision = cost.get("decision")
        if decision:
            lines += ["", f"The service's own work per task ({decision['tasks']:,} tasks on a fresh SQLite store in "
                      f"the benchmark process, alternated): stored dispatched at submit "
                      f"{records.spread(decision['direct_store_us_per_task'], 1)} µs; a group's batch placed at "
                      f"submit {records.spread(decision['routed_store_us_per_task'], 1)} µs (stored to wait and "
                      f"placed later, when no member has room: "
                      f"{records.spread(decision['routed_waiting_store_us_per_task'], 1)} µs); the policy's decision "
                      f"{decision['plan_us_per_task']:.2f} µs. Routing's extra work: "
                      f"{cost['decision_extra_us_per_task']:.1f} µs a task = {cost['decision_share'] * 100:.1f}% of "
                      f"the direct service path's {cost['direct_us_per_task']:.0f} µs (target: under 10%)."]
    return lines


def chart(plt: Any, record: dict[str, Any], path: Path, finish: Any) -> None:
    """Makespan / ideal per mode, and where the tasks ran (stacked), side by side."""
    section = record["sections"]["routing"]
    rows, names = section["rows"], list(section["config"]["endpoints"])
    modes = [row["mode"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.bar(modes, [row["makespan_over_ideal"] for row in rows], color="tab:blue")
    left.axhline(1.0, color="black", linewidth=0.8)
    left.axhline(section["config"]["target"], color="tab:red", linestyle="--", linewidth=0.8, label="target")
    left.set_ylabel("makespan / ideal")
    left.legend(fontsize=8)
    bottom = [0] * len(rows)
    for name in names:
        counts = [row["tasks_per_endpoint"][name] for row in rows]
        right.bar(modes, counts, bottom=bottom, label=name)
        bottom = [b + c for b, c in zip(bottom, counts)]
    right.set_ylabel("tasks")
    right.legend(fontsize=8)
    for axes in (left, right):
        axes.tick_params(axis="x", labelrotation=30)
    finish(plt, figure, path, "routing a bag of tasks over three endpoints", record)


def execute(options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    record["sections"]["routing"] = run_section(options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    from benchmarks import plot  # noqa: PLC0415

    if plot.matplotlib_missing() is None:
        plot.draw(directory, record)
    records.log(f"{prog}: record written to {directory}")
    return 0
