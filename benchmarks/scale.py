"""Scale: the real interchange ``Scheduler`` driven by an event-level simulation of many managers.

No sockets and no processes: the simulation feeds the scheduler the events the interchange
loop would (``ManagerJoined``, ``TasksSubmitted``, ``ManagerResults``, ``ManagerSeen``,
``Tick``) and plays the managers' side of every ``SendToManager`` action. Only the
scheduler's ``handle``/``flush`` calls are timed (and, separately, the protocol encoding
and decoding of the messages they stand for), so the figures are the interchange's CPU per
decision, the part that grows with the number of managers. Every time is CPU time of this
process (``time.process_time``), so the figures hold on a loaded machine. For each manager count:

``register``
    ``ManagerJoined`` for every manager: microseconds per manager.
``fill``
    a queue of tasks larger than every manager's capacity, then one ``flush``: tasks
    dispatched per second while every manager has free capacity.
``steady (1/turn)`` and ``steady (256/turn)``
    loop turns in which 1 (a quiet interchange) or up to 256 (a busy one: the interchange
    reads up to 256 messages per turn) managers return results for one task per worker,
    then ``flush`` refills them: tasks dispatched per second of scheduler time; "+ codec"
    adds decoding those results and encoding the task batches.
``heartbeat``
    a heartbeat from every manager (decode + ``ManagerSeen``), the interchange's heartbeat
    to every manager (encode), and a ``Tick`` that finds no one expired; summed over one
    heartbeat period (2 ticks) as a share of one core.
``expiry``
    a ``Tick`` that finds 1 % of the managers silent: microseconds per lost manager, its
    outstanding tasks put back on the queue.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import record as records
from fabric import protocol
from fabric.protocol import (PROTOCOL_VERSION, RESULT_OK, Heartbeat, ManagerRegistration, ResultBatch, Task,
                             TaskBatch)
from fabric.serialize import EMPTY_ARGUMENTS
from interchange.scheduler import (ManagerJoined, ManagerResults, ManagerSeen, Scheduler, SendToManager,
                                   TasksSubmitted, Tick)

FUNCTION_ID = "0" * 32
HEARTBEAT_PERIOD = 2.0
HEARTBEAT_THRESHOLD = 10.0
TICKS_PER_PERIOD = 2  # the interchange ticks every min(1 s, period / 2)
BUSY_TURN = 256  # messages the interchange reads per socket per loop turn
SUBMIT_BATCH = protocol.MAX_BATCH_TASKS
BEND = 0.5
"""A curve bends where it falls below this fraction of its value at the fewest managers."""

QUICK_MANAGERS = (10, 100, 1000)

_cpu_clock = time.process_time
"""Every figure is per second of this process's CPU (single-threaded here), not of the wall clock:
a loaded machine's preemption does not count against the scheduler."""


class Simulation:
    """One scheduler, ``managers`` simulated managers of ``workers`` workers, capacity ``2 * workers``."""

    def __init__(self, managers: int, workers: int, queued: int) -> None:
        self.scheduler = Scheduler(heartbeat_threshold=HEARTBEAT_THRESHOLD)
        self.workers = workers
        self.capacity = 2 * workers
        self.ids = [f"manager-{i:06d}" for i in range(managers)]
        self.running: dict[str, deque[int]] = {manager_id: deque() for manager_id in self.ids}
        self.tasks = [Task(i, FUNCTION_ID, EMPTY_ARGUMENTS) for i in range(queued)]
        self.now = 0.0
        self.dispatched = 0

    def registration(self, index: int) -> ManagerRegistration:
        return ManagerRegistration(
            manager_id=self.ids[index], hostname=f"node-{index:06d}", pid=1000 + index, cores=self.workers,
            memory=64 * 2**30, accelerators=[], python_version="3.11", protocol_version=PROTOCOL_VERSION,
            worker_count=self.workers, prefetch=self.capacity - self.workers, capacity=self.capacity)

    def play(self, actions: Sequence[Any]) -> None:
        """The managers' side: remember which tasks each manager got."""
        for action in actions:
            if isinstance(action, SendToManager) and isinstance(action.message, TaskBatch):
                self.running[action.manager_id].extend(t.task_id for t in action.message.tasks)
                self.dispatched += len(action.message.tasks)


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = _cpu_clock()
    value = function()
    return _cpu_clock() - started, value


