"""Socket-free unit tests: the scheduler's allow-list (``allowed_functions``).

A task whose function the endpoint does not allow is never queued nor sent to a manager;
it is answered at once with ``FunctionNotAllowed``, through the same path as every other
result. Bodies of such functions are not kept, and each refused function is logged once.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
import pytest

from fabric.errors import FunctionNotAllowed, TaskError
from fabric.protocol import (PROTOCOL_VERSION, RESULT_OK, RESULT_TASK_ERROR, FunctionDefinitions,
                             ManagerRegistration, ResultBatch, Task, TaskBatch)
from interchange.scheduler import (FunctionsSubmitted, ManagerJoined, ManagerResults, ResendResults, Scheduler,
                                   SendToManager, SendUpstream, TasksCancelled, TasksSubmitted)

ALLOWED = "a11owed"
OTHER = "0ther"


def registration(manager_id: str = "m", capacity: int = 10) -> ManagerRegistration:
    return ManagerRegistration(
        manager_id=manager_id, hostname="node", pid=1, cores=2, memory=2**30, accelerators=[], python_version="3.11",
        protocol_version=PROTOCOL_VERSION, worker_count=capacity, prefetch=0, capacity=capacity)


def task(task_id: Any, function_id: str = ALLOWED) -> Task:
    return Task(task_id, function_id, b"args-" + str(task_id).encode(), None, 0, 0)


def scheduler(allowed: list[str] | None = None, held: Any = ()) -> Scheduler:
    return Scheduler(heartbeat_threshold=10.0, held_results=held,
                     allowed_functions=None if allowed is None else frozenset(allowed))


def dispatched(actions: list[Any]) -> list[Any]:
    return [t.task_id for a in actions if isinstance(a, SendToManager) and isinstance(a.message, TaskBatch)
            for t in a.message.tasks]


def function_bodies(actions: list[Any]) -> list[str]:
    return [f for a in actions if isinstance(a, SendToManager) and isinstance(a.message, FunctionDefinitions)
            for f in a.message.function_ids]


def answers(actions: list[Any]) -> dict[Any, TaskError | bytes]:
    """Results sent upstream by task id: the task error, or an ok result's payload."""
    found: dict[Any, TaskError | bytes] = {}
    for action in actions:
        if isinstance(action, SendUpstream) and isinstance(action.message, ResultBatch):
            for task_id, kind, payload in action.message.results():
                assert task_id not in found, f"task {task_id} answered twice"
                if kind == RESULT_TASK_ERROR:
                    found[task_id] = TaskError.from_wire(msgpack.unpackb(bytes(payload), raw=False))
                else:
                    assert kind == RESULT_OK
                    found[task_id] = bytes(payload)
    return found


def refused(error: Any, task_id: Any, function_id: str) -> bool:
    return (isinstance(error, FunctionNotAllowed) and error.task_id == task_id
            and error.function_id == function_id)


def test_allowed_tasks_run_as_usual() -> None:
    s = scheduler([ALLOWED])
    s.handle(ManagerJoined(registration(), 0.0))
    s.handle(FunctionsSubmitted([ALLOWED], [b"body"]))
    assert s.handle(TasksSubmitted([task(1), task(2)])) == []
    actions = s.flush()
    assert function_bodies(actions) == [ALLOWED] and dispatched(actions) == [1, 2]
    assert answers(actions) == {} and s.refused == 0


def test_a_refused_task_is_answered_at_once_and_never_dispatched() -> None:
    s = scheduler([ALLOWED])  # no manager: nothing could run, the answer still comes
    assert s.handle(TasksSubmitted([task(7, OTHER)])) == []
    assert len(s.queue) == 0
    actions = s.flush()
    [(task_id, error)] = answers(actions).items()
    assert task_id == 7 and refused(error, 7, OTHER)
    assert str(error) == f"function {OTHER} is not allowed on this endpoint (task 7)"
    s.handle(ManagerJoined(registration(), 1.0))
    assert s.flush() == [] and s.refused == 1


def test_a_mixed_batch_runs_only_the_allowed_tasks() -> None:
    s = scheduler([ALLOWED, "also"])
    s.handle(ManagerJoined(registration(), 0.0))
    s.handle(TasksSubmitted([task(1), task(2, OTHER), task(3, "also"), task(4, "third"), task(5)]))
    actions = s.flush()
    assert dispatched(actions) == [1, 3, 5]
    found = answers(actions)
    assert sorted(found) == [2, 4]
    assert refused(found[2], 2, OTHER) and refused(found[4], 4, "third")
    s.handle(ManagerResults("m", ResultBatch.build([(i, RESULT_OK, b"ok") for i in (1, 3, 5)]), 1.0))
    assert answers(s.flush()) == {1: b"ok", 3: b"ok", 5: b"ok"}
    assert s.task_ids == set() and s.outstanding == 0


