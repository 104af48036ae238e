"""The manager's prefetch and worker bookkeeping, as a sans-IO state machine.

``ManagerScheduler.handle(event) -> list[action]`` never touches a socket or a process;
``manager.manager`` executes the actions. Rules:

* Tasks from the interchange wait in ``buffer`` (FIFO) until a worker has room.
* Each worker gets a queue of up to ``depth`` tasks (least loaded first, each at most a
  fair share of the buffer, so a few long tasks spread over all workers), sent in chunks of at most
  ``CHUNK``; ``depth`` follows the measured task duration (about ``TARGET_QUEUE_SECONDS``
  of work queued per worker, between ``MIN_DEPTH`` and ``MAX_DEPTH``), so tiny tasks are
  pipelined deeply and long ones stay balanced across workers.
* Results come back from a worker in the order its tasks were sent, so the head of a
  worker's queue is the task it is running; only those are reported as ``started``
  (tasks queued behind them go back to the interchange's queue if this manager is lost).
* A task with a walltime is sent alone, to an idle worker; past its deadline the worker
  is killed, the task fails with ``TaskTimeout`` and a fresh worker is started.
* A worker that dies: the task it was running is retried if it has retries left, else
  fails with ``WorkerLost``; the tasks queued behind it go back to the buffer.
* Capacity advertised to the interchange: ``workers + prefetch`` when prefetch is fixed,
  else twice the tasks the workers can have queued (``2 * workers * depth``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from typing import Any


from fabric.errors import TaskTimeout, WorkerLost
from fabric.protocol import MAX_BATCH_BYTES, ResultBatch, Task, task_error_result
from fabric.sansio import assert_never

CHUNK = 128
MIN_DEPTH = 2
MAX_DEPTH = 256
INITIAL_DEPTH = 16
TARGET_QUEUE_SECONDS = 0.01
STARTED_REPORT_DELAY = 0.005
"""Seconds that ``started`` ids may wait for a result batch to ride on before they are
reported on their own (short tasks then cost no extra message)."""



# --- events ---------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class TasksArrived:
    tasks: list[Task]


@dataclasses.dataclass(slots=True)
class WorkerStarted:
    worker_id: str


@dataclasses.dataclass(slots=True)
class WorkerResults:
    worker_id: str
    batch: ResultBatch


@dataclasses.dataclass(slots=True)
class WorkerDied:
    worker_id: str
    exit_code: int | None


@dataclasses.dataclass(slots=True)
class Tick:
    now: float


@dataclasses.dataclass(slots=True)
class DrainRequested:
    pass


# --- actions --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class SendTasks:
    worker_id: str
    tasks: list[Task]
    new_functions: list[str]


@dataclasses.dataclass(slots=True)
class StartWorker:
    index: int


@dataclasses.dataclass(slots=True)
class KillWorker:
    worker_id: str


@dataclasses.dataclass(slots=True)
class ReportResults:
    batch: ResultBatch


@dataclasses.dataclass(slots=True)
class Exit:
    reason: str


Event = TasksArrived | WorkerStarted | WorkerResults | WorkerDied | Tick | DrainRequested
"""Everything that may happen to the manager's scheduler (``fabric.sansio`` has the contract)."""
Action = SendTasks | StartWorker | KillWorker | ReportResults | Exit
"""Everything the scheduler may ask the manager to do."""


@dataclasses.dataclass(slots=True, eq=False)
class WorkerSlot:
    worker_id: str
    index: int
    ready: bool = False
    queue: deque[Task] = dataclasses.field(default_factory=deque)
    functions: set[str] = dataclasses.field(default_factory=set)
    deadline: float | None = None
    timed_out: bool = False