def measure(managers: int, workers: int, turns: int) -> dict[str, Any]:
    """Every figure for one manager count (one repeat)."""
    busy = min(managers, BUSY_TURN)
    queued = managers * 2 * workers + turns * workers * (1 + busy) * 2 + SUBMIT_BATCH
    sim = Simulation(managers, workers, queued)
    scheduler = sim.scheduler
    figures: dict[str, Any] = {"managers": managers, "workers": managers * workers}

    registrations = [sim.registration(i) for i in range(managers)]
    seconds, _ = _timed(lambda: [scheduler.handle(ManagerJoined(r, sim.now)) for r in registrations])
    figures["register_us_per_manager"] = seconds / managers * 1e6

    submit_seconds = 0.0
    for start in range(0, len(sim.tasks), SUBMIT_BATCH):
        event = TasksSubmitted(sim.tasks[start:start + SUBMIT_BATCH])
        begun = _cpu_clock()
        scheduler.handle(event)
        submit_seconds += _cpu_clock() - begun
    figures["submit_us_per_task"] = submit_seconds / len(sim.tasks) * 1e6
    seconds, actions = _timed(scheduler.flush)
    sim.play(actions)
    figures["fill_tasks"] = sim.dispatched
    figures["fill_tasks_per_second"] = sim.dispatched / seconds
    encode_seconds, _ = _timed(lambda: [a.message.to_frames() for a in actions if isinstance(a, SendToManager)])
    figures["fill_with_codec_tasks_per_second"] = sim.dispatched / (seconds + encode_seconds)

    for label, per_turn in (("steady_1", 1), ("steady_busy", busy)):
        figures.update(_steady(sim, label, per_turn, turns))
    figures["busy_reports_per_turn"] = busy
    figures.update(_heartbeats(sim))
    figures.update(_expiry(sim))
    return figures


def _steady(sim: Simulation, label: str, per_turn: int, turns: int) -> dict[str, float]:
    """Loop turns: ``per_turn`` managers return one task per worker, then one flush."""
    scheduler = sim.scheduler
    reporters = itertools.cycle(sim.ids)
    handle_seconds = flush_seconds = decode_seconds = encode_seconds = 0.0
    dispatched = 0
    for _ in range(turns):
        sim.now += 0.001
        reports = []
        for manager_id in itertools.islice(reporters, per_turn):
            running = sim.running[manager_id]
            done = [running.popleft() for _ in range(min(sim.workers, len(running)))]
            batch = ResultBatch.build([(task_id, RESULT_OK, b"") for task_id in done])
            reports.append((manager_id, batch.to_frames()))
        started = _cpu_clock()
        events = [ManagerResults(manager_id, _results(frames), sim.now) for manager_id, frames in reports]
        decode_seconds += _cpu_clock() - started
        started = _cpu_clock()
        for event in events:
            scheduler.handle(event)
        flushed = _cpu_clock()
        actions = scheduler.flush()
        done_at = _cpu_clock()
        handle_seconds += flushed - started
        flush_seconds += done_at - flushed
        before = sim.dispatched
        sim.play(actions)
        dispatched += sim.dispatched - before
        started = _cpu_clock()
        for action in actions:
            if isinstance(action, SendToManager):
                action.message.to_frames()
        encode_seconds += _cpu_clock() - started
    scheduler_seconds = handle_seconds + flush_seconds
    return {
        f"{label}_tasks_per_second": dispatched / scheduler_seconds,
        f"{label}_with_codec_tasks_per_second": dispatched / (scheduler_seconds + decode_seconds + encode_seconds),
        f"{label}_flush_us_per_turn": flush_seconds / turns * 1e6,
        f"{label}_handle_us_per_report": handle_seconds / (turns * per_turn) * 1e6,
    }


def _results(frames: list[protocol.Frame]) -> ResultBatch:
    message = protocol.decode(frames)
    assert isinstance(message, ResultBatch)
    return message


def _heartbeats(sim: Simulation) -> dict[str, float]:
    scheduler = sim.scheduler
    managers = len(sim.ids)
    frames = Heartbeat().to_frames()
    sim.now += 0.001
    started = _cpu_clock()
    for manager_id in sim.ids:
        protocol.decode(frames)
        scheduler.handle(ManagerSeen(manager_id, sim.now))
    incoming = _cpu_clock() - started
    outgoing, _ = _timed(lambda: [Heartbeat().to_frames() for _ in range(managers)])
    tick, expired = _timed(lambda: scheduler.handle(Tick(sim.now)))
    assert not expired, "no manager should expire in the heartbeat measurement"
    period = incoming + outgoing + TICKS_PER_PERIOD * tick
    return {
        "heartbeat_in_us": incoming / managers * 1e6,
        "heartbeat_out_us": outgoing / managers * 1e6,
        "tick_us": tick * 1e6,
        "heartbeat_core_share": period / HEARTBEAT_PERIOD,
    }


def _expiry(sim: Simulation) -> dict[str, float]:
    scheduler = sim.scheduler
    silent = set(sim.ids[::100])
    later = sim.now + HEARTBEAT_THRESHOLD + 1.0
    for manager_id in sim.ids:
        if manager_id not in silent:
            scheduler.handle(ManagerSeen(manager_id, later))
    requeued_before = len(scheduler.queue)
    seconds, actions = _timed(lambda: scheduler.handle(Tick(later)))
    lost = len(actions)
    return {
        "expired_managers": lost,
        "expiry_us_per_manager": seconds / max(1, lost) * 1e6,
        "expiry_requeued_tasks": len(scheduler.queue) - requeued_before,
    }


