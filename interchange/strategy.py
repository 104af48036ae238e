"""The scaling strategy: how many blocks an endpoint holds, as a sans-IO state machine.

``Strategy.handle(event) -> list[action]`` never runs a command or touches a socket;
``interchange.scaling`` executes the actions (provider calls, holding managers) and
feeds back what happened. A *block* is one job of the provider (a batch job, a pod, a
local process) running one manager per node. Rules:

* ``Start`` submits ``init_blocks``. Every ``Load`` (the interchange's periodic snapshot
  of queued tasks and of each manager's outstanding tasks) recomputes the target:
  ``ceil(parallelism * active_tasks / (nodes_per_block * workers_per_node))`` blocks,
  within ``[min_blocks, max_blocks]``, and at least one while there is work.
* Scale out: blocks held for scale-in are released first; then new blocks are submitted,
  never more than ``max_blocks`` tracked at once (pending, running, draining or being
  cancelled: every job we submitted counts until the provider says it ended).
* Scale in: a block idle for ``max_idletime`` (no outstanding tasks; for a block whose
  managers have not registered yet, no queued tasks) beyond the target is taken back:
  a not-yet-connected job is cancelled at once (the newest first), a connected one is
  first *held* (its managers get no new tasks) and cancelled on a later ``Load`` once
  its managers hold no task. Nothing is ever forgotten: a block leaves the books only
  when the provider reports its job ended.
* Walltime: a running block is held (``draining``) ``drain_margin`` seconds before its
  walltime ends; its managers drain themselves at the same time (``ManagerConfig.drain_at``)
  and it is cancelled once they are gone. A replacement is submitted if work remains.
  A running block whose managers have all left (drained early, or lost) is cancelled too.
* Failures: a block whose submission fails, whose job ends before any manager registered,
  or whose job runs ``registration_timeout`` seconds without a manager registering is
  failed (reported with ``BlockFailed``). ``max_block_failures`` failures in a row put the
  strategy in an error state (``EnterError``; shown by ``status``): it submits nothing
  more until a manager registers again.
* ``BlockRetired`` (an operator drained the block's managers) removes the block for good:
  ``min_blocks`` and ``max_blocks`` drop by one.
* ``Stop`` cancels every job still tracked, and ones whose submission is still in flight
  as soon as their job id arrives.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from typing import Any

from fabric.sansio import assert_never
from interchange.providers.base import JobState, JobStatus

HISTORY = 20
"""How many ended blocks ``status`` remembers."""

WALLTIME_SLACK = 10.0
"""Managers drain by their job's own clock, which starts before the interchange sees the
job running: managers that leave this many seconds before the interchange's own drain
time are still taken to have drained for the walltime."""


class BlockState(enum.Enum):
    SUBMITTING = "submitting"  # the submit call is in flight; no job id yet
    PENDING = "pending"        # queued at the scheduler
    STARTING = "starting"      # the job runs; no manager registered yet
    RUNNING = "running"        # managers registered
    HELD = "held"              # being scaled in: its managers get no new tasks
    DRAINING = "draining"      # walltime near, or retired: managers finish and leave
    CANCELLING = "cancelling"  # cancel requested; waiting for the job to end


LIVE = frozenset({BlockState.SUBMITTING, BlockState.PENDING, BlockState.STARTING, BlockState.RUNNING})
"""States of blocks that count as capacity."""


@dataclasses.dataclass(slots=True, eq=False)
class Block:
    block_id: str
    state: BlockState
    submitted_at: float
    job_id: str | None = None
    job_state: JobState | None = None
    started_at: float | None = None
    registered: bool = False
    managers: dict[str, ManagerLoad] = dataclasses.field(default_factory=dict)
    retired: set[str] = dataclasses.field(default_factory=set)
    idle_since: float | None = None
    held_at: float | None = None
    cancel_sent: bool = False
    failed: bool = False
    message: str = ""

    @property
    def outstanding(self) -> int:
        return sum(m.outstanding for m in self.managers.values())

    def summary(self, now: float) -> dict[str, Any]:
        return {
            "block_id": self.block_id, "job_id": self.job_id, "state": self.state.value,
            "job_state": self.job_state.value if self.job_state else None, "managers": sorted(self.managers),
            "workers": sum(m.workers for m in self.managers.values()), "outstanding": self.outstanding,
            "age": round(now - self.submitted_at, 3), "message": self.message,
        }


# --- events ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ManagerLoad:
    """One registered manager in a ``Load`` snapshot."""

    manager_id: str
    block_id: str | None
    workers: int
    outstanding: int


@dataclasses.dataclass(slots=True)
class Start:
    now: float


@dataclasses.dataclass(slots=True)
class Load:
    now: float
    queued: int
    managers: list[ManagerLoad]


@dataclasses.dataclass(slots=True)
class BlockSubmitted:
    block_id: str
    job_id: str
    now: float


@dataclasses.dataclass(slots=True)
class BlockSubmitFailed:
    block_id: str
    message: str
    now: float


@dataclasses.dataclass(slots=True)
class JobsPolled:
    now: float
    statuses: dict[str, JobStatus]


@dataclasses.dataclass(slots=True)
class PollFailed:
    message: str
    now: float


@dataclasses.dataclass(slots=True)
class CancelFailed:
    block_ids: list[str]
    message: str


@dataclasses.dataclass(slots=True)
class ManagerRegistered:
    manager_id: str
    block_id: str | None
    workers: int
    now: float


@dataclasses.dataclass(slots=True)
class ManagerRetired:
    manager_id: str
    block_id: str | None


@dataclasses.dataclass(slots=True)
class Stop:
    now: float


# --- actions --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class SubmitBlock:
    block_id: str


@dataclasses.dataclass(slots=True)
class CancelBlocks:
    jobs: dict[str, str]  # block id -> job id


@dataclasses.dataclass(slots=True)
class PollJobs:
    job_ids: list[str]


@dataclasses.dataclass(slots=True)
class HoldManagers:
    block_id: str
    manager_ids: list[str]


@dataclasses.dataclass(slots=True)
class ReleaseManagers:
    block_id: str
    manager_ids: list[str]


@dataclasses.dataclass(slots=True)
class BlockFailed:
    block_id: str
    message: str


@dataclasses.dataclass(slots=True)
class BlockEnded:
    block_id: str
    message: str


@dataclasses.dataclass(slots=True)
class EnterError:
    message: str


Event = (Start | Load | BlockSubmitted | BlockSubmitFailed | JobsPolled | PollFailed | CancelFailed | ManagerRegistered
         | ManagerRetired | Stop)
"""Everything that may happen to the strategy (``fabric.sansio`` has the contract)."""
Action = (SubmitBlock | CancelBlocks | PollJobs | HoldManagers | ReleaseManagers | BlockFailed | BlockEnded
          | EnterError)
"""Everything the strategy may ask the interchange's scaling to do."""