def test_an_empty_allow_list_refuses_everything() -> None:
    s = scheduler([])
    s.handle(ManagerJoined(registration(), 0.0))
    s.handle(TasksSubmitted([task(1), task(2, OTHER)]))
    actions = s.flush()
    assert dispatched(actions) == [] and sorted(answers(actions)) == [1, 2]


def test_without_a_list_any_function_runs() -> None:
    s = scheduler(None)
    s.handle(ManagerJoined(registration(), 0.0))
    s.handle(FunctionsSubmitted([OTHER], [b"body"]))
    s.handle(TasksSubmitted([task(1), task(2, OTHER)]))
    actions = s.flush()
    assert dispatched(actions) == [1, 2] and function_bodies(actions) == [OTHER] and answers(actions) == {}


def test_bodies_of_refused_functions_are_neither_kept_nor_forwarded() -> None:
    s = scheduler([ALLOWED])
    s.handle(FunctionsSubmitted([OTHER, ALLOWED], [b"other body", b"allowed body"]))
    assert s.functions == {ALLOWED: b"allowed body"}
    s.handle(ManagerJoined(registration(), 0.0))
    s.handle(TasksSubmitted([task(1, OTHER), task(2)]))
    actions = s.flush()
    assert function_bodies(actions) == [ALLOWED] and dispatched(actions) == [2]
    assert all(b"other body" not in bytes(frame) for a in actions if isinstance(a, SendToManager)
               for frame in a.message.to_frames())


def test_a_repeated_refused_id_is_answered_once() -> None:
    s = scheduler([ALLOWED])
    s.handle(TasksSubmitted([task(1, OTHER), task(1, OTHER), task(2)]))
    s.handle(TasksSubmitted([task(1, OTHER)]))  # again before the answer left (same loop turn)
    assert s.duplicates == 2
    actions = s.flush()
    assert list(answers(actions)) == [1]
    assert s.task_ids == {2}  # the refused id is forgotten once answered; the queued one stays known


def test_a_refused_task_sent_again_gets_its_held_answer_again() -> None:
    held: set[Any] = set()
    s = scheduler([ALLOWED], held)
    s.handle(TasksSubmitted([task("x", OTHER)]))
    held.update(answers(s.flush()))  # as the interchange's spool holds what went upstream
    assert s.handle(TasksSubmitted([task("x", OTHER), task("y")])) == [ResendResults(["x"])]
    assert answers(s.flush()) == {} and s.refused == 1 and list(s.queue.pop(10)) == [task("y")]


def test_a_refused_task_sent_again_after_its_answer_was_acknowledged_is_refused_again() -> None:
    s = scheduler([ALLOWED])
    s.handle(TasksSubmitted([task(1, OTHER)]))
    assert list(answers(s.flush())) == [1]
    s.handle(TasksSubmitted([task(1, OTHER)]))
    assert list(answers(s.flush())) == [1] and s.refused == 2


def test_duplicates_of_allowed_tasks_are_handled_as_without_a_list() -> None:
    s = scheduler([ALLOWED], held={"held"})
    s.handle(ManagerJoined(registration(capacity=1), 0.0))
    s.handle(TasksSubmitted([task("a"), task("b")]))
    assert dispatched(s.flush()) == ["a"]
    actions = s.handle(TasksSubmitted([task("a"), task("b"), task("held"), task("c", OTHER)]))
    assert actions == [ResendResults(["held"])] and s.duplicates == 3
    actions = s.flush()
    assert dispatched(actions) == [] and list(answers(actions)) == ["c"]


def test_cancelling_a_refused_task_adds_no_second_answer() -> None:
    s = scheduler([ALLOWED])
    s.handle(TasksSubmitted([task(1, OTHER), task(2)]))
    s.handle(TasksCancelled([1, 2]))
    found = answers(s.flush())
    assert sorted(found) == [1, 2] and refused(found[1], 1, OTHER)


def test_each_refused_function_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    s = scheduler([ALLOWED])
    with caplog.at_level(logging.WARNING, logger="interchange.scheduler"):
        s.handle(TasksSubmitted([task(i, OTHER) for i in range(50)] + [task(50, "third")]))
        s.handle(TasksSubmitted([task(i, OTHER) for i in range(51, 100)]))
        s.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and OTHER in lines[0] and "third" in lines[1], lines
    assert s.refused == 100