def bends(rows: Sequence[dict[str, Any]], key: str) -> str:
    """Where ``key`` first falls below ``BEND`` of its value at the fewest managers."""
    if len(rows) < 2:
        return "too few manager counts to tell"
    first = rows[0][key]
    for previous, row in zip(rows, rows[1:]):
        if row[key] < BEND * first:
            return (f"bends between {previous['managers']:,} and {row['managers']:,} managers "
                    f"({row[key] / first:.0%} of its value at {rows[0]['managers']:,})")
    return f"flat within {1 - BEND:.0%} up to {rows[-1]['managers']:,} managers ({rows[-1][key] / first:.0%})"


def run_section(options: argparse.Namespace, log: records.Log) -> dict[str, Any]:
    managers_list = [m for m in options.managers if not options.quick or m <= max(QUICK_MANAGERS)]
    turns = min(options.turns, 20) if options.quick else options.turns
    repeat = 1 if options.quick else options.repeat
    rows = []
    for managers in managers_list:
        runs = []
        for attempt in range(repeat):
            log(f"scale: {managers:,} managers, repeat {attempt + 1}/{repeat} ...")
            gc.collect()
            runs.append(measure(managers, options.workers_per_manager, turns))
        rows.append(_summarize(runs))
    return {
        "config": {"managers": managers_list, "workers_per_manager": options.workers_per_manager,
                   "capacity_per_manager": 2 * options.workers_per_manager, "turns": turns, "repeat": repeat,
                   "heartbeat_period": HEARTBEAT_PERIOD, "busy_turn": BUSY_TURN, "quick": options.quick,
                   "scheduler": "interchange.scheduler.Scheduler (the real one), no sockets"},
        "rows": rows,
        "bends": {key: bends(rows, key) for key in ("steady_1_tasks_per_second", "steady_busy_tasks_per_second",
                                                    "fill_tasks_per_second")},
    }


def _summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of every figure over the repeats, and its range as ``KEY_range``."""
    row: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        row[key] = records.median(values)
        if len(values) > 1 and isinstance(values[0], float):
            row[f"{key}_range"] = [min(values), max(values)]
    return row


def execute(options: argparse.Namespace, prog: str) -> int:
    directory = records.output_directory(options.output_dir)
    record = records.new_record()
    record["sections"]["scale"] = run_section(options, records.log)
    record["finished"] = records.now()
    records.write(directory, record)
    records.log(f"{prog}: record written to {directory}")
    return 0


def _cell(row: dict[str, Any], key: str, digits: int = 0, scale: float = 1.0) -> str:
    value = row[key] * scale
    bounds = row.get(f"{key}_range")
    if not bounds:
        return records.number(value, digits)
    return f"{records.number(value, digits)} ({records.number(bounds[0] * scale, digits)}–" \
           f"{records.number(bounds[1] * scale, digits)})"


def report_lines(section: dict[str, Any]) -> list[str]:
    config = section["config"]
    rows = [[
        f"{row['managers']:,}", f"{row['workers']:,}", _cell(row, "register_us_per_manager", 1),
        _cell(row, "fill_tasks_per_second"), _cell(row, "steady_1_tasks_per_second"),
        _cell(row, "steady_busy_tasks_per_second"), _cell(row, "steady_busy_with_codec_tasks_per_second"),
        _cell(row, "steady_1_flush_us_per_turn", 1), _cell(row, "heartbeat_in_us", 2), _cell(row, "tick_us", 1),
        _cell(row, "heartbeat_core_share", 3, 100.0), _cell(row, "expiry_us_per_manager", 1),
    ] for row in section["rows"]]
    return [
        "## Scale: the interchange scheduler and many managers",
        "",
        f"The real `Scheduler` (handle/flush) fed by an event-level simulation: {config['workers_per_manager']} "
        f"workers and capacity {config['capacity_per_manager']} per manager, {config['turns']} loop turns per "
        f"steady-state figure, median of {config['repeat']} repeat(s) (min–max). Rates are tasks dispatched per "
        "second of scheduler CPU; \"+ codec\" adds decoding the result batches and encoding the task batches. "
        f"Heartbeat share: one heartbeat each way per manager plus {TICKS_PER_PERIOD} ticks per "
        f"{config['heartbeat_period']:.0f} s period, as % of one core.",
        "",
        *records.table(["managers", "workers", "register (µs/manager)", "fill (tasks/s)", "steady, 1 report/turn",
                        f"steady, {config['busy_turn']} reports/turn", "same + codec", "flush (µs/turn, 1 report)",
                        "heartbeat in (µs)", "tick (µs)", "heartbeat share of a core (%)",
                        "expiry (µs/lost manager)"], rows),
        "",
        *[f"- {key.replace('_tasks_per_second', '').replace('_', ' ')}: {text}"
          for key, text in section["bends"].items()],
    ]


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.scale") -> int:
    from benchmarks import cli  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog=prog, description=cli.DESCRIPTIONS["scale"])
    cli.add_scale_arguments(parser)
    return execute(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())
