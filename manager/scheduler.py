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
  (what the service shows). Every task handed to a worker is first reported as
  ``handed``: the report leaves before the ``SendTasks`` that carries it, so if this
  manager is lost the interchange counts it as started (tasks still in ``buffer`` go back
  to the interchange's queue).
* A worker counts the tasks it begins (``WorkerDied.began``, read from memory it shares
  with its manager), so a lost worker's tasks split exactly into those it began (retried
  while ``retries`` last, else ``WorkerLost``) and those it never began (back to the
  buffer).
* ``StopRequested`` (the manager is leaving): nothing more is handed out; the buffer and
  every task a stopped worker never began become ``unstarted``, for the goodbye.
* A task with a walltime is sent alone, to an idle worker; past its deadline the worker
  is killed, the task fails with ``TaskTimeout`` and a fresh worker is started.
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

CHUNK = 128
MIN_DEPTH = 2
MAX_DEPTH = 256
INITIAL_DEPTH = 16
TARGET_QUEUE_SECONDS = 0.01



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
    """``began``: how many tasks the worker began in its life (None: unknown, then the
    head of its queue is taken for the one it was running)."""

    worker_id: str
    exit_code: int | None
    began: int | None = None


@dataclasses.dataclass(slots=True)
class Tick:
    now: float


@dataclasses.dataclass(slots=True)
class DrainRequested:
    pass


@dataclasses.dataclass(slots=True)
class StopRequested:
    """The manager leaves: hand out nothing more; what never started is ``unstarted``."""


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


Action = SendTasks | StartWorker | KillWorker | ReportResults | Exit


@dataclasses.dataclass(slots=True, eq=False)
class WorkerSlot:
    worker_id: str
    index: int
    ready: bool = False
    queue: deque[Task] = dataclasses.field(default_factory=deque)
    functions: set[str] = dataclasses.field(default_factory=set)
    deadline: float | None = None
    timed_out: bool = False
    sent: int = 0  # tasks ever sent to this worker (the queue holds the last of them)


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
        self.stopping = False
        self.unstarted: list[Any] = []  # task ids given to this manager that will never start here
        self._handed: list[Any] = []
        self._results: list[ResultBatch] = []
        self._started: list[Any] = []
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
    def handle(self, event: object) -> list[Action]:
        match event:
            case TasksArrived(tasks):
                if self.stopping:
                    self.unstarted += [t.task_id for t in tasks]
                else:
                    self.buffer.extend(tasks)
                return []
            case WorkerResults(worker_id, batch):
                return self._on_results(worker_id, batch)
            case WorkerStarted(worker_id):
                slot = self.slots.get(worker_id)
                if slot is not None:
                    slot.ready = True
                return []
            case WorkerDied(worker_id, exit_code, began):
                return self._on_worker_died(worker_id, exit_code, began)
            case Tick(now):
                self.now = now
                return self._expire_walltimes()
            case DrainRequested():
                self.draining = True
                return []
            case StopRequested():
                self.stopping = True
                self.unstarted += [t.task_id for t in self.buffer]
                self.buffer.clear()
                return []
        raise TypeError(f"unknown event {event!r}")

    def flush(self) -> list[Action]:
        """Report what finished and what is handed out now, then hand buffered tasks to
        workers with room (the report goes first: see ``ResultBatch.handed``)."""
        handouts = self._fill_workers()
        actions: list[Action] = []
        if self._results or self._handed:  # ``started`` ids always come with one of these
            capacity = self.capacity
            batches = ResultBatch.merge_within(self._results, self.batch_bytes) if self._results else [ResultBatch()]
            batches[0] = dataclasses.replace(  # started ids before any of their results
                batches[0], started=self._started, handed=self._handed,
                capacity=capacity if capacity != self._reported_capacity else None)
            self._reported_capacity = capacity
            actions += [ReportResults(batch) for batch in batches]
            self._results, self._started, self._handed = [], [], []
        actions += handouts
        if self.draining and self.outstanding == 0:
            actions.append(Exit("drained"))
        return actions

    def next_deadline(self) -> float | None:
        """When ``Tick`` must come next (a task's walltime), if ever."""
        deadlines = [slot.deadline for slot in self.slots.values() if slot.deadline is not None]
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
        self._started.append(task.task_id)

    def _fill_workers(self) -> list[Action]:
        actions: list[Action] = []
        buffer = self.buffer
        if not buffer or self.stopping:
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
                if buffer[0].walltime is not None:
                    if slot.queue:
                        break
                    chunk = [buffer.popleft()]
                    slot.deadline = self.now + chunk[0].walltime  # type: ignore[operator]
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
                slot.sent += len(chunk)
                self._handed += [t.task_id for t in chunk]
                new = {t.function_id for t in chunk} - slot.functions
                slot.functions |= new
                actions.append(SendTasks(slot.worker_id, chunk, sorted(new)))
        return actions

    def _on_worker_died(self, worker_id: str, exit_code: int | None, began: int | None) -> list[Action]:
        slot = self.slots.pop(worker_id, None)
        if slot is None:
            return []
        queue = slot.queue
        if slot.timed_out:  # its task already failed with TaskTimeout; it ran alone
            began_here = 0
        elif began is None:  # unknown: the head is taken for the one it was running
            began_here = min(1, len(queue))
        else:  # the queue holds the last len(queue) tasks sent, in order
            began_here = max(0, min(len(queue), began - (slot.sent - len(queue))))
        started = [queue.popleft() for _ in range(began_here)]
        if self.stopping:  # leaving: the started ones are the interchange's to retry or fail
            self.unstarted += [t.task_id for t in queue]
            return []
        retried = []
        for task in started:
            if task.retries > 0:
                retried.append(task._replace(retries=task.retries - 1))
            else:
                error = WorkerLost(task_id=task.task_id, worker_id=worker_id,
                                   hostname=self.hostname, exit_code=exit_code)
                self._results.append(ResultBatch.build([task_error_result(task.task_id, error)]))
        self.buffer.extendleft(reversed([*retried, *queue]))
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
