"""The I/O half of scaling: runs the ``Strategy``'s actions for the interchange.

``Scaling`` owns the provider and the strategy. Every ``strategy_period`` seconds
``tick`` feeds the strategy what finished since (submissions, job states, cancels) and a
``Load`` snapshot of the scheduler, then carries out what it decided: provider calls
(on one background thread for batch schedulers, so a slow ``sbatch`` never stalls the
interchange's loop; inline for the local provider) and holding or releasing managers
in the scheduler. ``stop`` cancels every block still tracked before the interchange exits.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fabric.config import InterchangeConfig, ProviderConfig
from fabric.protocol import ManagerRegistration
from fabric.sansio import assert_never
from interchange.manager_keys import ManagerKeys
from interchange.providers.base import Provider
from interchange.providers.kubernetes import KubernetesProvider
from interchange.providers.launchers import block_command
from interchange.providers.local import LocalProvider
from interchange.providers.pbspro import PBSProProvider
from interchange.providers.slurm import SlurmProvider
from interchange import scheduler as scheduler_actions
from interchange.scheduler import ManagerCommanded, Scheduler
from interchange.strategy import (Action, BlockEnded, BlockFailed, BlockSubmitFailed, BlockSubmitted, CancelBlocks,
                                  CancelFailed, Event, EnterError, HoldManagers, JobsPolled, Load, ManagerLoad,
                                  ManagerRegistered, ManagerRetired, PollFailed, PollJobs, ReleaseManagers, Start,
                                  Stop, Strategy, SubmitBlock)

logger = logging.getLogger(__name__)

PROVIDERS: dict[str, type[Provider]] = {
    "local": LocalProvider, "slurm": SlurmProvider, "pbspro": PBSProProvider, "kubernetes": KubernetesProvider,
}


def make_provider(config: ProviderConfig, label: str) -> Provider:
    return PROVIDERS[config.kind](config, label=label)


def make_strategy(config: InterchangeConfig, poll_period: float) -> Strategy:
    scaling, provider = config.scaling_settings, config.provider
    return Strategy(
        init_blocks=scaling.init_blocks, min_blocks=scaling.min_blocks, max_blocks=scaling.max_blocks,
        parallelism=scaling.parallelism, max_idletime=scaling.max_idletime, nodes_per_block=provider.nodes_per_block,
        workers_per_node=config.workers_per_manager, walltime=provider.walltime,
        drain_margin=provider.effective_drain_margin, registration_timeout=scaling.registration_timeout,
        max_block_failures=scaling.max_block_failures, poll_period=poll_period)


class Scaling:
    def __init__(self, config: InterchangeConfig, manager_address: str, scheduler: Scheduler,
                 provider: Provider | None = None, manager_keys: ManagerKeys | None = None,
                 execute_scheduler: Callable[[list[scheduler_actions.Action]], None] | None = None) -> None:
        """``execute_scheduler`` carries out what the scheduler answers to a hold or release
        (the interchange's ``execute``); without it such an answer must be empty."""
        self.config = config
        self.execute_scheduler = execute_scheduler or _expect_no_actions
        self.manager_address = manager_address
        self.manager_keys = manager_keys
        self.scheduler = scheduler
        self.provider = provider or make_provider(config.provider, config.endpoint_id)
        self.strategy = make_strategy(config, self.provider.poll_period)
        self.period = config.scaling_settings.strategy_period
        self.next_run = 0.0
        self.executor = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="provider")
                         if self.provider.blocking else None)
        self.calls: list[concurrent.futures.Future[Event | None]] = []
        self.finished: deque[Event | None] = deque()

    # -- what the interchange calls -----------------------------------------------------
    def start(self, now: float) -> None:
        self.execute(self.strategy.handle(Start(now)))
        self.collect()

    def tick(self, now: float) -> None:
        if now < self.next_run:
            return
        self.next_run = now + self.period
        self.collect()
        managers = [ManagerLoad(m.registration.manager_id, m.registration.block_id, m.registration.worker_count,
                                len(m.outstanding)) for m in self.scheduler.managers.values()]
        self.execute(self.strategy.handle(Load(now, len(self.scheduler.queue), managers)))
        self.collect()

    def manager_registered(self, registration: ManagerRegistration, now: float) -> None:
        self.execute(self.strategy.handle(ManagerRegistered(registration.manager_id, registration.block_id,
                                                            registration.worker_count, now)))

    def manager_retired(self, manager_id: str) -> None:
        """An operator drained ``manager_id``: its block is not replaced."""
        manager = self.scheduler.managers.get(manager_id)
        if manager is not None:
            self.execute(self.strategy.handle(ManagerRetired(manager_id, manager.registration.block_id)))

    def status(self, now: float) -> dict[str, Any]:
        return self.strategy.status(now)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel every block (waiting for submissions in flight first), then close the provider."""
        concurrent.futures.wait(self.calls, timeout=timeout)
        self.collect()
        self.execute_at_stop(self.strategy.handle(Stop(time.monotonic())))
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.provider.close(timeout)

    # -- carrying out the strategy's actions --------------------------------------------
    def execute(self, actions: list[Action]) -> None:
        """Carry out what the strategy asked for (``fabric.sansio``)."""
        for action in actions:
            match action:
                case SubmitBlock(block_id):
                    self.call(self._submit, block_id)
                case CancelBlocks(jobs):
                    self.call(self._cancel, jobs)
                case PollJobs(job_ids):
                    self.call(self._poll, job_ids)
                case HoldManagers(_, manager_ids):
                    self.command("hold", manager_ids)
                case ReleaseManagers(_, manager_ids):
                    self.command("release", manager_ids)
                case BlockFailed(block_id, message):
                    logger.error("block %s failed: %s", block_id, message)
                case BlockEnded(block_id, message):
                    logger.warning("block %s ended: %s", block_id, message)
                case EnterError(message):
                    logger.error("scaling stopped: %s", message)
                case _:
                    assert_never(action)

    def execute_at_stop(self, actions: list[Action]) -> None:
        """``stop``'s ``execute``: blocks are cancelled here and now, on this thread; nothing
        new is started."""
        for action in actions:
            if isinstance(action, CancelBlocks):
                event = self._cancel(action.jobs)
                if isinstance(event, CancelFailed):
                    logger.error("could not cancel blocks %s: %s", event.block_ids, event.message)
            else:
                logger.debug("stopping: not carried out: %s", action)

    def command(self, action: str, manager_ids: list[str]) -> None:
        for manager_id in manager_ids:
            if manager_id in self.scheduler.managers:
                self.execute_scheduler(self.scheduler.handle(ManagerCommanded(action, manager_id)))

    def call(self, function: Callable[..., Event | None], *args: Any) -> None:
        if self.executor is None:
            self.finished.append(function(*args))  # the outcome is fed back on collect()
        else:
            self.calls.append(self.executor.submit(function, *args))

    def collect(self) -> None:
        """Feed the strategy the outcome of every provider call that has finished."""
        done = [call for call in self.calls if call.done()]
        if done:
            self.calls = [call for call in self.calls if not call.done()]
            self.finished.extend(call.result() for call in done if not call.cancelled())
        while self.finished:
            event = self.finished.popleft()
            if event is not None:
                self.execute(self.strategy.handle(event))

    # -- provider calls (on the background thread for batch schedulers) -----------------
    def _submit(self, block_id: str) -> BlockSubmitted | BlockSubmitFailed:
        try:
            command = block_command(self.config, self.manager_address, block_id, self.manager_keys)
            job_id = self.provider.submit(command, block_id)
        except Exception as exc:  # noqa: BLE001 - any failure is the block's, reported by the strategy
            return BlockSubmitFailed(block_id, str(exc), time.monotonic())
        return BlockSubmitted(block_id, job_id, time.monotonic())

    def _poll(self, job_ids: list[str]) -> JobsPolled | PollFailed:
        try:
            return JobsPolled(time.monotonic(), self.provider.status(job_ids))
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not get job states from %s: %s", self.provider.kind, exc)
            return PollFailed(str(exc), time.monotonic())

    def _cancel(self, jobs: dict[str, str]) -> CancelFailed | None:
        try:
            self.provider.cancel(list(jobs.values()))
        except Exception as exc:  # noqa: BLE001
            return CancelFailed(list(jobs), str(exc))
        return None


def _expect_no_actions(actions: list[scheduler_actions.Action]) -> None:
    if actions:
        raise RuntimeError(f"scheduler actions with nobody to carry them out: {actions}")
