"""Socket-free unit tests of the manager's sans-IO prefetch logic (``manager.scheduler``)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from fabric.errors import TaskError, TaskTimeout, WorkerLost
from fabric.protocol import MAX_BATCH_BYTES, RESULT_OK, RESULT_TASK_ERROR, ResultBatch, Task
from manager.scheduler import (CHUNK, INITIAL_DEPTH, MAX_DEPTH, MIN_DEPTH, DrainRequested, Exit,
                               KillWorker, ManagerScheduler, ReportResults, SendTasks, StartWorker, StopRequested,
                               TasksArrived, Tick, WorkerDied, WorkerResults, WorkerStarted)

HOST = "node-1"


def make(workers: int = 2, prefetch: int | None = None, *, ready: bool = True) -> ManagerScheduler:
    ms = ManagerScheduler(workers=workers, prefetch=prefetch, hostname=HOST, now=0.0)
    for index in range(workers):
        ms.add_worker(f"w{index}", index)
        if ready:
            assert ms.handle(WorkerStarted(f"w{index}")) == []
    return ms


def task(task_id: Any, function_id: str = "f", *, walltime: float | None = None, retries: int = 0,
         payload: bytes = b"args") -> Task:
    return Task(task_id, function_id, payload, walltime, retries, 0)


def arrive(ms: ManagerScheduler, *tasks: Task) -> None:
    assert ms.handle(TasksArrived(list(tasks))) == []


def sent(actions: list[Any]) -> dict[str, list[Any]]:
    """Task ids sent to each worker, in order."""
    out: dict[str, list[Any]] = {}
    for action in actions:
        if isinstance(action, SendTasks):
            out.setdefault(action.worker_id, []).extend(t.task_id for t in action.tasks)
    return out


def reports(actions: list[Any]) -> list[ResultBatch]:
    return [a.batch for a in actions if isinstance(a, ReportResults)]


def reported_ids(actions: list[Any]) -> list[Any]:
    return [i for batch in reports(actions) for i in batch.task_ids]


def finish(ms: ManagerScheduler, worker_id: str, count: int, seconds_each: float = 0.001) -> list[Any]:
    """The worker returns results for the first ``count`` tasks of its queue."""
    done = [t.task_id for t in list(ms.slots[worker_id].queue)[:count]]
    batch = ResultBatch.build([(i, RESULT_OK, b"ok") for i in done], elapsed=seconds_each * len(done))
    assert ms.handle(WorkerResults(worker_id, batch)) == []
    return done


def queue_ids(ms: ManagerScheduler, worker_id: str) -> list[Any]:
    return [t.task_id for t in ms.slots[worker_id].queue]


def decode_error(batch: ResultBatch, task_id: Any) -> dict[str, Any]:
    for i, kind, payload in batch.results():
        if i == task_id:
            assert kind == RESULT_TASK_ERROR
            return msgpack.unpackb(bytes(payload), raw=False)
    raise AssertionError(f"no result for {task_id!r}")


# --- filling workers ------------------------------------------------------------------------


def test_tasks_fill_ready_workers_up_to_depth() -> None:
    ms = make(2)
    arrive(ms, *(task(i) for i in range(100)))
    assert sent(ms.flush()) == {"w0": list(range(INITIAL_DEPTH)), "w1": list(range(INITIAL_DEPTH, 2 * INITIAL_DEPTH))}
    assert len(ms.buffer) == 100 - 2 * INITIAL_DEPTH
    assert ms.outstanding == 100
    assert sent(ms.flush()) == {}  # full until results come back


def test_tasks_go_in_chunks_of_at_most_chunk() -> None:
    ms = make(2)
    ms.depth = MAX_DEPTH
    arrive(ms, *(task(i) for i in range(2 * MAX_DEPTH + 10)))
    actions = ms.flush()
    chunks = [a for a in actions if isinstance(a, SendTasks)]
    assert all(0 < len(a.tasks) <= CHUNK for a in chunks)
    assert len(chunks) == 2 * -(-MAX_DEPTH // CHUNK)
    assert sent(actions) == {"w0": list(range(MAX_DEPTH)), "w1": list(range(MAX_DEPTH, 2 * MAX_DEPTH))}
    assert len(ms.buffer) == 10


def test_chunks_are_bounded_in_bytes() -> None:
    ms = make(1)
    big = b"x" * (MAX_BATCH_BYTES // 2 + 1)
    arrive(ms, *(task(i, payload=big) for i in range(3)), task(3))
    chunks = [a.tasks for a in ms.flush() if isinstance(a, SendTasks)]
    assert [[t.task_id for t in c] for c in chunks] == [[0], [1], [2, 3]]


def test_not_ready_workers_get_nothing() -> None:
    ms = make(2, ready=False)
    arrive(ms, task(1), task(2))
    assert sent(ms.flush()) == {}
    ms.handle(WorkerStarted("w1"))
    assert sent(ms.flush()) == {"w1": [1, 2]}


def test_worker_started_for_an_unknown_worker_is_ignored() -> None:
    ms = make(1, ready=False)
    assert ms.handle(WorkerStarted("stranger")) == []
    arrive(ms, task(1))
    assert sent(ms.flush()) == {}


def test_new_function_ids_are_listed_once_per_worker() -> None:
    ms = make(2)
    ms.depth = 3
    arrive(ms, task(1, "g"), task(2, "f"), task(3, "g"), task(4, "f"), task(5, "f"), task(6, "f"))
    chunks = [a for a in ms.flush() if isinstance(a, SendTasks)]
    assert [(a.worker_id, a.new_functions) for a in chunks] == [("w0", ["f", "g"]), ("w1", ["f"])]
    finish(ms, "w0", 3)
    finish(ms, "w1", 3)
    ms.depth = 2
    arrive(ms, task(7, "f"), task(8, "h"), task(9, "g"), task(10, "g"))
    chunks = [a for a in ms.flush() if isinstance(a, SendTasks)]
    assert [(a.worker_id, a.new_functions) for a in chunks] == [("w0", ["h"]), ("w1", ["g"])]


def test_results_pop_the_worker_queue_in_order_and_free_room() -> None:
    ms = make(1)
    ms.depth = 4
    arrive(ms, *(task(i) for i in range(10)))
    ms.flush()
    assert queue_ids(ms, "w0") == [0, 1, 2, 3]
    assert finish(ms, "w0", 2) == [0, 1]
    assert queue_ids(ms, "w0") == [2, 3]
    ms.depth = 4  # keep the depth fixed for this test
    assert sent(ms.flush()) == {"w0": [4, 5]}
    assert queue_ids(ms, "w0") == [2, 3, 4, 5]


def test_results_are_reported_in_one_batch_per_flush() -> None:
    ms = make(2)
    arrive(ms, *(task(i) for i in range(4)))
    ms.depth = 2
    ms.flush()
    finish(ms, "w0", 1)
    finish(ms, "w1", 2)
    finish(ms, "w0", 1)
    [batch] = reports(ms.flush())
    assert batch.task_ids == [0, 2, 3, 1]
    assert [bytes(p) for p in batch.payloads()] == [b"ok"] * 4


def test_results_from_an_unknown_worker_are_ignored() -> None:
    ms = make(1)
    batch = ResultBatch.build([(1, RESULT_OK, b"late")])
    assert ms.handle(WorkerResults("gone", batch)) == []
    assert reports(ms.flush()) == []


def test_unknown_event_raises() -> None:
    with pytest.raises(TypeError):
        make(1).handle("not an event")


# --- depth and capacity ---------------------------------------------------------------------


def test_fast_tasks_deepen_worker_queues() -> None:
    ms = make(1)
    arrive(ms, *(task(i) for i in range(1000)))
    ms.flush()
    finish(ms, "w0", INITIAL_DEPTH, seconds_each=1e-6)
    assert ms.depth == MAX_DEPTH
    assert ms.capacity == 2 * MAX_DEPTH
    assert len(sent(ms.flush())["w0"]) == MAX_DEPTH


def test_slow_tasks_keep_worker_queues_shallow() -> None:
    ms = make(2)
    arrive(ms, *(task(i) for i in range(100)))
    ms.flush()
    finish(ms, "w0", 1, seconds_each=2.0)
    assert ms.depth == MIN_DEPTH
    assert ms.capacity == 2 * 2 * MIN_DEPTH
    assert sent(ms.flush()) == {}  # both queues already hold more than MIN_DEPTH


def test_depth_follows_the_target_queue_time() -> None:
    ms = make(1)
    arrive(ms, *(task(i) for i in range(20)))
    ms.flush()
    finish(ms, "w0", 4, seconds_each=0.001)  # 1 ms per task: about 10 ms of work queued
    assert MIN_DEPTH < ms.depth < MAX_DEPTH
    assert ms.depth == 10


def test_results_without_tasks_do_not_change_depth() -> None:
    ms = make(1)
    ms.handle(WorkerResults("w0", ResultBatch(elapsed=5.0)))
    assert ms.depth == INITIAL_DEPTH


def test_fixed_prefetch_capacity_is_workers_plus_prefetch() -> None:
    ms = make(3, prefetch=5)
    assert ms.capacity == 8
    arrive(ms, *(task(i) for i in range(8)))
    ms.flush()
    finish(ms, "w0", 1, seconds_each=10.0)
    assert ms.capacity == 8  # unaffected by the measured duration


def test_adaptive_capacity_is_twice_what_workers_queue() -> None:
    assert make(3).capacity == 2 * 3 * INITIAL_DEPTH


def test_capacity_is_reported_when_it_changes() -> None:
    ms = make(1)
    arrive(ms, *(task(i) for i in range(40)))
    ms.flush()
    finish(ms, "w0", 2, seconds_each=0.001)
    [first] = reports(ms.flush())
    assert first.capacity == ms.capacity == 2 * 10
    finish(ms, "w0", 2, seconds_each=0.001)
    [second] = reports(ms.flush())
    assert second.capacity is None  # unchanged
    finish(ms, "w0", 2, seconds_each=1.0)
    [third] = reports(ms.flush())
    assert third.capacity == ms.capacity


def test_every_task_is_reported_handed_before_it_goes_to_a_worker() -> None:
    """Issue 12, item 14: the interchange must hear of a hand-out before the worker can begin
    the task, so a manager killed at any moment never leaves a begun task counted as unstarted."""
    ms = make(2)
    arrive(ms, *(task(i) for i in range(5)))
    actions = ms.flush()
    finish(ms, "w0", 1)
    arrive(ms, task(5), task(6))
    actions += ms.flush()
    reported: set[Any] = set()
    for action in actions:
        if isinstance(action, ReportResults):
            reported.update(action.batch.handed)
        elif isinstance(action, SendTasks):
            assert {t.task_id for t in action.tasks} <= reported
    assert reported == set(range(7))


def test_only_the_tasks_workers_run_are_reported_started() -> None:
    """Tasks queued behind a running one were not started (``started`` is what the service
    shows as running); all of them were handed out."""
    ms = make(2)
    arrive(ms, *(task(i) for i in range(5)))
    actions = ms.flush()
    per_worker = sent(actions)
    assert sorted(i for ids in per_worker.values() for i in ids) == [0, 1, 2, 3, 4]
    ms.handle(Tick(1.0))
    actions += ms.flush()
    started = [i for batch in reports(actions) for i in batch.started]
    assert sorted(started) == sorted(ids[0] for ids in per_worker.values())
    assert reported_ids(actions) == []
    ms.handle(Tick(1.0))
    assert reports(ms.flush()) == []  # each id is reported once


def test_started_ids_ride_on_results_and_hand_out_reports() -> None:
    ms = make(1)
    arrive(ms, task(1), task(2))
    actions = ms.flush()
    finish(ms, "w0", 1)
    actions += ms.flush()
    handed, finished = reports(actions)
    assert (handed.task_ids, handed.handed, handed.started) == ([], [1, 2], [1])  # 1 starts at once
    assert (finished.task_ids, finished.handed, finished.started) == ([1], [], [2])  # 2 when 1 is done


def test_started_ids_are_never_reported_after_their_results() -> None:
    """When one flush needs several ReportResults (byte limit), the interchange reads each in
    turn: a task's ``started`` id must come with or before its result, or the interchange marks
    a finished task as started and keeps it in its ``started`` set forever."""
    ms = make(1)
    arrive(ms, task(1), task(2))
    handed = reports(ms.flush())
    big = b"r" * (MAX_BATCH_BYTES // 2 + 1)
    ms.handle(WorkerResults("w0", ResultBatch.build([(1, RESULT_OK, big)])))
    ms.handle(WorkerResults("w0", ResultBatch.build([(2, RESULT_OK, big)])))
    batches = reports(ms.flush())
    assert len(batches) == 2
    batches = handed + batches
    seen_started: set[Any] = set()
    for batch in batches:
        seen_started.update(batch.started)
        for task_id in batch.task_ids:
            assert task_id in seen_started, f"result of {task_id} arrives before it is reported started"


def test_next_deadline() -> None:
    ms = make(1)
    assert ms.next_deadline() is None
    arrive(ms, task(1))
    ms.flush()
    assert ms.next_deadline() is None  # its start was reported with its hand-out: nothing waits
    ms.handle(Tick(1.0))
    finish(ms, "w0", 1)
    ms.flush()
    arrive(ms, task(2, walltime=3.0))
    ms.flush()
    assert ms.next_deadline() == pytest.approx(4.0)


# --- walltimes ----------------------------------------------------------------------------------


def test_walltime_task_goes_alone_to_an_idle_worker() -> None:
    ms = make(2)
    arrive(ms, task("wt", walltime=5.0), task(1), task(2))
    actions = ms.flush()
    chunks = [(a.worker_id, [t.task_id for t in a.tasks]) for a in actions if isinstance(a, SendTasks)]
    assert chunks == [("w0", ["wt"]), ("w1", [1, 2])]
    arrive(ms, task(3))
    assert sent(ms.flush()) == {"w1": [3]}  # w0 runs the walltime task alone


def test_walltime_task_waits_for_an_idle_worker() -> None:
    ms = make(1)
    arrive(ms, task(1), task("wt", walltime=5.0), task(2))
    assert sent(ms.flush()) == {"w0": [1]}
    assert [t.task_id for t in ms.buffer] == ["wt", 2]
    finish(ms, "w0", 1)
    assert sent(ms.flush()) == {"w0": ["wt"]}
    finish(ms, "w0", 1)
    assert sent(ms.flush()) == {"w0": [2]}


def test_walltime_expiry_kills_the_worker_and_reports_timeout() -> None:
    ms = make(2)
    arrive(ms, task("wt", walltime=5.0), task(1))
    ms.flush()
    assert ms.handle(Tick(4.9)) == []
    actions = ms.handle(Tick(5.0))
    assert actions == [KillWorker("w0")]
    assert ms.handle(Tick(6.0)) == []  # killed once
    flushed = ms.flush()
    assert reported_ids(flushed) == ["wt"]
    wire = decode_error(reports(flushed)[0], "wt")
    assert wire == {"error": "TaskTimeout", "fields": {"task_id": "wt", "walltime": 5.0, "hostname": HOST}}
    assert isinstance(TaskError.from_wire(wire), TaskTimeout)
    arrive(ms, task(2))
    assert "w0" not in sent(ms.flush())  # nothing more for a worker being killed
    # the killed worker dies: no WorkerLost for the timed-out task, a fresh worker is started
    assert ms.handle(WorkerDied("w0", -9)) == [StartWorker(0)]
    assert reported_ids(ms.flush()) == []


def test_walltime_task_that_finishes_in_time() -> None:
    ms = make(1)
    arrive(ms, task("wt", walltime=5.0), task(1))
    ms.flush()
    finish(ms, "w0", 1)
    assert ms.handle(Tick(10.0)) == []
    assert sent(ms.flush()) == {"w0": [1]}


def test_late_result_from_a_timed_out_worker_is_dropped() -> None:
    """The worker's result may already be on its way when the deadline passes: the task has
    been reported as TaskTimeout, so the late result must not be reported too, and the worker
    (being killed) must not receive new tasks."""
    ms = make(2)
    arrive(ms, task("wt", walltime=5.0))
    ms.flush()
    assert ms.handle(Tick(5.5)) == [KillWorker("w0")]
    actions = ms.flush()
    ms.handle(WorkerResults("w0", ResultBatch.build([("wt", RESULT_OK, b"too late")], elapsed=5.4)))
    arrive(ms, task(1))
    actions += ms.flush()
    assert reported_ids(actions).count("wt") == 1
    assert "w0" not in sent(actions)


# --- dead workers ---------------------------------------------------------------------------------


def test_dead_worker_running_task_fails_with_worker_lost() -> None:
    ms = make(2)
    ms.depth = 4
    arrive(ms, *(task(i) for i in range(10)))
    ms.flush()
    assert queue_ids(ms, "w0") == [0, 1, 2, 3]
    assert ms.handle(WorkerDied("w0", -11)) == [StartWorker(0)]
    assert "w0" not in ms.slots
    assert [t.task_id for t in ms.buffer] == [1, 2, 3, 8, 9]  # queued tasks back at the head
    flushed = ms.flush()
    [batch] = reports(flushed)
    assert batch.task_ids == [0]
    wire = decode_error(batch, 0)
    assert wire == {"error": "WorkerLost", "fields": {"task_id": 0, "worker_id": "w0", "hostname": HOST,
                                                      "exit_code": -11}}
    assert isinstance(TaskError.from_wire(wire), WorkerLost)
    ms.add_worker("w0-new", 0)
    ms.handle(WorkerStarted("w0-new"))
    assert sent(ms.flush()) == {"w0-new": [1, 2, 3, 8]}


def test_dead_worker_running_task_with_retries_is_retried() -> None:
    ms = make(1)
    arrive(ms, task("r", retries=2), task(1))
    ms.flush()
    assert ms.handle(WorkerDied("w0", 1)) == [StartWorker(0)]
    assert [(t.task_id, t.retries) for t in ms.buffer] == [("r", 1), (1, 0)]
    assert reported_ids(ms.flush()) == []


def test_dead_idle_worker_is_replaced() -> None:
    ms = make(3)
    assert ms.handle(WorkerDied("w2", 0)) == [StartWorker(2)]
    assert ms.buffer == type(ms.buffer)()
    assert reports(ms.flush()) == []


def test_death_of_an_unknown_worker_is_ignored() -> None:
    ms = make(1)
    assert ms.handle(WorkerDied("stranger", 1)) == []
    ms.handle(WorkerDied("w0", 1))
    assert ms.handle(WorkerDied("w0", 1)) == []  # reported twice


def test_late_results_from_a_dead_worker_are_ignored() -> None:
    ms = make(1)
    arrive(ms, task(1), task(2))
    ms.flush()
    ms.handle(WorkerDied("w0", 1))
    ms.flush()
    assert ms.handle(WorkerResults("w0", ResultBatch.build([(1, RESULT_OK, b"x")]))) == []
    assert reported_ids(ms.flush()) == []


# --- draining -------------------------------------------------------------------------------------


def test_drain_exits_once_nothing_is_outstanding() -> None:
    ms = make(1)
    arrive(ms, task(1), task(2))
    ms.flush()
    ms.handle(DrainRequested())
    assert not [a for a in ms.flush() if isinstance(a, Exit)]
    finish(ms, "w0", 1)
    assert not [a for a in ms.flush() if isinstance(a, Exit)]
    finish(ms, "w0", 1)
    actions = ms.flush()
    assert reported_ids(actions) == [2]
    assert isinstance(actions[-1], Exit)  # after the last results


def test_drain_with_nothing_outstanding_exits_at_once() -> None:
    ms = make(2)
    ms.handle(DrainRequested())
    assert [type(a) for a in ms.flush()] == [Exit]


def test_drain_still_runs_buffered_tasks() -> None:
    ms = make(1)
    ms.depth = 2
    arrive(ms, *(task(i) for i in range(4)))
    ms.flush()
    ms.handle(DrainRequested())
    finish(ms, "w0", 2)
    assert sent(ms.flush()) == {"w0": [2, 3]}


def test_dead_worker_during_drain_is_not_replaced_while_others_remain() -> None:
    ms = make(2)
    ms.handle(DrainRequested())
    assert ms.handle(WorkerDied("w1", 0)) == []


def test_drain_does_not_strand_tasks_of_a_dead_last_worker() -> None:
    """Draining, the only worker dies with tasks queued: they go back to the buffer, but with
    no worker left and none started, the manager never runs them and never exits."""
    ms = make(1)
    arrive(ms, task(1), task(2), task(3))
    ms.flush()
    ms.handle(DrainRequested())
    actions = ms.handle(WorkerDied("w0", -9))
    actions += ms.flush()
    accounted = set(reported_ids(actions))
    assert any(isinstance(a, StartWorker) for a in actions) or accounted == {1, 2, 3}


def test_a_few_tasks_spread_over_all_idle_workers() -> None:
    """Fair shares: four long tasks on two idle workers run two and two, not four on one."""
    ms = make(2)
    arrive(ms, *(task(i) for i in range(4)))
    per_worker = sent(ms.flush())
    assert sorted(len(ids) for ids in per_worker.values()) == [2, 2]


# --- lost workers and leaving: which tasks a worker began ---------------------------------------


def test_a_lost_worker_s_tasks_split_by_how_many_it_began() -> None:
    """Issue 12, item 14: a worker runs ahead of the results its manager has read; the count
    of tasks it began (shared with its manager) says which must not run again without retries."""
    ms = make(1)
    arrive(ms, task(1), task(2, retries=1), task(3), task(4))
    ms.flush()
    finish(ms, "w0", 1)  # 2 and 3 began too, their results never came
    assert ms.handle(WorkerDied("w0", -9, began=3)) == [StartWorker(0)]
    [batch] = reports(ms.flush())
    assert batch.task_ids == [1, 3]
    assert [k for k in batch.kinds] == [RESULT_OK, RESULT_TASK_ERROR]
    assert isinstance(TaskError.from_wire(msgpack.unpackb(bytes(batch.payloads()[1]))), WorkerLost)
    assert [(t.task_id, t.retries) for t in ms.buffer] == [(2, 0), (4, 0)]  # 2 retried, 4 never began


def test_stop_requested_hands_out_nothing_and_collects_what_never_began() -> None:
    ms = make(2)
    arrive(ms, task("wt", walltime=5.0), task("a"), task("b"), task("c"))
    assert sent(ms.flush()) == {"w0": ["wt"], "w1": ["a", "b", "c"]}
    arrive(ms, task("buffered"))  # w0 runs a walltime task alone, w1 is not flushed again
    ms.handle(StopRequested())
    arrive(ms, task("late"))
    assert sent(ms.flush()) == {}
    assert ms.handle(WorkerDied("w1", 0, began=1)) == []  # stopped by the flag after a: no restart
    assert ms.handle(WorkerDied("w0", -9, began=1)) == []  # killed in its task
    assert ms.unstarted == ["buffered", "late", "b", "c"]
