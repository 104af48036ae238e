"""Socket-free unit tests: the scheduler never runs a task id twice because it was sent twice.

The service re-sends every unfinished task on each new connection, so a ``TaskBatch`` may
name tasks the interchange holds already (queued, at a manager) or has finished with a
result still waiting for the service's acknowledgement (``held_results``).
"""

from __future__ import annotations

from typing import Any

from fabric.protocol import (PROTOCOL_VERSION, RESULT_OK, RESULT_TASK_ERROR, ManagerRegistration, ResultBatch, Task,
                             TaskBatch)
from interchange.scheduler import (ManagerJoined, ManagerLeft, ManagerResults, ResendResults, Scheduler,
                                   SendToManager, SendUpstream, TasksCancelled, TasksSubmitted)


def registration(manager_id: str, capacity: int) -> ManagerRegistration:
    return ManagerRegistration(
        manager_id=manager_id, hostname="node", pid=1, cores=2, memory=2**30, accelerators=[], python_version="3.11",
        protocol_version=PROTOCOL_VERSION, worker_count=capacity, prefetch=0, capacity=capacity)


def task(task_id: Any, retries: int = 0) -> Task:
    return Task(task_id, "f", b"args-" + str(task_id).encode(), None, retries, 0)


def dispatched(actions: list[Any]) -> list[Any]:
    return [t.task_id for a in actions if isinstance(a, SendToManager) and isinstance(a.message, TaskBatch)
            for t in a.message.tasks]


def forwarded(actions: list[Any]) -> list[Any]:
    return [i for a in actions if isinstance(a, SendUpstream) for i in a.message.task_ids]


def done(*task_ids: Any) -> ResultBatch:
    return ResultBatch.build([(i, RESULT_OK, b"result") for i in task_ids])


def test_a_task_queued_already_is_ignored() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    assert s.handle(TasksSubmitted([task("a"), task("b")])) == []
    assert s.handle(TasksSubmitted([task("b"), task("c")])) == []
    assert len(s.queue) == 3 and s.duplicates == 1
    s.handle(ManagerJoined(registration("m", 10), 0.0))
    assert dispatched(s.flush()) == ["a", "b", "c"]


def test_a_task_at_a_manager_is_ignored() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(ManagerJoined(registration("m", 10), 0.0))
    s.handle(TasksSubmitted([task("a")]))
    assert dispatched(s.flush()) == ["a"]
    assert s.handle(TasksSubmitted([task("a")])) == []
    assert dispatched(s.flush()) == [] and len(s.queue) == 0
    s.handle(ManagerResults("m", done("a"), 1.0))
    assert forwarded(s.flush()) == ["a"]


def test_an_id_repeated_within_one_batch_runs_once() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(TasksSubmitted([task(1), task(2), task(1), task(1)]))
    s.handle(ManagerJoined(registration("m", 10), 0.0))
    assert dispatched(s.flush()) == [1, 2]
    assert s.duplicates == 2


def test_a_task_whose_result_is_held_is_answered_not_run() -> None:
    held = {"done-1", "done-2"}
    s = Scheduler(heartbeat_threshold=10.0, held_results=held)
    s.handle(ManagerJoined(registration("m", 10), 0.0))
    actions = s.handle(TasksSubmitted([task("done-1"), task("new"), task("done-2"), task("done-1")]))
    assert actions == [ResendResults(["done-1", "done-2"])]
    assert dispatched(s.flush()) == ["new"]


def test_a_mixed_batch_keeps_only_fresh_tasks() -> None:
    held = {"held"}
    s = Scheduler(heartbeat_threshold=10.0, held_results=held)
    s.handle(ManagerJoined(registration("m", 1), 0.0))
    s.handle(TasksSubmitted([task("running"), task("queued")]))
    assert dispatched(s.flush()) == ["running"]
    actions = s.handle(TasksSubmitted([task("queued"), task("held"), task("running"), task("fresh")]))
    assert actions == [ResendResults(["held"])]
    assert s.status(0.0)["queued_tasks"] == 2 and s.status(0.0)["outstanding_tasks"] == 1
    s.handle(ManagerResults("m", done("running"), 1.0))
    assert dispatched(s.flush()) == ["queued"]


def test_a_finished_task_not_held_may_come_again() -> None:
    """Without a held result (a local upstream never acknowledges), a finished id is new again."""
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(ManagerJoined(registration("m", 10), 0.0))
    s.handle(TasksSubmitted([task(7)]))
    s.flush()
    s.handle(ManagerResults("m", done(7), 1.0))
    assert forwarded(s.flush()) == [7]
    assert s.handle(TasksSubmitted([task(7)])) == []
    assert dispatched(s.flush()) == [7]


def test_tasks_of_a_lost_manager_stay_known_and_run_once() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(ManagerJoined(registration("m1", 10), 0.0))
    s.handle(TasksSubmitted([task("a"), task("b")]))
    assert dispatched(s.flush()) == ["a", "b"]
    s.handle(ManagerLeft("m1", "gone"))  # neither started: both back in the queue
    s.handle(TasksSubmitted([task("a"), task("b")]))
    assert len(s.queue) == 2
    s.handle(ManagerJoined(registration("m2", 10), 1.0))
    assert dispatched(s.flush()) == ["a", "b"]


def test_a_task_failed_by_manager_loss_is_forgotten() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(ManagerJoined(registration("m1", 10), 0.0))
    s.handle(TasksSubmitted([task("a")]))
    s.flush()
    s.handle(ManagerResults("m1", ResultBatch(started=["a"]), 0.5))
    s.handle(ManagerLeft("m1", "gone"))
    failure = s.flush()
    assert forwarded(failure) == ["a"]
    assert [a.message.kinds for a in failure if isinstance(a, SendUpstream)] == [[RESULT_TASK_ERROR]]
    assert "a" not in s.task_ids
    s.handle(TasksSubmitted([task("a")]))
    assert len(s.queue) == 1


def test_a_cancelled_task_is_forgotten() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(TasksSubmitted([task("a"), task("b")]))
    s.handle(TasksCancelled(["a"]))
    cancelled = forwarded(s.flush())
    assert cancelled == ["a"] and s.task_ids == {"b"}
    s.handle(TasksSubmitted([task("a")]))
    assert len(s.queue) == 2


def test_results_forget_their_tasks() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(ManagerJoined(registration("m", 100), 0.0))
    s.handle(TasksSubmitted([task(i) for i in range(100)]))
    s.flush()
    s.handle(ManagerResults("m", done(*range(100)), 1.0))
    s.flush()
    assert s.task_ids == set() and s.duplicates == 0

