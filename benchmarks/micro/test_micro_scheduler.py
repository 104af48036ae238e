"""Interchange dispatch decisions per second: 1,000 managers, a queue that never runs dry.

Each round is one loop turn of the interchange: some managers return results for one
task per worker (``ManagerResults``), then ``flush`` refills them. The reports are built
in the untimed set-up; only ``handle`` and ``flush`` are timed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from benchmarks.scale import Simulation
from fabric.protocol import RESULT_OK, ResultBatch
from interchange.scheduler import ManagerJoined, ManagerResults, TasksSubmitted

MANAGERS = 1000
WORKERS = 10


@pytest.mark.benchmark(group="scheduler: 1,000 managers x 10 workers")
@pytest.mark.parametrize("reports", [1, 256])
def test_dispatch_turn(benchmark: Any, rounds: int, reports: int) -> None:
    turns = rounds + 10
    sim = Simulation(MANAGERS, WORKERS, queued=MANAGERS * 2 * WORKERS + (turns + 1) * reports * WORKERS + 4096)
    for index in range(MANAGERS):
        sim.scheduler.handle(ManagerJoined(sim.registration(index), 0.0))
    sim.scheduler.handle(TasksSubmitted(sim.tasks))
    sim.play(sim.scheduler.flush())
    reporters = itertools.cycle(sim.ids)

    def prepare() -> tuple[tuple[list[ManagerResults]], dict[str, Any]]:
        events = []
        for manager_id in itertools.islice(reporters, reports):
            running = sim.running[manager_id]
            done = [running.popleft() for _ in range(min(WORKERS, len(running)))]
            events.append(ManagerResults(manager_id, ResultBatch.build([(t, RESULT_OK, b"") for t in done]), 1.0))
        return (events,), {}

    def turn(events: list[ManagerResults]) -> None:
        for event in events:
            sim.scheduler.handle(event)
        sim.play(sim.scheduler.flush())

    benchmark.extra_info["items"] = reports * WORKERS
    before = sim.dispatched
    benchmark.pedantic(turn, setup=prepare, rounds=rounds, warmup_rounds=0)
    assert sim.dispatched > before
