"""The interchange's dispatch logic, as a sans-IO state machine.

``Scheduler.handle(event) -> list[action]`` records what happened; ``flush()`` then
decides what to send, once per loop turn, so everything that arrived together leaves
together (opportunistic batching, no timers). Rules:

* Queued tasks leave FIFO within a priority, higher priorities first.
* A manager has ``capacity`` task slots; each flush fills every manager's free slots
  with one batch, so dispatch happens the moment results free capacity.
* A function body goes to each manager once, just before the first task that uses it.
* Held and draining managers get nothing new.
* Any message from a manager counts as liveness; ``Tick`` expires managers silent for
  longer than ``heartbeat_threshold``. A manager reports the tasks it hands to a worker
  (``ResultBatch.handed``) before the worker has them, and those count as started. A lost
  manager's tasks that it never handed to a worker, or that it said in its goodbye no
  worker began (``ManagerLeft.unstarted``), go back to the queue; the others are retried
  while their retry budget lasts, else they fail with ``ManagerLost``: a task with no
  retries left is never run twice.
* Task ids are unique: the service re-sends unfinished tasks on every new connection, so
  a submitted task the scheduler already holds (queued, or at a manager) is ignored, and
  one whose result waits for the service's acknowledgement (``held_results``) is not run
  again: ``ResendResults`` asks for that result to be sent once more.
* With ``allowed_functions`` (the endpoint's allow-list), a task of any other function is
  never queued: it is answered at once with ``FunctionNotAllowed``, and the bodies of such
  functions are not kept. Its id counts as known until the next ``flush`` sends that
  answer (after which, in service mode, the held result answers a re-sent task).
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from collections import deque
from collections.abc import Container, Iterable
from typing import Any

from fabric.errors import FunctionNotAllowed, ManagerLost, TaskCancelled
from fabric.protocol import (MAX_BATCH_BYTES, MAX_BATCH_TASKS, Drain, FunctionDefinitions, ManagerRegistration,
                             Message, ResultBatch, Task, TaskBatch, batches_of, task_error_result)

logger = logging.getLogger(__name__)

MAX_REFUSED_FUNCTIONS = 10_000
"""Refused function ids remembered (each is logged once); beyond it the memory starts again."""

_function_id = operator.attrgetter("function_id")


def _without(batch: ResultBatch, positions: set[int]) -> ResultBatch:
    """``batch`` less the results at ``positions``."""
    kept = [r for i, r in enumerate(batch.results()) if i not in positions]
    return ResultBatch.build(kept)



class TaskQueue:
    """FIFO per priority; ``pop`` takes from the highest priority first."""

    def __init__(self) -> None:
        self._queues: dict[int, deque[Task]] = {}
        self._priorities: list[int] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _queue(self, priority: int) -> deque[Task]:
        queue = self._queues.get(priority)
        if queue is None:
            queue = self._queues[priority] = deque()
            self._priorities = sorted(self._queues, reverse=True)
        return queue

    def extend(self, tasks: list[Task]) -> None:
        if tasks and all(t.priority == tasks[0].priority for t in tasks):
            self._queue(tasks[0].priority).extend(tasks)
        else:
            for task in tasks:
                self._queue(task.priority).append(task)
        self._size += len(tasks)

    def push_front(self, tasks: list[Task]) -> None:
        """Put tasks back at the head of their priority (re-queued after a loss)."""
        for task in reversed(tasks):
            self._queue(task.priority).appendleft(task)
        self._size += len(tasks)

    def pop(self, count: int) -> list[Task]:
        taken: list[Task] = []
        for priority in self._priorities:
            queue = self._queues[priority]
            while queue and len(taken) < count:
                taken.append(queue.popleft())
            if len(taken) >= count:
                break
        self._size -= len(taken)
        return taken

    def remove(self, task_ids: set[Any]) -> list[Task]:
        removed: list[Task] = []
        for priority, queue in self._queues.items():
            kept = deque(t for t in queue if t.task_id not in task_ids)
            removed += [t for t in queue if t.task_id in task_ids]
            self._queues[priority] = kept
        self._size -= len(removed)
        return removed


@dataclasses.dataclass(slots=True, eq=False)
class ManagerState:
    registration: ManagerRegistration
    capacity: int
    last_seen: float
    outstanding: dict[Any, Task] = dataclasses.field(default_factory=dict)
    started: set[Any] = dataclasses.field(default_factory=set)
    functions: set[str] = dataclasses.field(default_factory=set)
    held: bool = False
    draining: bool = False

    @property
    def free(self) -> int:
        if self.held or self.draining:
            return 0
        return self.capacity - len(self.outstanding)

    def summary(self, now: float) -> dict[str, Any]:
        r = self.registration
        return {
            "manager_id": r.manager_id, "hostname": r.hostname, "pid": r.pid, "workers": r.worker_count,
            "capacity": self.capacity, "outstanding": len(self.outstanding), "cores": r.cores,
            "memory": r.memory, "accelerators": r.accelerators, "python_version": r.python_version,
            "block_id": r.block_id,
            "held": self.held, "draining": self.draining, "idle_seconds": round(now - self.last_seen, 3),
        }


# --- events ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ManagerJoined:
    registration: ManagerRegistration
    now: float


@dataclasses.dataclass(slots=True)
class ManagerSeen:
    manager_id: str
    now: float


@dataclasses.dataclass(slots=True)
class ManagerResults:
    manager_id: str
    batch: ResultBatch
    now: float


@dataclasses.dataclass(slots=True)
class ManagerLeft:
    manager_id: str
    reason: str
    unstarted: list[Any] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class TasksSubmitted:
    tasks: list[Task]


@dataclasses.dataclass(slots=True)
class FunctionsSubmitted:
    function_ids: list[str]
    bodies: list[Any]


@dataclasses.dataclass(slots=True)
class TasksCancelled:
    task_ids: list[Any]


@dataclasses.dataclass(slots=True)
class ManagerCommanded:
    action: str  # "drain" | "hold" | "release"
    manager_id: str


@dataclasses.dataclass(slots=True)
class Tick:
    now: float


# --- actions --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class SendToManager:
    manager_id: str
    message: Message


@dataclasses.dataclass(slots=True)
class SendUpstream:
    message: Message


@dataclasses.dataclass(slots=True)
class ForgetManager:
    manager_id: str
    reason: str


@dataclasses.dataclass(slots=True)
class ResendResults:
    """These tasks were submitted again, but their results are held: send those once more."""

    task_ids: list[Any]


Action = SendToManager | SendUpstream | ForgetManager | ResendResults


class Scheduler:
    """``held_results`` answers whether a task's result waits for its acknowledgement
    (the interchange's result spool; empty for a local upstream, which never acknowledges).
    ``allowed_functions``: the only function ids whose tasks may run (None: any)."""

    def __init__(self, *, heartbeat_threshold: float, batch_bytes: int = MAX_BATCH_BYTES,
                 held_results: Container[Any] = (), report_started: bool = False,
                 allowed_functions: Iterable[str] | None = None) -> None:
        self.heartbeat_threshold = heartbeat_threshold
        self.report_started = report_started  # forward which tasks began running (the service shows it)
        self._started: list[Any] = []
        self.batch_bytes = batch_bytes
        self.held_results = held_results
        self.task_ids: set[Any] = set()  # every task queued or at a manager
        self.duplicates = 0
        self.queue = TaskQueue()
        self.functions: dict[str, Any] = {}
        self.managers: dict[str, ManagerState] = {}
        self._results: list[ResultBatch] = []
        self.allowed_functions = None if allowed_functions is None else frozenset(allowed_functions)
        self.refused = 0  # tasks answered with FunctionNotAllowed
        self.refused_functions: set[str] = set()
        self._answered: list[Any] = []  # refused task ids, known until the next flush sends their results

    @property
    def outstanding(self) -> int:
        return sum(len(m.outstanding) for m in self.managers.values())

    def handle(self, event: object) -> list[Action]:
        match event:
            case TasksSubmitted(tasks):
                return self._submit(tasks)
            case ManagerResults(manager_id, batch, now):
                self._on_results(manager_id, batch, now)
            case ManagerSeen(manager_id, now):
                manager = self.managers.get(manager_id)
                if manager is not None:
                    manager.last_seen = now
            case FunctionsSubmitted(function_ids, bodies):
                self._add_functions(function_ids, bodies)
            case ManagerJoined(registration, now):
                actions = self._lose(registration.manager_id, "registered again")
                self.managers[registration.manager_id] = ManagerState(
                    registration=registration, capacity=max(1, registration.capacity), last_seen=now)
                return actions
            case ManagerLeft(manager_id, reason, unstarted):
                return self._lose(manager_id, reason, unstarted)
            case Tick(now):
                return self._expire(now)
            case TasksCancelled(task_ids):
                self._cancel(task_ids)
            case ManagerCommanded(action, manager_id):
                return self._command(action, manager_id)
            case _:
                raise TypeError(f"unknown event {event!r}")
        return []

    def flush(self) -> list[Action]:
        """Dispatch queued tasks to free capacity; forward finished results upstream."""
        actions: list[Action] = []
        if self._answered:
            self.task_ids.difference_update(self._answered)
            self._answered = []
        if self.queue:
            for manager in sorted(self.managers.values(), key=lambda m: -m.free):
                free = manager.free
                if free <= 0 or not self.queue:
                    break
                actions += self._dispatch(manager, self.queue.pop(min(free, MAX_BATCH_TASKS)))
        if self._started:  # those finished meanwhile: their results say it all (one store write less each)
            started = [task_id for task_id in self._started if task_id in self.task_ids]
            if started:
                actions.append(SendUpstream(ResultBatch(started=started)))
            self._started = []
        if self._results:
            for batch in ResultBatch.merge_within(self._results, self.batch_bytes):
                actions.append(SendUpstream(ResultBatch(batch.task_ids, batch.kinds, batch.sizes, batch.blob)))
            self._results = []
        return actions

    def _submit(self, tasks: list[Task]) -> list[Action]:
        known, held = self.task_ids, self.held_results
        ids = [t.task_id for t in tasks]
        if known.isdisjoint(ids):  # the usual case, checked in bulk
            size = len(known)
            known.update(ids)
            if len(known) - size == len(ids) and not (held and any(i in held for i in ids)):
                self._enqueue(tasks)
                return []
            known.difference_update(ids)
        fresh: list[Task] = []
        answered: dict[Any, None] = {}
        for task in tasks:
            task_id = task.task_id
            if task_id in known or task_id in answered:
                self.duplicates += 1
            elif task_id in held:
                self.duplicates += 1
                answered[task_id] = None
            else:
                known.add(task_id)
                fresh.append(task)
        self._enqueue(fresh)
        return [ResendResults(list(answered))] if answered else []

    def _enqueue(self, tasks: list[Task]) -> None:
        """Queue newly known tasks, less those the allow-list refuses (answered instead)."""
        allowed = self.allowed_functions
        if allowed is not None and not allowed.issuperset(map(_function_id, tasks)):
            self._refuse([t for t in tasks if t.function_id not in allowed])
            tasks = [t for t in tasks if t.function_id in allowed]
        self.queue.extend(tasks)

    def _refuse(self, tasks: list[Task]) -> None:
        new = [f for f in dict.fromkeys(t.function_id for t in tasks) if f not in self.refused_functions]
        if len(self.refused_functions) + len(new) > MAX_REFUSED_FUNCTIONS:
            self.refused_functions.clear()
        for function_id in new:
            logger.warning("refusing the tasks of function %s: not in this endpoint's allowed_functions",
                           function_id)
        self.refused_functions.update(new)
        self.refused += len(tasks)
        self._answered += [t.task_id for t in tasks]
        self._results.append(ResultBatch.build([
            task_error_result(t.task_id, FunctionNotAllowed(task_id=t.task_id, function_id=t.function_id))
            for t in tasks]))

    def _add_functions(self, function_ids: list[str], bodies: list[Any]) -> None:
        """Keep function bodies for the managers; never those the allow-list refuses."""
        allowed = self.allowed_functions
        if allowed is None:
            self.functions.update(zip(function_ids, bodies))
        else:
            self.functions.update((f, body) for f, body in zip(function_ids, bodies) if f in allowed)

    def _dispatch(self, manager: ManagerState, tasks: list[Task]) -> list[Action]:
        manager_id = manager.registration.manager_id
        actions: list[Action] = []
        new = {t.function_id for t in tasks} - manager.functions
        known = sorted(f for f in new if f in self.functions)
        manager.functions.update(known)
        actions += [SendToManager(manager_id, FunctionDefinitions([f], [self.functions[f]])) for f in known]
        manager.outstanding.update(zip([t.task_id for t in tasks], tasks))
        actions += [SendToManager(manager_id, TaskBatch(batch)) for batch in batches_of(tasks, max_bytes=self.batch_bytes)]
        return actions

    def _on_results(self, manager_id: str, batch: ResultBatch, now: float) -> None:
        manager = self.managers.get(manager_id)
        if manager is None:  # a manager we already gave up on: its tasks were re-queued
            return
        manager.last_seen = now
        if batch.capacity is not None:
            manager.capacity = max(1, batch.capacity)
        started, outstanding = manager.started, manager.outstanding
        if batch.handed:  # possibly started from now on
            started.update(batch.handed)
        if batch.started:
            started.update(batch.started)
            if self.report_started:
                self._started += [task_id for task_id in batch.started if task_id in outstanding]
        if batch.task_ids:
            unknown = [i for i, task_id in enumerate(batch.task_ids) if outstanding.pop(task_id, None) is None]
            if unknown:  # not this manager's tasks (or already answered): never forward those
                batch = _without(batch, set(unknown))
            started.difference_update(batch.task_ids)
            self.task_ids.difference_update(batch.task_ids)
            if batch.task_ids:
                self._results.append(batch)

    def _lose(self, manager_id: str, reason: str, unstarted: Iterable[Any] = ()) -> list[Action]:
        manager = self.managers.pop(manager_id, None)
        if manager is None:
            return []
        started = manager.started.difference(unstarted)
        requeue, failed = [], []
        for task_id, task in manager.outstanding.items():
            if task_id not in started:
                requeue.append(task)
            elif task.retries > 0:
                requeue.append(task._replace(retries=task.retries - 1))
            else:
                error = ManagerLost(task_id=task_id, manager_id=manager_id, hostname=manager.registration.hostname)
                failed.append(task_error_result(task_id, error))
                self.task_ids.discard(task_id)
        self.queue.push_front(requeue)
        if failed:
            self._results.append(ResultBatch.build(failed))
        return [ForgetManager(manager_id, reason)]

    def _expire(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for manager_id, manager in list(self.managers.items()):
            silent = now - manager.last_seen
            if silent > self.heartbeat_threshold:
                actions += self._lose(manager_id, f"no message for {silent:.1f} s")
        return actions

    def _cancel(self, task_ids: list[Any]) -> None:
        removed = self.queue.remove(set(task_ids))
        self.task_ids.difference_update(t.task_id for t in removed)
        if removed:
            self._results.append(ResultBatch.build(
                [task_error_result(t.task_id, TaskCancelled(task_id=t.task_id)) for t in removed]))

    def _command(self, action: str, manager_id: str) -> list[Action]:
        manager = self.managers.get(manager_id)
        if manager is None:
            raise KeyError(manager_id)
        if action == "hold":
            manager.held = True
        elif action == "release":
            manager.held = False
        elif action == "drain":
            manager.draining = True
            return [SendToManager(manager_id, Drain())]
        else:
            raise ValueError(f"unknown manager action {action!r}")
        return []

    def status(self, now: float) -> dict[str, Any]:
        return {
            "managers": [m.summary(now) for m in self.managers.values()],
            "queued_tasks": len(self.queue),
            "outstanding_tasks": self.outstanding,
            "functions": len(self.functions),
        }