class Strategy:
    """Decides when blocks are submitted, held and cancelled (see the module docstring)."""

    def __init__(self, *, init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1, parallelism: float = 1.0,
                 max_idletime: float = 120.0, nodes_per_block: int = 1, workers_per_node: int = 1,
                 walltime: float | None = None, drain_margin: float = 0.0, registration_timeout: float = 300.0,
                 max_block_failures: int = 3, poll_period: float = 10.0) -> None:
        self.init_blocks = min(init_blocks, max_blocks)
        self.min_blocks, self.max_blocks = min_blocks, max_blocks
        self.parallelism = parallelism
        self.max_idletime = max_idletime
        self.nodes_per_block = nodes_per_block
        self.slots_per_block = max(1, nodes_per_block * workers_per_node)
        self.walltime, self.drain_margin = walltime, drain_margin
        self.registration_timeout = registration_timeout
        self.max_block_failures = max_block_failures
        self.poll_period = poll_period
        self.blocks: dict[str, Block] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.failures = 0
        self.error: str | None = None
        self.stopped = False
        self.polling = False
        self.last_poll = -math.inf
        self._count = 0

    # -- what the I/O layer reads -------------------------------------------------------
    def status(self, now: float) -> dict[str, Any]:
        return {
            "blocks": [b.summary(now) for b in self.blocks.values()],
            "ended_blocks": list(self.history),
            "scaling_error": self.error,
        }

    # -- events ------------------------------------------------------------------------
    def handle(self, event: Event) -> list[Action]:
        match event:
            case Load(now, queued, managers):
                return self._on_load(now, queued, managers)
            case JobsPolled(now, statuses):
                self.polling = False
                return self._on_statuses(now, statuses)
            case ManagerRegistered(manager_id, block_id, workers, now):
                return self._on_registered(manager_id, block_id, workers, now)
            case BlockSubmitted(block_id, job_id, now):
                return self._on_submitted(block_id, job_id, now)
            case BlockSubmitFailed(block_id, message, now):
                block = self.blocks.pop(block_id, None)
                if block is None:
                    return []
                return self._fail(block, f"submission failed: {message}", now, ended=True)
            case PollFailed():
                self.polling = False
                return []
            case CancelFailed(block_ids, message):
                for block_id in block_ids:  # asked again on the next Load
                    if block_id in self.blocks:
                        self.blocks[block_id].cancel_sent = False
                        self.blocks[block_id].message = f"cancel failed: {message}"
                return []
            case ManagerRetired(manager_id, block_id):
                return self._on_retired(manager_id, block_id)
            case Start(now):
                return [self._submit(now) for _ in range(self.init_blocks)]
            case Stop(now):
                self.stopped = True
                return self._cancel([b for b in self.blocks.values() if b.job_id is not None and not b.cancel_sent])
            case _:
                assert_never(event)

    # -- internals ---------------------------------------------------------------------
    def _submit(self, now: float) -> SubmitBlock:
        self._count += 1
        block_id = f"b{self._count}"
        self.blocks[block_id] = Block(block_id=block_id, state=BlockState.SUBMITTING, submitted_at=now)
        return SubmitBlock(block_id)

    def _cancel(self, blocks: list[Block]) -> list[Action]:
        jobs = {}
        for block in blocks:
            block.state = BlockState.CANCELLING
            if block.job_id is not None:
                block.cancel_sent = True
                jobs[block.block_id] = block.job_id
        return [CancelBlocks(jobs)] if jobs else []

    def _fail(self, block: Block, message: str, now: float, *, ended: bool) -> list[Action]:
        """Count a failed block; ``ended``: its job is gone, else it is cancelled now."""
        block.failed, block.message = True, message
        self.failures += 1
        actions: list[Action] = [BlockFailed(block.block_id, message)]
        if ended:
            self._forget(block, now)
        else:
            actions += self._cancel([block])
        if self.failures >= self.max_block_failures and self.error is None:
            self.error = f"{self.failures} blocks failed in a row; the last: {block.block_id}: {message}"
            actions.append(EnterError(self.error))
        return actions

    def _forget(self, block: Block, now: float) -> None:
        self.blocks.pop(block.block_id, None)
        self.history.append(block.summary(now))

    def _on_submitted(self, block_id: str, job_id: str, now: float) -> list[Action]:
        block = self.blocks.get(block_id)
        if block is None:
            return []
        block.job_id = job_id
        if self.stopped or block.state is BlockState.CANCELLING:
            return self._cancel([block])
        if block.state is BlockState.SUBMITTING:
            block.state = BlockState.PENDING
        return []

    def _on_registered(self, manager_id: str, block_id: str | None, workers: int, now: float) -> list[Action]:
        block = self.blocks.get(block_id) if block_id is not None else None
        if block is None:
            return []
        block.managers.setdefault(manager_id, ManagerLoad(manager_id, block_id, workers, 0))
        if not block.registered:
            block.registered = True
            block.started_at = now if block.started_at is None else block.started_at
        self.failures = 0
        self.error = None
        if block.state in LIVE:
            block.state = BlockState.RUNNING
            return []
        return [HoldManagers(block.block_id, [manager_id])]  # a late manager of a block on its way out

    def _on_retired(self, manager_id: str, block_id: str | None) -> list[Action]:
        block = self.blocks.get(block_id) if block_id is not None else None
        if block is None:
            return []
        block.retired.add(manager_id)
        if len(block.retired) < self.nodes_per_block or block.state is BlockState.DRAINING:
            return []
        block.state, block.message = BlockState.DRAINING, "retired"
        self.min_blocks = max(0, self.min_blocks - 1)
        self.max_blocks = max(0, self.max_blocks - 1)
        return []

    def _on_statuses(self, now: float, statuses: dict[str, JobStatus]) -> list[Action]:
        actions: list[Action] = []
        for block in list(self.blocks.values()):
            status = statuses.get(block.job_id) if block.job_id is not None else None
            if status is None:
                continue
            block.job_state = status.state
            if status.state is JobState.RUNNING and block.started_at is None:
                block.started_at = now
                if block.state is BlockState.PENDING:
                    block.state = BlockState.STARTING
            if not status.state.terminal:
                continue
            detail = f" ({status.message})" if status.message else ""
            ended = f"job {block.job_id} ended: {status.state.value}{detail}"
            if block.failed:  # already counted when it was cancelled as failed
                self._forget(block, now)
            elif block.state in (BlockState.PENDING, BlockState.STARTING):
                actions += self._fail(block, f"{ended} before any manager registered", now, ended=True)
            else:
                expected = block.state in (BlockState.CANCELLING, BlockState.DRAINING)
                block.message = block.message if expected and block.message else ended
                self._forget(block, now)
                if not expected:
                    actions.append(BlockEnded(block.block_id, ended))
        return actions

    def _on_load(self, now: float, queued: int, managers: list[ManagerLoad]) -> list[Action]:
        self._update_managers(managers)
        actions = self._check_blocks(now, queued)
        if not self.stopped:
            actions += self._scale(now, queued)
        actions += self._give_back(now)
        if not self.polling and now - self.last_poll >= self.poll_period:
            job_ids = [b.job_id for b in self.blocks.values() if b.job_id is not None]
            if job_ids:
                self.polling, self.last_poll = True, now
                actions.append(PollJobs(job_ids))
        return actions

    def _update_managers(self, managers: list[ManagerLoad]) -> None:
        by_block: dict[str, dict[str, ManagerLoad]] = {}
        for load in managers:
            if load.block_id is not None:
                by_block.setdefault(load.block_id, {})[load.manager_id] = load
        for block in self.blocks.values():
            block.managers = by_block.get(block.block_id, {})

    def _check_blocks(self, now: float, queued: int) -> list[Action]:
        """Idle clocks, registration timeouts, walltime drains."""
        actions: list[Action] = []
        for block in list(self.blocks.values()):
            idle = block.outstanding == 0 if block.registered else queued == 0
            if not idle:
                block.idle_since = None
            elif block.idle_since is None:
                block.idle_since = now
            starting = block.started_at if block.state is BlockState.STARTING else None  # set when it started
            if starting is not None and now - starting > self.registration_timeout:
                actions += self._fail(block, f"no manager registered within {self.registration_timeout:g} s "
                                             f"of job {block.job_id} starting", now, ended=False)
            elif block.state is BlockState.RUNNING and not block.managers:  # drained, or lost: done
                near = self._drain_due(block, now + WALLTIME_SLACK)
                block.state, block.message = BlockState.DRAINING, "walltime: drained" if near else "its managers left"
            elif block.state is BlockState.RUNNING and self._drain_due(block, now):
                block.state, block.message = BlockState.DRAINING, "walltime: draining"
                actions.append(HoldManagers(block.block_id, sorted(block.managers)))
        return actions

    def _give_back(self, now: float) -> list[Action]:
        """Cancel held blocks that hold no task, drained blocks, and cancels that failed."""
        ready = []
        for block in self.blocks.values():
            if block.state is BlockState.HELD:
                ready.append(block.held_at is not None and now > block.held_at and block.outstanding == 0)
            elif block.state is BlockState.DRAINING:  # its managers are gone: give the allocation back
                ready.append(block.registered and not block.managers and not block.cancel_sent)
            else:  # a cancel that failed: ask again
                ready.append(block.state is BlockState.CANCELLING and not block.cancel_sent)
        return self._cancel([b for b, go in zip(list(self.blocks.values()), ready) if go and b.job_id is not None])

    def _drain_due(self, block: Block, now: float) -> bool:
        if self.walltime is None or block.started_at is None:
            return False
        return now >= block.started_at + self.walltime - self.drain_margin

    def target(self, queued: int) -> int:
        """How many live blocks the current load asks for."""
        active = queued + sum(b.outstanding for b in self.blocks.values() if b.state in LIVE)
        wanted = math.ceil(self.parallelism * active / self.slots_per_block)
        if active > 0:
            wanted = max(wanted, 1)
        return max(self.min_blocks, min(self.max_blocks, wanted))

    def _scale(self, now: float, queued: int) -> list[Action]:
        live = [b for b in self.blocks.values() if b.state in LIVE]
        target = self.target(queued)
        actions: list[Action] = []
        if target > len(live):
            missing = target - len(live)
            for block in [b for b in self.blocks.values() if b.state is BlockState.HELD][:missing]:
                block.state, block.held_at, block.idle_since = BlockState.RUNNING, None, None
                actions.append(ReleaseManagers(block.block_id, sorted(block.managers)))
                missing -= 1
            room = self.max_blocks - len(self.blocks)
            if self.error is None:
                actions += [self._submit(now) for _ in range(max(0, min(missing, room)))]
        elif target < len(live):
            idle = [b for b in live if b.idle_since is not None and now - b.idle_since >= self.max_idletime
                    and b.state is not BlockState.SUBMITTING]
            unconnected = sorted((b for b in idle if not b.registered), key=lambda b: -b.submitted_at)
            connected = sorted((b for b in idle if b.registered), key=lambda b: b.idle_since or 0.0)
            chosen = (unconnected + connected)[:len(live) - target]
            actions += self._cancel([b for b in chosen if not b.registered])
            for block in (b for b in chosen if b.registered):
                block.state, block.held_at = BlockState.HELD, now
                actions.append(HoldManagers(block.block_id, sorted(block.managers)))
        return actions
