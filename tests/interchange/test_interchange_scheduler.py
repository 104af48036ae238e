"""Socket-free unit tests of the interchange's sans-IO dispatch (``interchange.scheduler``)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from fabric.errors import ManagerLost, TaskCancelled, TaskError
from fabric.protocol import (MAX_BATCH_BYTES, MAX_BATCH_TASKS, PROTOCOL_VERSION, RESULT_OK, RESULT_REMOTE_ERROR,
                             RESULT_TASK_ERROR, Drain, FunctionDefinitions, ManagerRegistration, Message, ResultBatch,
                             Task, TaskBatch)
from interchange.scheduler import (ForgetManager, FunctionsSubmitted, ManagerCommanded, ManagerJoined,
                                   ManagerLeft, ManagerResults, ManagerSeen, Scheduler, SendToManager, SendUpstream,
                                   TaskQueue, TasksCancelled, TasksSubmitted, Tick)

THRESHOLD = 10.0


def registration(manager_id: str = "m1", capacity: int = 4, workers: int = 2) -> ManagerRegistration:
    return ManagerRegistration(
        manager_id=manager_id, hostname=f"host-{manager_id}", pid=100, cores=8, memory=2**30, accelerators=[],
        python_version="3.11", protocol_version=PROTOCOL_VERSION, worker_count=workers, prefetch=capacity - workers,
        capacity=capacity,
    )


def task(task_id: Any, function_id: str = "f", *, priority: int = 0, retries: int = 0) -> Task:
    return Task(task_id, function_id, b"args-%s" % str(task_id).encode(), None, retries, priority)


def scheduler(*managers: tuple[str, int], now: float = 0.0) -> Scheduler:
    s = Scheduler(heartbeat_threshold=THRESHOLD)
    for manager_id, capacity in managers:
        assert s.handle(ManagerJoined(registration(manager_id, capacity), now)) == []
    return s


def task_batches(actions: list[Any]) -> dict[str, list[Any]]:
    """Task ids sent to each manager, in order, from ``actions``."""
    sent: dict[str, list[Any]] = {}
    for action in actions:
        if isinstance(action, SendToManager) and isinstance(action.message, TaskBatch):
            sent.setdefault(action.manager_id, []).extend(t.task_id for t in action.message.tasks)
    return sent


def messages_to(actions: list[Any], manager_id: str) -> list[Message]:
    return [a.message for a in actions if isinstance(a, SendToManager) and a.manager_id == manager_id]


def upstream(actions: list[Any]) -> list[ResultBatch]:
    batches = [a.message for a in actions if isinstance(a, SendUpstream)]
    assert all(isinstance(b, ResultBatch) for b in batches)
    return batches


def results_of(batch: ResultBatch) -> list[tuple[Any, int, bytes]]:
    return [(i, k, bytes(p)) for i, k, p in batch.results()]


def ok(*task_ids: Any, started: list[Any] | None = None, capacity: int | None = None) -> ResultBatch:
    return ResultBatch.build([(i, RESULT_OK, b"result-%s" % str(i).encode()) for i in task_ids],
                             started=started or [], capacity=capacity)


def submit(s: Scheduler, *tasks: Task) -> None:
    assert s.handle(TasksSubmitted(list(tasks))) == []


def task_error(payload: bytes) -> dict[str, Any]:
    return msgpack.unpackb(payload, raw=False)


# --- queue order ------------------------------------------------------------------------------


def test_tasks_leave_fifo() -> None:
    s = scheduler(("m1", 100))
    submit(s, *(task(i) for i in range(10)))
    submit(s, task(10), task(11))
    assert task_batches(s.flush()) == {"m1": list(range(12))}


def test_higher_priorities_leave_first_fifo_within_a_priority() -> None:
    s = scheduler()
    submit(s, task("low-1", priority=0), task("high-1", priority=5), task("neg", priority=-2),
           task("low-2", priority=0), task("high-2", priority=5), task("mid", priority=1))
    s.handle(ManagerJoined(registration("m1", 100), 0.0))
    assert task_batches(s.flush()) == {"m1": ["high-1", "high-2", "mid", "low-1", "low-2", "neg"]}


def test_priorities_apply_across_flushes() -> None:
    s = scheduler(("m1", 2))
    submit(s, task(1), task(2), task(3), task(4))
    assert task_batches(s.flush()) == {"m1": [1, 2]}
    submit(s, task("urgent", priority=10))
    s.handle(ManagerResults("m1", ok(1, 2), 1.0))
    assert task_batches(s.flush()) == {"m1": ["urgent", 3]}


def test_task_queue_pop_remove_and_push_front() -> None:
    queue = TaskQueue()
    queue.extend([task(1), task(2, priority=1), task(3)])
    assert len(queue) == 3
    assert [t.task_id for t in queue.pop(2)] == [2, 1]
    queue.push_front([task(0), task(-1, priority=1)])
    assert len(queue) == 3
    assert [t.task_id for t in queue.remove({3, 99})] == [3]
    assert [t.task_id for t in queue.pop(10)] == [-1, 0]
    assert len(queue) == 0
    assert queue.pop(5) == []


# --- dispatch by capacity -----------------------------------------------------------------------


def test_nothing_is_sent_without_managers() -> None:
    s = scheduler()
    submit(s, task(1))
    assert s.flush() == []
    assert s.status(0.0)["queued_tasks"] == 1


def test_dispatch_fills_free_capacity_of_each_manager_in_one_batch() -> None:
    s = scheduler(("m1", 3), ("m2", 2))
    submit(s, *(task(i) for i in range(10)))
    actions = s.flush()
    batches = [a for a in actions if isinstance(a, SendToManager) and isinstance(a.message, TaskBatch)]
    assert sorted((a.manager_id, len(a.message.tasks)) for a in batches) == [("m1", 3), ("m2", 2)]
    assert sorted(i for ids in task_batches(actions).values() for i in ids) == list(range(5))
    assert s.status(0.0)["queued_tasks"] == 5
    assert s.outstanding == 5
    assert task_batches(s.flush()) == {}  # full: nothing more until results arrive


def test_few_tasks_go_to_the_manager_with_the_most_room() -> None:
    s = scheduler(("small", 2), ("big", 8))
    submit(s, task(1), task(2))
    assert task_batches(s.flush()) == {"big": [1, 2]}


def test_results_free_exactly_their_capacity() -> None:
    s = scheduler(("m1", 3))
    submit(s, *(task(i) for i in range(10)))
    assert task_batches(s.flush()) == {"m1": [0, 1, 2]}
    s.handle(ManagerResults("m1", ok(0, 2), 1.0))
    assert task_batches(s.flush()) == {"m1": [3, 4]}
    s.handle(ManagerResults("m1", ok(1), 2.0))
    assert task_batches(s.flush()) == {"m1": [5]}


def test_dispatch_is_capped_at_max_batch_tasks_per_flush() -> None:
    s = scheduler(("m1", MAX_BATCH_TASKS + 10))
    submit(s, *(task(i) for i in range(MAX_BATCH_TASKS + 10)))
    first = task_batches(s.flush())["m1"]
    assert first == list(range(MAX_BATCH_TASKS))
    assert task_batches(s.flush())["m1"] == list(range(MAX_BATCH_TASKS, MAX_BATCH_TASKS + 10))


def test_large_payloads_are_split_into_size_bounded_batches() -> None:
    s = scheduler(("m1", 10))
    s.handle(FunctionsSubmitted(["f"], [b"body-f"]))
    big = b"x" * (MAX_BATCH_BYTES // 2 + 1)
    submit(s, *(Task(i, "f", big) for i in range(3)), task(3))
    messages = messages_to(s.flush(), "m1")
    assert isinstance(messages[0], FunctionDefinitions)
    assert [type(m) for m in messages[1:]] == [TaskBatch] * 3
    task_messages = [m for m in messages[1:] if isinstance(m, TaskBatch)]
    assert [[t.task_id for t in m.tasks] for m in task_messages] == [[0], [1], [2, 3]]
    assert all(sum(len(t.payload) for t in m.tasks) <= MAX_BATCH_BYTES for m in task_messages)
    assert s.outstanding == 4


def test_large_results_go_upstream_in_size_bounded_batches() -> None:
    s = scheduler(("m1", 6))
    submit(s, *(task(i) for i in range(6)))
    s.flush()
    big = b"r" * (MAX_BATCH_BYTES // 3)
    for i in range(6):
        s.handle(ManagerResults("m1", ResultBatch.build([(i, RESULT_OK, big)]), 1.0))
    batches = upstream(s.flush())
    assert len(batches) == 2  # fewest batches within the byte limit, not one per result and not one huge one
    assert [b.task_ids for b in batches] == [[0, 1, 2], [3, 4, 5]]
    assert all(len(b.blob) <= MAX_BATCH_BYTES for b in batches)
    assert all(bytes(p) == big for b in batches for p in b.payloads())


def test_capacity_follows_the_result_batch() -> None:
    s = scheduler(("m1", 2))
    submit(s, *(task(i) for i in range(20)))
    assert task_batches(s.flush()) == {"m1": [0, 1]}
    s.handle(ManagerResults("m1", ok(capacity=6), 1.0))  # no results, only a new capacity
    assert task_batches(s.flush()) == {"m1": [2, 3, 4, 5]}
    s.handle(ManagerResults("m1", ok(0, 1, 2, capacity=3), 2.0))  # 3 left outstanding, capacity 3
    assert task_batches(s.flush()) == {}
    s.handle(ManagerResults("m1", ok(3), 3.0))  # capacity unchanged (None)
    assert task_batches(s.flush()) == {"m1": [6]}


def test_capacity_is_at_least_one() -> None:
    s = scheduler()
    s.handle(ManagerJoined(registration("m1", capacity=0), 0.0))
    submit(s, task(1), task(2))
    assert task_batches(s.flush()) == {"m1": [1]}
    s.handle(ManagerResults("m1", ok(1, capacity=0), 1.0))
    assert task_batches(s.flush()) == {"m1": [2]}


# --- function bodies ----------------------------------------------------------------------------


def test_function_bodies_go_once_per_manager_before_first_use() -> None:
    s = scheduler(("m1", 2))
    s.handle(FunctionsSubmitted(["f", "g"], [b"body-f", b"body-g"]))
    submit(s, task(1, "f"), task(2, "f"), task(3, "g"), task(4, "f"))
    first = messages_to(s.flush(), "m1")
    assert [type(m) for m in first] == [FunctionDefinitions, TaskBatch]
    assert first[0] == FunctionDefinitions(["f"], [b"body-f"])
    s.handle(ManagerResults("m1", ok(1, 2), 1.0))
    second = messages_to(s.flush(), "m1")
    assert [type(m) for m in second] == [FunctionDefinitions, TaskBatch]
    assert second[0] == FunctionDefinitions(["g"], [b"body-g"])
    s.handle(ManagerResults("m1", ok(3), 2.0))
    submit(s, task(5, "g"))
    third = messages_to(s.flush(), "m1")
    assert [type(m) for m in third] == [TaskBatch]


def test_function_bodies_go_to_each_manager() -> None:
    s = scheduler(("m1", 1), ("m2", 1))
    s.handle(FunctionsSubmitted(["f"], [b"body-f"]))
    submit(s, task(1), task(2))
    actions = s.flush()
    for manager_id in ("m1", "m2"):
        messages = messages_to(actions, manager_id)
        assert messages[0] == FunctionDefinitions(["f"], [b"body-f"])
        assert isinstance(messages[1], TaskBatch)


def test_several_new_functions_go_one_per_message_before_the_tasks() -> None:
    """One body per message, so each definitions message stays within the message limit."""
    s = scheduler(("m1", 10))
    s.handle(FunctionsSubmitted(["b", "a"], [b"body-b", b"body-a"]))
    submit(s, task(1, "b"), task(2, "a"), task(3, "b"))
    messages = messages_to(s.flush(), "m1")
    assert len(messages) == 3
    definitions, tasks = messages[:2], messages[2]
    assert all(isinstance(m, FunctionDefinitions) and len(m.function_ids) == 1 for m in definitions)
    assert {m.function_ids[0]: m.bodies[0] for m in definitions} == {"a": b"body-a", "b": b"body-b"}
    assert isinstance(tasks, TaskBatch)


def test_no_empty_function_definitions_are_sent() -> None:
    """Tasks whose body the interchange does not hold must not cost an empty message each batch."""
    s = scheduler(("m1", 1))
    submit(s, task(1, "unknown"), task(2, "unknown"))
    for turn in range(2):
        actions = s.flush()
        for message in messages_to(actions, "m1"):
            if isinstance(message, FunctionDefinitions):
                assert message.function_ids, f"empty FunctionDefinitions on turn {turn}"
        s.handle(ManagerResults("m1", ok(turn + 1), 1.0))


# --- results ------------------------------------------------------------------------------------


def test_results_from_all_managers_go_upstream_in_one_batch() -> None:
    s = scheduler(("m1", 2), ("m2", 2))
    submit(s, *(task(i) for i in range(4)))
    sent = task_batches(s.flush())
    m1, m2 = sent["m1"], sent["m2"]
    s.handle(ManagerResults("m1", ok(m1[0], started=m1, capacity=5), 1.0))
    s.handle(ManagerResults("m2", ResultBatch.build([(m2[0], RESULT_REMOTE_ERROR, b"boom"),
                                                     (m2[1], RESULT_OK, b"")]), 1.0))
    s.handle(ManagerResults("m1", ok(m1[1]), 1.0))
    actions = s.flush()
    batches = upstream(actions)
    assert len(batches) == 1
    assert results_of(batches[0]) == [
        (m1[0], RESULT_OK, b"result-%d" % m1[0]), (m2[0], RESULT_REMOTE_ERROR, b"boom"), (m2[1], RESULT_OK, b""),
        (m1[1], RESULT_OK, b"result-%d" % m1[1]),
    ]
    assert batches[0].started == []  # manager bookkeeping is not forwarded
    assert batches[0].capacity is None
    assert upstream(s.flush()) == []


def test_single_result_batch_goes_upstream() -> None:
    s = scheduler(("m1", 2))
    submit(s, task(1))
    s.flush()
    s.handle(ManagerResults("m1", ok(1, started=[1], capacity=9), 1.0))
    [batch] = upstream(s.flush())
    assert results_of(batch) == [(1, RESULT_OK, b"result-1")]
    assert batch.capacity is None
    assert batch.started == []


def test_no_upstream_message_without_results() -> None:
    s = scheduler(("m1", 2))
    submit(s, task(1))
    s.flush()
    s.handle(ManagerResults("m1", ok(started=[1], capacity=3), 1.0))
    s.handle(ManagerSeen("m1", 2.0))
    assert upstream(s.flush()) == []


def test_results_from_an_unknown_manager_are_ignored() -> None:
    s = scheduler(("m1", 2))
    submit(s, task(1))
    s.flush()
    assert s.handle(ManagerResults("stranger", ok(1), 1.0)) == []
    assert upstream(s.flush()) == []
    assert s.outstanding == 1


def test_late_results_from_a_lost_manager_are_ignored() -> None:
    s = scheduler(("m1", 2))
    submit(s, task(1))
    s.flush()
    s.handle(ManagerLeft("m1", "gone"))
    s.handle(ManagerResults("m1", ok(1), 1.0))
    assert upstream(s.flush()) == []
    assert s.status(1.0)["queued_tasks"] == 1


# --- hold, release, drain, commands -------------------------------------------------------------


def test_held_manager_gets_nothing_until_released() -> None:
    s = scheduler(("m1", 4))
    assert s.handle(ManagerCommanded("hold", "m1")) == []
    submit(s, task(1), task(2))
    assert task_batches(s.flush()) == {}
    assert s.status(0.0)["managers"][0]["held"] is True
    assert s.handle(ManagerCommanded("release", "m1")) == []
    assert task_batches(s.flush()) == {"m1": [1, 2]}


def test_held_manager_still_forwards_results() -> None:
    s = scheduler(("m1", 4))
    submit(s, task(1))
    s.flush()
    s.handle(ManagerCommanded("hold", "m1"))
    s.handle(ManagerResults("m1", ok(1), 1.0))
    [batch] = upstream(s.flush())
    assert batch.task_ids == [1]


def test_work_flows_to_other_managers_while_one_is_held() -> None:
    s = scheduler(("m1", 4), ("m2", 1))
    s.handle(ManagerCommanded("hold", "m1"))
    submit(s, task(1), task(2))
    assert task_batches(s.flush()) == {"m2": [1]}


def test_drain_sends_drain_and_stops_dispatch() -> None:
    s = scheduler(("m1", 4))
    submit(s, task(1))
    s.flush()
    actions = s.handle(ManagerCommanded("drain", "m1"))
    assert actions == [SendToManager("m1", Drain())]
    submit(s, task(2))
    assert task_batches(s.flush()) == {}
    assert s.status(0.0)["managers"][0]["draining"] is True
    s.handle(ManagerResults("m1", ok(1), 1.0))
    actions = s.flush()
    assert task_batches(actions) == {}
    assert [b.task_ids for b in upstream(actions)] == [[1]]


def test_release_does_not_undo_drain() -> None:
    s = scheduler(("m1", 4))
    s.handle(ManagerCommanded("drain", "m1"))
    s.handle(ManagerCommanded("release", "m1"))
    submit(s, task(1))
    assert task_batches(s.flush()) == {}


def test_unknown_manager_command_raises() -> None:
    s = scheduler(("m1", 4))
    with pytest.raises(ValueError, match="explode"):
        s.handle(ManagerCommanded("explode", "m1"))


def test_command_for_an_unknown_manager_raises() -> None:
    s = scheduler(("m1", 4))
    with pytest.raises(KeyError):
        s.handle(ManagerCommanded("hold", "nobody"))


def test_unknown_event_raises() -> None:
    with pytest.raises(TypeError):
        scheduler().handle(object())


# --- lost managers ------------------------------------------------------------------------------


def lost_manager_setup() -> tuple[Scheduler, list[Any]]:
    """m1 holds tasks a..d; b (retries 1) and c (retries 0) were handed to workers."""
    s = scheduler(("m1", 4))
    submit(s, task("a"), task("b", retries=1), task("c"), task("d"), task("queued-1"), task("queued-2"))
    assert task_batches(s.flush()) == {"m1": ["a", "b", "c", "d"]}
    s.handle(ManagerResults("m1", ok(started=["b", "c"]), 1.0))
    return s, ["a", "b", "c", "d"]


def check_lost_manager_outcome(s: Scheduler, actions: list[Any]) -> None:
    assert [a for a in actions if isinstance(a, ForgetManager)] == [ForgetManager("m1", actions[0].reason)]
    assert "m1" not in s.managers
    assert s.outstanding == 0
    assert s.status(2.0)["queued_tasks"] == 5
    # c had no retries left: it fails with ManagerLost, sent upstream on the next flush
    flushed = s.flush()
    [batch] = upstream(flushed)
    [(task_id, kind, payload)] = results_of(batch)
    assert (task_id, kind) == ("c", RESULT_TASK_ERROR)
    wire = task_error(payload)
    assert wire == {"error": "ManagerLost", "fields": {"task_id": "c", "manager_id": "m1", "hostname": "host-m1"}}
    error = TaskError.from_wire(wire)
    assert isinstance(error, ManagerLost)
    # a and d (never started) and b (retried) are back at the head of the queue
    s.handle(ManagerJoined(registration("m2", 10), 2.0))
    [sent] = [a.message for a in s.flush() if isinstance(a, SendToManager) and isinstance(a.message, TaskBatch)]
    assert [t.task_id for t in sent.tasks] == ["a", "b", "d", "queued-1", "queued-2"]
    retries = {t.task_id: t.retries for t in sent.tasks}
    assert retries == {"a": 0, "b": 0, "d": 0, "queued-1": 0, "queued-2": 0}


def test_silent_manager_expires_on_tick() -> None:
    s, _ = lost_manager_setup()
    assert s.handle(Tick(1.0 + THRESHOLD)) == []  # exactly at the threshold: still alive
    actions = s.handle(Tick(1.0 + THRESHOLD + 0.1))
    check_lost_manager_outcome(s, actions)


def test_manager_left_is_handled_like_expiry() -> None:
    s, _ = lost_manager_setup()
    actions = s.handle(ManagerLeft("m1", "node failure"))
    assert actions == [ForgetManager("m1", "node failure")]
    check_lost_manager_outcome(s, actions)


def test_any_message_keeps_a_manager_alive() -> None:
    s = scheduler(("m1", 2))
    s.handle(ManagerSeen("m1", 8.0))
    assert s.handle(Tick(8.0 + THRESHOLD)) == []
    s.handle(ManagerResults("m1", ok(), 15.0))
    assert s.handle(Tick(15.0 + THRESHOLD)) == []
    assert "m1" in s.managers
    assert [type(a) for a in s.handle(Tick(15.0 + THRESHOLD + 1))] == [ForgetManager]


def test_only_silent_managers_expire() -> None:
    s = scheduler(("m1", 2), ("m2", 2))
    s.handle(ManagerSeen("m2", 5.0))
    actions = s.handle(Tick(THRESHOLD + 1))
    assert [a.manager_id for a in actions if isinstance(a, ForgetManager)] == ["m1"]
    assert list(s.managers) == ["m2"]


def test_seen_for_an_unknown_manager_is_ignored() -> None:
    s = scheduler()
    assert s.handle(ManagerSeen("nobody", 1.0)) == []
    assert s.managers == {}


def test_lost_manager_without_tasks() -> None:
    s = scheduler(("m1", 2))
    assert s.handle(ManagerLeft("m1", "bye")) == [ForgetManager("m1", "bye")]
    assert s.flush() == []


def test_leaving_twice_or_unknown_manager_is_a_no_op() -> None:
    s = scheduler(("m1", 2))
    s.handle(ManagerLeft("m1", "bye"))
    assert s.handle(ManagerLeft("m1", "bye again")) == []
    assert s.handle(ManagerLeft("nobody", "?")) == []


def test_finished_tasks_are_not_requeued_when_a_manager_is_lost() -> None:
    s = scheduler(("m1", 3))
    submit(s, task(1), task(2), task(3))
    s.flush()
    s.handle(ManagerResults("m1", ok(1, 2, started=[1, 2, 3]), 1.0))
    s.flush()
    s.handle(ManagerLeft("m1", "gone"))
    [batch] = upstream(s.flush())
    assert batch.task_ids == [3]
    assert task_error(bytes(batch.payloads()[0]))["error"] == "ManagerLost"
    assert s.status(2.0)["queued_tasks"] == 0


def test_tasks_a_manager_handed_to_workers_count_as_started_when_it_is_lost() -> None:
    """Issue 12, item 14: a manager reports what it hands to its workers before they have
    it; killed before its workers' starts were reported, those tasks must not run again
    with no retries left. What it never handed out (its prefetch) goes back to the queue."""
    s = scheduler(("m1", 4))
    submit(s, task("running"), task("queued-at-worker"), task("retried", retries=1), task("prefetched"))
    s.flush()
    s.handle(ManagerResults("m1", ResultBatch(handed=["running", "queued-at-worker", "retried"]), 1.0))
    s.handle(Tick(1.0 + THRESHOLD + 1))  # killed: no goodbye, it just goes silent
    [batch] = upstream(s.flush())
    assert sorted(batch.task_ids) == ["queued-at-worker", "running"]
    assert {task_error(bytes(p))["error"] for p in batch.payloads()} == {"ManagerLost"}
    s.handle(ManagerJoined(registration("m2", 10), 2.0))
    assert {t.task_id: t.retries for m in messages_to(s.flush(), "m2") if isinstance(m, TaskBatch)
            for t in m.tasks} == {"retried": 0, "prefetched": 0}


def test_tasks_a_leaving_manager_says_no_worker_began_run_elsewhere() -> None:
    s = scheduler(("m1", 3))
    submit(s, task("began"), task("never-began"), task("finished"))
    s.flush()
    s.handle(ManagerResults("m1", ok("finished", started=["began"]), 1.0))
    s.handle(ManagerResults("m1", ResultBatch(handed=["began", "never-began"]), 1.0))
    [finished] = upstream(s.flush())
    assert finished.task_ids == ["finished"]
    s.handle(ManagerLeft("m1", "terminated by SIGTERM", unstarted=["never-began", "not-its-task"]))
    [lost] = upstream(s.flush())
    assert lost.task_ids == ["began"]  # no retries left: ManagerLost
    s.handle(ManagerJoined(registration("m2", 10), 2.0))
    assert task_batches(s.flush()) == {"m2": ["never-began"]}


def test_retry_budget_is_spent_one_loss_at_a_time() -> None:
    s = scheduler(("m1", 1))
    submit(s, task("t", retries=2))
    for loss in range(3):
        manager_id = f"m{loss + 1}"
        if loss:
            s.handle(ManagerJoined(registration(manager_id, 1), float(loss)))
        [sent] = [a.message for a in s.flush() if isinstance(a, SendToManager) and isinstance(a.message, TaskBatch)]
        assert sent.tasks[0].retries == 2 - loss
        s.handle(ManagerResults(manager_id, ok(started=["t"]), float(loss)))
        s.handle(ManagerLeft(manager_id, "lost"))
    [batch] = upstream(s.flush())
    assert batch.task_ids == ["t"]
    assert task_error(bytes(batch.payloads()[0]))["error"] == "ManagerLost"


def test_reregistered_manager_does_not_lose_its_tasks() -> None:
    """A manager that registers again under the same id (restart, reconnect) had tasks
    outstanding: they must be re-queued (or failed), never silently forgotten."""
    s = scheduler(("m1", 2))
    submit(s, task(1), task(2))
    s.flush()
    s.handle(ManagerJoined(registration("m1", 2), 5.0))
    s.flush()
    s.handle(ManagerLeft("m1", "gone"))
    s.handle(ManagerJoined(registration("m2", 10), 6.0))
    actions = s.flush()
    accounted = set(task_batches(actions).get("m2", [])) | {i for b in upstream(actions) for i in b.task_ids}
    assert accounted == {1, 2}


# --- cancellation ---------------------------------------------------------------------------------


def test_cancelled_tasks_leave_the_queue_and_are_reported() -> None:
    s = scheduler()
    submit(s, task(1), task(2, priority=3), task(3), task(4))
    assert s.handle(TasksCancelled([2, 3, "never-submitted"])) == []
    assert s.status(0.0)["queued_tasks"] == 2
    [batch] = upstream(s.flush())
    assert sorted(batch.task_ids) == [2, 3]
    for task_id, kind, payload in batch.results():
        assert kind == RESULT_TASK_ERROR
        wire = task_error(bytes(payload))
        assert wire == {"error": "TaskCancelled", "fields": {"task_id": task_id}}
        assert isinstance(TaskError.from_wire(wire), TaskCancelled)
    s.handle(ManagerJoined(registration("m1", 10), 1.0))
    assert task_batches(s.flush()) == {"m1": [1, 4]}


def test_cancelling_dispatched_tasks_does_nothing() -> None:
    s = scheduler(("m1", 1))
    submit(s, task(1), task(2))
    s.flush()
    s.handle(TasksCancelled([1]))
    assert upstream(s.flush()) == []
    assert s.outstanding == 1


def test_cancel_and_results_go_upstream_together() -> None:
    s = scheduler(("m1", 1))
    submit(s, task(1), task(2))
    s.flush()
    s.handle(TasksCancelled([2]))
    s.handle(ManagerResults("m1", ok(1), 1.0))
    [batch] = upstream(s.flush())
    assert sorted(batch.task_ids) == [1, 2]


# --- status ---------------------------------------------------------------------------------------


def test_status_counts() -> None:
    s = scheduler(("m1", 2), ("m2", 3), now=1.0)
    s.handle(FunctionsSubmitted(["f", "g"], [b"F", b"G"]))
    submit(s, *(task(i) for i in range(8)))
    s.flush()
    s.handle(ManagerCommanded("hold", "m2"))
    status = s.status(3.5)
    assert status["queued_tasks"] == 3
    assert status["outstanding_tasks"] == 5
    assert status["functions"] == 2
    summaries = {m["manager_id"]: m for m in status["managers"]}
    assert summaries["m1"]["capacity"] == 2
    assert summaries["m1"]["outstanding"] == 2
    assert summaries["m2"]["outstanding"] == 3
    assert summaries["m2"]["held"] is True
    assert summaries["m1"]["held"] is False
    assert summaries["m1"]["idle_seconds"] == 2.5
    assert summaries["m1"]["hostname"] == "host-m1"
    assert summaries["m1"]["workers"] == 2
    assert summaries["m1"]["draining"] is False


def test_status_of_an_empty_scheduler() -> None:
    assert scheduler().status(0.0) == {"managers": [], "queued_tasks": 0, "outstanding_tasks": 0, "functions": 0}


def test_status_is_msgpack_serializable() -> None:
    s = scheduler(("m1", 2))
    submit(s, task(1))
    s.flush()
    status = s.status(1.0)
    assert msgpack.unpackb(msgpack.packb(status, use_bin_type=True), raw=False) == status


def test_results_for_tasks_a_manager_does_not_hold_are_never_forwarded() -> None:
    """A confused or rogue manager must not resolve another manager's (or an answered) task."""
    s = scheduler(("m1", 10), ("m2", 10))
    submit(s, task(1), task(2))
    dispatched = task_batches(s.flush())
    owner_of_1 = next(m for m, ids in dispatched.items() if 1 in ids)
    other = "m2" if owner_of_1 == "m1" else "m1"
    s.handle(ManagerResults(other, ok(1, 99), 1.0))
    assert upstream(s.flush()) == []
    s.handle(ManagerResults(owner_of_1, ok(1), 1.0))
    s.handle(ManagerResults(owner_of_1, ok(1), 1.0))  # a duplicate answer
    [batch] = upstream(s.flush())
    assert batch.task_ids == [1]


def test_started_tasks_are_reported_upstream_only_when_asked() -> None:
    for report in (False, True):
        s = Scheduler(heartbeat_threshold=THRESHOLD, report_started=report)
        s.handle(ManagerJoined(registration("m1", 4), 0.0))
        submit(s, task(1), task(2), task(3))
        s.flush()
        s.handle(ManagerResults("m1", ResultBatch(started=[1, 2, 99]), 0.1))  # 99: not this manager's
        sent = upstream(s.flush())
        assert [b.started for b in sent] == ([[1, 2]] if report else [])
        s.handle(ManagerResults("m1", ResultBatch(started=[3]), 0.2))
        s.handle(ManagerResults("m1", ok(1, 3), 0.3))  # 3 finished before its start was reported: not reported
        sent = upstream(s.flush())
        assert [b.started for b in sent if not b.task_ids] == []
        assert [results_of(b) for b in sent if b.task_ids] == [[(1, RESULT_OK, b"result-1"),
                                                                (3, RESULT_OK, b"result-3")]]
