"""``interchange.scaling``: the strategy's actions carried out against a fake provider and
a real (sans-IO) scheduler, without sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from fabric.config import InterchangeConfig, ProviderConfig, ScalingConfig
from fabric.protocol import PROTOCOL_VERSION, ManagerRegistration, Task
from interchange.providers.base import JobState, JobStatus, Provider, ProviderError
from interchange.scaling import Scaling, make_provider
from interchange.scheduler import ManagerJoined, Scheduler, TasksSubmitted


class FakeProvider(Provider):
    """Records calls; jobs run until cancelled. ``blocking`` picks the thread they run on."""

    kind = "fake"

    def __init__(self, *, blocking: bool = False, fail_submit: bool = False) -> None:
        super().__init__(ProviderConfig(poll_period=1.0), label="ep")
        self.blocking = blocking  # type: ignore[misc]
        self.fail_submit = fail_submit
        self.submitted: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.states: dict[str, JobState] = {}
        self.threads: set[str] = set()
        self.closed = False

    def submit(self, command: str, block_id: str) -> str:
        self.threads.add(threading.current_thread().name)
        if self.fail_submit:
            raise ProviderError(["sbatch"], 1, "sbatch: error: invalid account")
        self.submitted.append((block_id, command))
        job_id = str(100 + len(self.submitted))
        self.states[job_id] = JobState.PENDING
        return job_id

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        return {job_id: JobStatus(self.states.get(job_id, JobState.COMPLETED)) for job_id in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.cancelled += job_ids
        for job_id in job_ids:
            self.states[job_id] = JobState.CANCELLED

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


def config(**scaling: Any) -> InterchangeConfig:
    return InterchangeConfig(upstream_address="tcp://127.0.0.1:1", endpoint_id="ep", workers_per_manager=2,
                             scaling=ScalingConfig(**{"init_blocks": 0, "max_blocks": 2, "strategy_period": 0.5,
                                                      "max_idletime": 5.0, **scaling}))


def registration(manager_id: str, block_id: str) -> ManagerRegistration:
    return ManagerRegistration(manager_id=manager_id, hostname="node", pid=1, cores=2, memory=1, accelerators=[],
                               python_version="3.11", protocol_version=PROTOCOL_VERSION, worker_count=2, prefetch=0,
                               capacity=2, block_id=block_id)


def scaling(provider: FakeProvider, **settings: Any) -> tuple[Scaling, Scheduler]:
    scheduler = Scheduler(heartbeat_threshold=10.0)
    return Scaling(config(**settings), "tcp://127.0.0.1:54001", scheduler, provider=provider), scheduler


def join(s: Scaling, scheduler: Scheduler, manager_id: str, block_id: str, now: float) -> None:
    scheduler.handle(ManagerJoined(registration(manager_id, block_id), now))
    s.manager_registered(registration(manager_id, block_id), now)


def test_start_submits_the_init_blocks_with_their_manager_commands() -> None:
    provider = FakeProvider()
    s, _ = scaling(provider, init_blocks=2)
    s.start(0.0)
    assert [block for block, _ in provider.submitted] == ["b1", "b2"]
    assert "-m manager --config" in provider.submitted[0][1] and '"block_id": "b1"' in provider.submitted[0][1]
    assert [b["state"] for b in s.status(0.0)["blocks"]] == ["pending", "pending"]
    assert [b["job_id"] for b in s.status(0.0)["blocks"]] == ["101", "102"]


def test_queued_tasks_make_it_scale_out_and_the_strategy_runs_only_every_period() -> None:
    provider = FakeProvider()
    s, scheduler = scaling(provider)
    scheduler.handle(TasksSubmitted([Task(i, "f", b"") for i in range(3)]))
    s.tick(10.0)
    assert len(provider.submitted) == 2
    scheduler.handle(TasksSubmitted([Task(i, "f", b"") for i in range(3, 9)]))
    s.tick(10.1)  # within the period: nothing new
    assert len(s.status(10.1)["blocks"]) == 2


def test_idle_blocks_are_held_in_the_scheduler_then_cancelled() -> None:
    provider = FakeProvider()
    s, scheduler = scaling(provider, init_blocks=1)
    s.start(0.0)
    join(s, scheduler, "m1", "b1", 0.0)
    s.tick(1.0)
    s.tick(6.0)
    assert scheduler.managers["m1"].held
    s.tick(7.0)
    assert provider.cancelled == ["101"]
    s.tick(8.0)  # the poll that sees it gone
    s.tick(9.0)
    assert s.status(9.0)["blocks"] == []
    assert s.status(9.0)["ended_blocks"][0]["job_state"] == "cancelled"


def test_batch_provider_calls_run_off_the_interchange_thread() -> None:
    provider = FakeProvider(blocking=True)
    s, _ = scaling(provider, init_blocks=1)
    s.start(0.0)
    deadline = time.monotonic() + 10
    while not s.status(0.0)["blocks"][0]["job_id"] and time.monotonic() < deadline:
        time.sleep(0.01)
        s.tick(s.next_run)
    assert provider.threads and threading.current_thread().name not in provider.threads
    assert s.status(0.0)["blocks"][0]["job_id"] == "101"
    s.stop()


def test_a_failing_submission_is_reported_in_the_status() -> None:
    provider = FakeProvider(fail_submit=True)
    s, _ = scaling(provider, init_blocks=1, max_block_failures=1)
    s.start(0.0)
    status = s.status(0.0)
    assert status["blocks"] == []
    assert "invalid account" in status["ended_blocks"][0]["message"]
    assert "invalid account" in status["scaling_error"]


def test_stop_cancels_every_block_and_closes_the_provider() -> None:
    provider = FakeProvider(blocking=True)
    s, _ = scaling(provider, init_blocks=2)
    s.start(0.0)
    s.stop()
    assert sorted(provider.cancelled) == ["101", "102"]  # submissions still in flight were waited for
    assert provider.closed


def test_draining_a_manager_retires_its_block() -> None:
    provider = FakeProvider()
    s, scheduler = scaling(provider, init_blocks=2, min_blocks=2)
    s.start(0.0)
    join(s, scheduler, "m1", "b1", 0.0)
    s.manager_retired("m1")
    s.manager_retired("unknown")
    assert s.strategy.max_blocks == 1 and s.strategy.min_blocks == 1
    assert [b["state"] for b in s.status(0.0)["blocks"]] == ["draining", "pending"]


@pytest.mark.parametrize("kind", ["local", "slurm", "pbspro", "kubernetes"])
def test_every_provider_kind_can_be_made(kind: str, tmp_path: Any) -> None:
    provider = make_provider(ProviderConfig(kind=kind, image="img", script_dir=str(tmp_path)), "ep")
    assert provider.kind == kind
