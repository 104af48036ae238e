"""Socket-free tests of the scheduler's flush: which managers get tasks, in what order, how many.

The flush keeps the managers with free slots in a heap touched only when a manager's free
slots change, instead of sorting every manager each turn. These tests pin the rule it must
keep (most free slots first, ties by registration order, one batch of at most
``MAX_BATCH_TASKS`` per manager per flush; held and draining managers get nothing) against
a plain re-statement of that rule, over long random runs of every event that changes a
manager's free slots, and that a flush no longer looks at managers whose slots did not change.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from fabric.protocol import MAX_BATCH_TASKS, ResultBatch, TaskBatch
from interchange import scheduler as scheduling
from interchange.scheduler import (ManagerCommanded, ManagerJoined, ManagerLeft, ManagerResults, Scheduler,
                                   SendToManager, TasksSubmitted)
from tests.interchange.test_interchange_scheduler import THRESHOLD, ok, registration, task


def dispatched(actions: list[Any]) -> list[tuple[str, int]]:
    """(manager, tasks) for each manager that got tasks, in the order the flush served them."""
    counts: dict[str, int] = {}
    for action in actions:
        if isinstance(action, SendToManager) and isinstance(action.message, TaskBatch):
            counts[action.manager_id] = counts.get(action.manager_id, 0) + len(action.message.tasks)
    return list(counts.items())


def expected_dispatch(s: Scheduler, joined: list[str]) -> list[tuple[str, int]]:
    """The rule, restated: managers by free slots, most first, ties in registration order (``joined``);
    each gets min(free, MAX_BATCH_TASKS) while the queue lasts."""
    left = len(s.queue)
    plan = []
    for manager_id in sorted(joined, key=lambda m: -s.managers[m].free):
        free = s.managers[manager_id].free
        if free <= 0 or left == 0:
            break
        count = min(free, MAX_BATCH_TASKS, left)
        plan.append((manager_id, count))
        left -= count
    return plan


class Run:
    """A scheduler and the registration order the test keeps itself."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.s = Scheduler(heartbeat_threshold=THRESHOLD)
        self.joined: list[str] = []
        self.next_task = 0
        self.next_manager = 0

    def join(self, manager_id: str | None = None) -> None:
        if manager_id is None:
            manager_id, self.next_manager = f"m{self.next_manager}", self.next_manager + 1
        capacity = self.random.choice([1, 2, 3, 8, 20, MAX_BATCH_TASKS + 5])
        self.s.handle(ManagerJoined(registration(manager_id, capacity), 0.0))
        if manager_id in self.joined:
            self.joined.remove(manager_id)
        self.joined.append(manager_id)

    def step(self) -> None:
        s, pick = self.s, self.random.random()
        if not self.joined or pick < 0.08:
            self.join()
        elif pick < 0.12:
            self.join(self.random.choice(self.joined))  # registered again: its tasks go back, it goes last
        elif pick < 0.16:
            manager_id = self.random.choice(self.joined)
            s.handle(ManagerLeft(manager_id, "test"))
            self.joined.remove(manager_id)
        elif pick < 0.50:
            manager_id = self.random.choice(self.joined)
            outstanding = list(s.managers[manager_id].outstanding)
            done = self.random.sample(outstanding, self.random.randint(0, len(outstanding)))
            capacity = self.random.choice([None, None, None, 1, 4, 30])
            s.handle(ManagerResults(manager_id, ok(*done, capacity=capacity), 0.0))
        elif pick < 0.60:
            action = self.random.choice(["hold", "release", "release", "drain"])
            s.handle(ManagerCommanded(action, self.random.choice(self.joined)))
        else:
            count = self.random.choice([1, 3, 10, 50, 5_000])
            s.handle(TasksSubmitted([task(self.next_task + i) for i in range(count)]))
            self.next_task += count

    def flush(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        expected = expected_dispatch(self.s, self.joined)
        return expected, dispatched(self.s.flush())


@pytest.mark.parametrize("seed", range(6))
def test_the_flush_serves_managers_by_the_rule_over_random_runs(seed: int) -> None:
    run = Run(seed)
    served = 0
    for _ in range(300):
        for _ in range(run.random.randint(1, 4)):
            run.step()
        expected, actual = run.flush()
        assert actual == expected
        served += len(actual)
    assert served > 100  # the runs did dispatch, to many managers


def test_most_free_slots_first_ties_in_registration_order_a_re_registered_manager_last() -> None:
    run = Run(0)
    s = run.s
    for manager_id, capacity in (("a", 4), ("b", 6), ("c", 4), ("d", 6)):
        s.handle(ManagerJoined(registration(manager_id, capacity), 0.0))
    s.handle(ManagerJoined(registration("b", 6), 0.0))  # again: now after d
    s.handle(TasksSubmitted([task(i) for i in range(15)]))
    assert dispatched(s.flush()) == [("d", 6), ("b", 6), ("a", 3)]
    s.handle(ManagerResults("d", ok(0, 1, 2), 0.0))  # d: 3 free, c: 4 free, a: 1 free
    s.handle(TasksSubmitted([task(i) for i in range(100, 110)]))
    assert dispatched(s.flush()) == [("c", 4), ("d", 3), ("a", 1)]


def test_a_manager_larger_than_a_batch_gets_one_batch_a_flush() -> None:
    s = Scheduler(heartbeat_threshold=THRESHOLD)
    s.handle(ManagerJoined(registration("big", 2 * MAX_BATCH_TASKS + 10), 0.0))
    s.handle(ManagerJoined(registration("small", 5), 0.0))
    s.handle(TasksSubmitted([task(i) for i in range(3 * MAX_BATCH_TASKS)]))
    assert dispatched(s.flush()) == [("big", MAX_BATCH_TASKS), ("small", 5)]
    assert dispatched(s.flush()) == [("big", MAX_BATCH_TASKS)]
    assert dispatched(s.flush()) == [("big", 10)]
    assert dispatched(s.flush()) == []


def test_a_large_manager_is_served_once_a_flush_even_when_an_old_entry_matches_what_it_has_left() -> None:
    s = Scheduler(heartbeat_threshold=THRESHOLD)
    s.handle(ManagerJoined(registration("big", MAX_BATCH_TASKS + 5), 0.0))
    s.handle(TasksSubmitted([task(i) for i in range(MAX_BATCH_TASKS + 5)]))
    assert dispatched(s.flush()) == [("big", MAX_BATCH_TASKS)]
    assert dispatched(s.flush()) == [("big", 5)]
    s.handle(ManagerResults("big", ok(*range(5)), 0.0))  # 5 free while nothing is queued
    assert dispatched(s.flush()) == []
    s.handle(ManagerResults("big", ok(*range(5, MAX_BATCH_TASKS + 5)), 0.0))  # all free
    s.handle(TasksSubmitted([task(i) for i in range(10_000, 10_000 + MAX_BATCH_TASKS + 5)]))
    assert dispatched(s.flush()) == [("big", MAX_BATCH_TASKS)]  # 5 left: served next flush, as before
    assert dispatched(s.flush()) == [("big", 5)]


def test_held_and_draining_managers_get_nothing_a_released_one_gets_work_again() -> None:
    s = Scheduler(heartbeat_threshold=THRESHOLD)
    for manager_id in ("a", "b", "c"):
        s.handle(ManagerJoined(registration(manager_id, 4), 0.0))
    s.handle(ManagerCommanded("hold", "a"))
    s.handle(ManagerCommanded("drain", "b"))
    s.handle(TasksSubmitted([task(i) for i in range(20)]))
    assert dispatched(s.flush()) == [("c", 4)]
    s.handle(ManagerCommanded("release", "a"))
    s.handle(ManagerCommanded("release", "b"))  # release does not undo a drain
    assert dispatched(s.flush()) == [("a", 4)]


def test_a_flush_looks_only_at_managers_whose_free_slots_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 full managers, one report: the flush reads a handful of managers' free slots, not 10,000."""
    s = Scheduler(heartbeat_threshold=THRESHOLD)
    for i in range(10_000):
        s.handle(ManagerJoined(registration(f"m{i}", 2), 0.0))
    s.handle(TasksSubmitted([task(i) for i in range(30_000)]))
    assert len(dispatched(s.flush())) == 10_000
    reads = count_free_reads(monkeypatch)
    done = list(s.managers["m5000"].outstanding)
    s.handle(ManagerResults("m5000", ok(*done), 1.0))
    reads.clear()
    assert dispatched(s.flush()) == [("m5000", 2)]
    assert len(reads) <= 10


def test_the_heap_stays_bounded_while_results_come_and_nothing_is_queued() -> None:
    s = Scheduler(heartbeat_threshold=THRESHOLD)
    for i in range(10):
        s.handle(ManagerJoined(registration(f"m{i}", 4), 0.0))
    for round_ in range(2_000):
        manager_id = f"m{round_ % 10}"
        s.handle(TasksSubmitted([task(("t", round_))]))
        s.flush()
        for holder, state in s.managers.items():
            if state.outstanding:
                s.handle(ManagerResults(holder, ok(*state.outstanding), 0.0))
        s.handle(ManagerResults(manager_id, ResultBatch.build([]), 0.0))
        s.flush()
    assert len(s._free._heap) <= 2 * len(s.managers) + 64 + 10  # noqa: SLF001 - the bound is the point


def count_free_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each read of a manager's free slots (the real property, counted)."""
    reads: list[str] = []
    real = scheduling.ManagerState.free

    def free(manager: scheduling.ManagerState) -> int:
        reads.append(manager.registration.manager_id)
        return real.fget(manager)  # type: ignore[attr-defined]

    monkeypatch.setattr(scheduling.ManagerState, "free", property(free))
    return reads