class ManagerScheduler:
    def __init__(self, *, workers: int, prefetch: int | None, hostname: str, now: float = 0.0,
                 batch_bytes: int = MAX_BATCH_BYTES) -> None:
        self.worker_count = workers
        self.batch_bytes = batch_bytes
        self.prefetch = prefetch
        self.hostname = hostname
        self.now = now
        self.buffer: deque[Task] = deque()
        self.slots: dict[str, WorkerSlot] = {}
        self.depth = INITIAL_DEPTH
        self.mean_task_seconds: float | None = None
        self.draining = False
        self._results: list[ResultBatch] = []
        self._started: list[Any] = []
        self._started_since = 0.0
        self._reported_capacity: int | None = None

    # -- bookkeeping the I/O layer reads ------------------------------------------
    @property
    def capacity(self) -> int:
        if self.prefetch is not None:
            return self.worker_count + self.prefetch
        return 2 * self.worker_count * self.depth

    @property
    def outstanding(self) -> int:
        return len(self.buffer) + sum(len(s.queue) for s in self.slots.values())

    def add_worker(self, worker_id: str, index: int) -> None:
        self.slots[worker_id] = WorkerSlot(worker_id=worker_id, index=index)

    # -- events ----------------------------------------------------------------------
    def handle(self, event: Event) -> list[Action]:
        match event:
            case TasksArrived(tasks):
                self.buffer.extend(tasks)
                return []
            case WorkerResults(worker_id, batch):
                return self._on_results(worker_id, batch)
            case WorkerStarted(worker_id):
                slot = self.slots.get(worker_id)
                if slot is not None:
                    slot.ready = True
                return []
            case WorkerDied(worker_id, exit_code):
                return self._on_worker_died(worker_id, exit_code)
            case Tick(now):
                self.now = now
                return self._expire_walltimes()
            case DrainRequested():
                self.draining = True
                return []
            case _:
                assert_never(event)

    def flush(self) -> list[Action]:
        """Hand buffered tasks to workers with room and report what finished."""
        actions: list[Action] = self._fill_workers()
        started_due = bool(self._started) and self.now - self._started_since >= STARTED_REPORT_DELAY
        if self._results or started_due:
            capacity = self.capacity
            batches = ResultBatch.merge_within(self._results, self.batch_bytes) if self._results else [ResultBatch()]
            batches[0] = dataclasses.replace(  # started ids before any of their results
                batches[0], started=self._started,
                capacity=capacity if capacity != self._reported_capacity else None)
            self._reported_capacity = capacity
            actions += [ReportResults(batch) for batch in batches]
            self._results, self._started = [], []
        if self.draining and self.outstanding == 0:
            actions.append(Exit("drained"))
        return actions

    def next_deadline(self) -> float | None:
        """When ``Tick`` must come next (walltimes, a due ``started`` report), if ever."""
        deadlines = [slot.deadline for slot in self.slots.values() if slot.deadline is not None]
        if self._started:
            deadlines.append(self._started_since + STARTED_REPORT_DELAY)
        return min(deadlines) if deadlines else None

    # -- internals -------------------------------------------------------------------
    def _on_results(self, worker_id: str, batch: ResultBatch) -> list[Action]:
        slot = self.slots.get(worker_id)
        if slot is None or slot.timed_out:  # a late message from a worker replaced or being killed
            return []
        queue = slot.queue
        for _ in range(min(len(batch), len(queue))):
            queue.popleft()
        slot.deadline = None
        self._results.append(batch)
        if queue:  # the worker moved on to the next task in its queue
            self._report_started(queue[0])
        if batch.task_ids:
            per_task = batch.elapsed / len(batch.task_ids)
            mean = self.mean_task_seconds
            self.mean_task_seconds = per_task if mean is None else 0.7 * mean + 0.3 * per_task
            wanted = TARGET_QUEUE_SECONDS / max(self.mean_task_seconds, 1e-7)
            self.depth = max(MIN_DEPTH, min(MAX_DEPTH, math.ceil(wanted)))
        return []

    def _report_started(self, task: Task) -> None:
        if not self._started:
            self._started_since = self.now
        self._started.append(task.task_id)

    def _fill_workers(self) -> list[Action]:
        actions: list[Action] = []
        buffer = self.buffer
        if not buffer:
            return actions
        # least loaded first, each taking at most a fair share of what is buffered
        open_slots = sorted((s for s in self.slots.values()
                             if s.ready and s.deadline is None and len(s.queue) < self.depth),
                            key=lambda s: len(s.queue))
        for position, slot in enumerate(open_slots):
            if not buffer:
                break
            share = math.ceil(len(buffer) / (len(open_slots) - position))
            room = min(self.depth - len(slot.queue), share)
            while room > 0 and buffer:
                walltime = buffer[0].walltime
                if walltime is not None:
                    if slot.queue:
                        break
                    chunk = [buffer.popleft()]
                    slot.deadline = self.now + walltime
                    room = 0
                else:
                    chunk = []
                    take, size = min(room, CHUNK), 0
                    while len(chunk) < take and buffer and buffer[0].walltime is None:
                        size += len(buffer[0].payload)
                        if chunk and size > self.batch_bytes:
                            break
                        chunk.append(buffer.popleft())
                    room -= len(chunk)
                if not slot.queue:  # an idle worker starts the first of these now
                    self._report_started(chunk[0])
                slot.queue.extend(chunk)
                new = {t.function_id for t in chunk} - slot.functions
                slot.functions |= new
                actions.append(SendTasks(slot.worker_id, chunk, sorted(new)))
        return actions

    def _on_worker_died(self, worker_id: str, exit_code: int | None) -> list[Action]:
        slot = self.slots.pop(worker_id, None)
        if slot is None:
            return []
        queue = slot.queue
        if queue and not slot.timed_out:
            running = queue.popleft()
            if running.retries > 0:
                queue.appendleft(running._replace(retries=running.retries - 1))
            else:
                error = WorkerLost(task_id=running.task_id, worker_id=worker_id,
                                   hostname=self.hostname, exit_code=exit_code)
                self._results.append(ResultBatch.build([task_error_result(running.task_id, error)]))
        self.buffer.extendleft(reversed(queue))
        return [] if self.draining and not self.buffer else [StartWorker(slot.index)]

    def _expire_walltimes(self) -> list[Action]:
        actions: list[Action] = []
        for slot in self.slots.values():
            if slot.deadline is None or slot.deadline > self.now or slot.timed_out:
                continue
            task = slot.queue.popleft()
            slot.timed_out = True
            error = TaskTimeout(task_id=task.task_id, walltime=task.walltime, hostname=self.hostname)
            self._results.append(ResultBatch.build([task_error_result(task.task_id, error)]))
            actions.append(KillWorker(slot.worker_id))
        return actions
