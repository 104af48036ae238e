"""Socket-free unit tests of the scaling strategy (``interchange.strategy``).

Each test drives ``Strategy.handle`` with events and checks the actions it returns; the
last test throws random event sequences at it and checks the invariants that must always
hold (never more than ``max_blocks`` jobs, never a job forgotten, never a busy block
cancelled).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interchange.providers.base import JobState, JobStatus
from interchange.strategy import (BlockEnded, BlockFailed, BlockState, BlockSubmitFailed, BlockSubmitted,
                                  CancelBlocks, CancelFailed, EnterError, HoldManagers, JobsPolled, Load,
                                  ManagerLoad, ManagerRegistered, ManagerRetired, PollFailed, PollJobs,
                                  ReleaseManagers, Start, Stop, Strategy, SubmitBlock)

IDLE = 10.0


def strategy(**settings: Any) -> Strategy:
    return Strategy(**{"init_blocks": 0, "min_blocks": 0, "max_blocks": 4, "max_idletime": IDLE,
                       "workers_per_node": 2, "poll_period": 5.0, **settings})


def of(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def submitted(actions: list[Any]) -> list[str]:
    return [a.block_id for a in of(actions, SubmitBlock)]


def cancelled(actions: list[Any]) -> dict[str, str]:
    jobs: dict[str, str] = {}
    for action in of(actions, CancelBlocks):
        jobs.update(action.jobs)
    return jobs


def manager(block_id: str, outstanding: int = 0, workers: int = 2, rank: int = 0) -> ManagerLoad:
    return ManagerLoad(f"{block_id}-{rank}", block_id, workers, outstanding)


def running(s: Strategy, block_id: str, now: float, job_id: str | None = None) -> None:
    """Take a submitted block through submission and registration of its manager."""
    assert s.handle(BlockSubmitted(block_id, job_id or f"job-{block_id}", now)) == []
    assert s.handle(ManagerRegistered(f"{block_id}-0", block_id, 2, now)) == []
    assert s.blocks[block_id].state is BlockState.RUNNING


def with_running_blocks(count: int, **settings: Any) -> Strategy:
    s = strategy(init_blocks=count, **settings)
    for block_id in submitted(s.handle(Start(0.0))):
        running(s, block_id, 0.0)
    return s


# --- start and scale out -------------------------------------------------------------------------


def test_start_submits_init_blocks_and_then_waits_for_load() -> None:
    s = strategy(init_blocks=2)
    assert submitted(s.handle(Start(0.0))) == ["b1", "b2"]
    assert [b.state for b in s.blocks.values()] == [BlockState.SUBMITTING] * 2
    assert submitted(s.handle(Load(1.0, 0, []))) == []


def test_init_blocks_never_exceed_max_blocks() -> None:
    assert len(submitted(strategy(init_blocks=5, max_blocks=3).handle(Start(0.0)))) == 3


def test_no_work_no_blocks() -> None:
    s = strategy()
    assert s.handle(Start(0.0)) == []
    assert s.handle(Load(1.0, 0, [])) == []
    assert s.blocks == {}


@pytest.mark.parametrize(("queued", "parallelism", "expected"), [
    (1, 1.0, 1), (2, 1.0, 1), (3, 1.0, 2), (8, 1.0, 4), (500, 1.0, 4), (8, 0.5, 2), (8, 0.25, 1),
    (8, 0.0, 1), (0, 1.0, 0),
], ids=repr)
def test_scale_out_from_zero_asks_for_a_worker_per_task(queued: int, parallelism: float, expected: int) -> None:
    s = strategy(parallelism=parallelism)
    assert len(submitted(s.handle(Load(0.0, queued, [])))) == expected


def test_multi_node_blocks_count_every_node() -> None:
    s = strategy(nodes_per_block=2)  # 2 nodes x 2 workers: 4 slots per block
    assert len(submitted(s.handle(Load(0.0, 9, [])))) == 3


def test_min_blocks_are_kept_without_work() -> None:
    s = strategy(min_blocks=2)
    assert len(submitted(s.handle(Load(0.0, 0, [])))) == 2


def test_pending_blocks_count_as_capacity_so_nothing_is_submitted_twice() -> None:
    s = strategy()
    first = submitted(s.handle(Load(0.0, 4, [])))
    assert first == ["b1", "b2"]
    assert submitted(s.handle(Load(1.0, 4, []))) == []
    s.handle(BlockSubmitted("b1", "11", 1.5))
    assert submitted(s.handle(Load(2.0, 4, []))) == []
    assert submitted(s.handle(Load(3.0, 6, []))) == ["b3"]


def test_outstanding_tasks_on_running_blocks_count_as_load() -> None:
    s = with_running_blocks(1)
    assert submitted(s.handle(Load(1.0, 0, [manager("b1", outstanding=2)]))) == []
    assert submitted(s.handle(Load(2.0, 2, [manager("b1", outstanding=2)]))) == ["b2"]


def test_max_blocks_is_never_exceeded_even_counting_blocks_on_their_way_out() -> None:
    s = with_running_blocks(2, max_blocks=2, walltime=100.0, drain_margin=10.0)
    assert of(s.handle(Load(95.0, 10, [manager("b1", 2), manager("b2", 2)])), HoldManagers)
    assert all(b.state is BlockState.DRAINING for b in s.blocks.values())
    assert submitted(s.handle(Load(96.0, 10, [manager("b1", 2), manager("b2", 2)]))) == []


# --- the life of a block ---------------------------------------------------------------------------


def test_job_states_move_a_block_from_pending_to_starting_to_running() -> None:
    s = strategy()
    s.handle(Load(0.0, 1, []))
    s.handle(BlockSubmitted("b1", "7", 0.1))
    assert s.blocks["b1"].state is BlockState.PENDING
    s.handle(JobsPolled(1.0, {"7": JobStatus(JobState.PENDING)}))
    assert s.blocks["b1"].state is BlockState.PENDING
    s.handle(JobsPolled(2.0, {"7": JobStatus(JobState.RUNNING)}))
    assert s.blocks["b1"].state is BlockState.STARTING
    assert s.handle(ManagerRegistered("m", "b1", 2, 3.0)) == []
    assert s.blocks["b1"].state is BlockState.RUNNING
    assert s.status(3.0)["blocks"] == [{
        "block_id": "b1", "job_id": "7", "state": "running", "job_state": "running", "managers": ["m"],
        "workers": 2, "outstanding": 0, "age": 3.0, "message": ""}]


def test_a_manager_may_register_before_its_submission_is_confirmed() -> None:
    s = strategy()
    s.handle(Load(0.0, 1, []))
    s.handle(ManagerRegistered("m", "b1", 2, 0.1))
    s.handle(BlockSubmitted("b1", "7", 0.2))
    assert (s.blocks["b1"].state, s.blocks["b1"].job_id) == (BlockState.RUNNING, "7")


def test_managers_of_unknown_blocks_are_ignored() -> None:
    s = with_running_blocks(1)
    assert s.handle(ManagerRegistered("stray", "b99", 2, 1.0)) == []
    assert s.handle(ManagerRegistered("by-hand", None, 2, 1.0)) == []
    assert list(s.blocks) == ["b1"]


def test_polls_are_spaced_by_the_poll_period_and_never_overlap() -> None:
    s = strategy(poll_period=5.0)
    assert of(s.handle(Load(0.0, 1, [])), PollJobs) == []  # nothing to ask about yet
    s.handle(BlockSubmitted("b1", "7", 0.1))
    assert of(s.handle(Load(1.0, 1, [])), PollJobs) == [PollJobs(["7"])]
    assert of(s.handle(Load(7.0, 1, [])), PollJobs) == []  # the first poll is still in flight
    s.handle(PollFailed("slurmctld down", 7.5))
    assert of(s.handle(Load(8.0, 1, [])), PollJobs) == [PollJobs(["7"])]
    s.handle(JobsPolled(8.5, {"7": JobStatus(JobState.PENDING)}))
    assert of(s.handle(Load(9.0, 1, [])), PollJobs) == []
    assert of(s.handle(Load(13.0, 1, [])), PollJobs) == [PollJobs(["7"])]


# --- scale in ---------------------------------------------------------------------------------------


def test_an_idle_block_is_held_then_cancelled_then_forgotten() -> None:
    s = with_running_blocks(1)
    assert s.handle(Load(1.0, 0, [manager("b1")])) == [PollJobs(["job-b1"])]
    assert of(s.handle(Load(1.0 + IDLE - 0.1, 0, [manager("b1")])), HoldManagers) == []
    actions = s.handle(Load(1.0 + IDLE, 0, [manager("b1")]))
    assert of(actions, HoldManagers) == [HoldManagers("b1", ["b1-0"])]
    assert cancelled(actions) == {}
    assert s.blocks["b1"].state is BlockState.HELD
    actions = s.handle(Load(2.0 + IDLE, 0, [manager("b1")]))
    assert cancelled(actions) == {"b1": "job-b1"}
    assert s.blocks["b1"].state is BlockState.CANCELLING
    assert s.handle(JobsPolled(3.0 + IDLE, {"job-b1": JobStatus(JobState.CANCELLED)})) == []
    assert s.blocks == {}
    assert s.status(4.0 + IDLE)["ended_blocks"][0]["state"] == "cancelling"


def test_busy_time_resets_the_idle_clock() -> None:
    s = with_running_blocks(1)
    s.handle(Load(1.0, 0, [manager("b1")]))
    s.handle(Load(5.0, 0, [manager("b1", outstanding=1)]))
    assert of(s.handle(Load(1.0 + IDLE, 0, [manager("b1")])), HoldManagers) == []
    assert of(s.handle(Load(1.0 + 2 * IDLE, 0, [manager("b1")])), HoldManagers) == [HoldManagers("b1", ["b1-0"])]


def test_a_held_block_is_cancelled_only_once_its_managers_hold_no_task() -> None:
    s = with_running_blocks(1)
    s.handle(Load(0.0, 0, [manager("b1")]))
    s.handle(Load(IDLE, 0, [manager("b1")]))
    assert cancelled(s.handle(Load(IDLE + 1, 0, [manager("b1", outstanding=1)]))) == {}
    assert cancelled(s.handle(Load(IDLE + 2, 0, [manager("b1")]))) == {"b1": "job-b1"}


def test_work_arriving_releases_a_held_block_instead_of_submitting_a_new_one() -> None:
    s = with_running_blocks(1)
    s.handle(Load(0.0, 0, [manager("b1")]))
    s.handle(Load(IDLE, 0, [manager("b1")]))
    actions = s.handle(Load(IDLE + 0.5, 2, [manager("b1")]))
    assert of(actions, ReleaseManagers) == [ReleaseManagers("b1", ["b1-0"])]
    assert submitted(actions) == []
    assert s.blocks["b1"].state is BlockState.RUNNING


def test_min_blocks_are_never_scaled_in() -> None:
    s = with_running_blocks(2, min_blocks=1)
    s.handle(Load(0.0, 0, [manager("b1"), manager("b2")]))
    holds = of(s.handle(Load(IDLE, 0, [manager("b1"), manager("b2")])), HoldManagers)
    assert len(holds) == 1
    assert of(s.handle(Load(3 * IDLE, 0, [manager("b1"), manager("b2")])), HoldManagers) == []


def test_the_longest_idle_connected_block_goes_first() -> None:
    s = with_running_blocks(2, min_blocks=1)
    s.handle(Load(0.0, 0, [manager("b1", 1), manager("b2")]))
    s.handle(Load(1.0, 0, [manager("b1"), manager("b2")]))
    assert of(s.handle(Load(1.0 + IDLE, 0, [manager("b1"), manager("b2")])), HoldManagers) == [
        HoldManagers("b2", ["b2-0"])]


def test_unneeded_unconnected_blocks_are_cancelled_newest_first_without_holding() -> None:
    s = with_running_blocks(1, max_blocks=3)
    s.handle(Load(0.0, 6, [manager("b1", 0)]))  # b2 and b3
    s.handle(BlockSubmitted("b2", "j2", 0.1))
    s.handle(BlockSubmitted("b3", "j3", 0.2))
    s.handle(Load(1.0, 0, [manager("b1", 4)]))  # the queue is empty: the pending blocks idle
    actions = s.handle(Load(1.0 + IDLE, 0, [manager("b1", 1)]))
    assert cancelled(actions) == {"b3": "j3", "b2": "j2"}
    assert of(actions, HoldManagers) == []
    assert s.handle(JobsPolled(2.0 + IDLE, {"j2": JobStatus(JobState.CANCELLED),
                                            "j3": JobStatus(JobState.CANCELLED)})) == []
    assert list(s.blocks) == ["b1"]


def test_a_pending_block_is_not_cancelled_while_tasks_wait() -> None:
    s = strategy(max_blocks=1)
    s.handle(Load(0.0, 5, []))
    s.handle(BlockSubmitted("b1", "j1", 0.1))
    assert cancelled(s.handle(Load(10 * IDLE, 5, []))) == {}
    assert s.blocks["b1"].state is BlockState.PENDING


def test_a_block_still_being_submitted_is_never_cancelled_by_scale_in() -> None:
    s = strategy()
    s.handle(Load(0.0, 1, []))
    s.handle(Load(1.0, 0, []))
    assert cancelled(s.handle(Load(2 * IDLE, 0, []))) == {}
    assert s.blocks["b1"].state is BlockState.SUBMITTING


# --- walltime -----------------------------------------------------------------------------------


def test_a_block_near_its_walltime_drains_is_replaced_and_is_given_back_once_empty() -> None:
    s = strategy(max_blocks=2, walltime=100.0, drain_margin=10.0)
    s.handle(Load(0.0, 1, []))
    running(s, "b1", 5.0)
    assert s.handle(Load(94.0, 0, [manager("b1", 2)])) == [PollJobs(["job-b1"])]
    actions = s.handle(Load(95.0, 3, [manager("b1", 2)]))
    assert of(actions, HoldManagers) == [HoldManagers("b1", ["b1-0"])]
    assert s.blocks["b1"].state is BlockState.DRAINING
    assert submitted(actions) == ["b2"]  # the work left needs a block that will live
    assert cancelled(s.handle(Load(96.0, 3, [manager("b1", 1)]))) == {}
    assert cancelled(s.handle(Load(97.0, 3, []))) == {"b1": "job-b1"}  # its managers left
    assert s.handle(JobsPolled(98.0, {"job-b1": JobStatus(JobState.COMPLETED)})) == []
    assert list(s.blocks) == ["b2"]


def test_the_walltime_clock_starts_when_the_job_runs() -> None:
    s = strategy(walltime=100.0, drain_margin=10.0)
    s.handle(Load(0.0, 1, []))
    s.handle(BlockSubmitted("b1", "j1", 0.0))
    s.handle(JobsPolled(50.0, {"j1": JobStatus(JobState.RUNNING)}))
    s.handle(ManagerRegistered("m", "b1", 2, 51.0))
    assert of(s.handle(Load(139.0, 0, [ManagerLoad("m", "b1", 2, 1)])), HoldManagers) == []
    assert of(s.handle(Load(140.0, 0, [ManagerLoad("m", "b1", 2, 1)])), HoldManagers) == [HoldManagers("b1", ["m"])]


def test_a_block_whose_managers_drained_early_by_their_own_clock_is_given_back() -> None:
    s = strategy(walltime=100.0, drain_margin=10.0)
    s.handle(Load(0.0, 1, []))
    running(s, "b1", 5.0)  # the job started earlier than the interchange could tell
    assert cancelled(s.handle(Load(88.0, 0, []))) == {"b1": "job-b1"}
    assert s.blocks["b1"].message == "walltime: drained"
    assert s.handle(JobsPolled(89.0, {"job-b1": JobStatus(JobState.COMPLETED)})) == []  # expected: no report


def test_a_running_block_whose_managers_all_left_is_given_back() -> None:
    s = with_running_blocks(1)
    assert cancelled(s.handle(Load(1.0, 0, []))) == {"b1": "job-b1"}
    assert s.blocks["b1"].message == "its managers left"


# --- failures -------------------------------------------------------------------------------------


def test_a_job_that_ends_before_any_manager_registers_is_a_failed_block() -> None:
    s = strategy()
    s.handle(Load(0.0, 1, []))
    s.handle(BlockSubmitted("b1", "j1", 0.0))
    actions = s.handle(JobsPolled(1.0, {"j1": JobStatus(JobState.FAILED, "exit code 1; python: not found")}))
    assert actions == [BlockFailed("b1", "job j1 ended: failed (exit code 1; python: not found) "
                                         "before any manager registered")]
    assert s.blocks == {}
    assert s.status(1.0)["ended_blocks"][0]["message"].startswith("job j1 ended: failed")
    assert submitted(s.handle(Load(2.0, 1, []))) == ["b2"]  # tried again


def test_repeated_failures_put_the_strategy_in_an_error_state_until_a_manager_registers() -> None:
    s = strategy(max_block_failures=3, max_blocks=1)
    for attempt in range(1, 4):
        [block_id] = submitted(s.handle(Load(float(attempt), 1, [])))
        actions = s.handle(BlockSubmitFailed(block_id, "sbatch: error: invalid partition", float(attempt)))
        assert of(actions, BlockFailed)
    assert of(actions, EnterError)
    error = s.status(4.0)["scaling_error"]
    assert "3 blocks failed in a row" in error and "invalid partition" in error
    assert submitted(s.handle(Load(5.0, 1, []))) == []  # no more hopeless submissions
    assert submitted(s.handle(Load(600.0, 1, []))) == []


def test_a_registration_clears_the_error_state() -> None:
    s = strategy(max_block_failures=1, max_blocks=2)
    s.handle(Load(0.0, 4, []))  # b1, b2
    s.handle(BlockSubmitted("b2", "j2", 0.0))
    assert of(s.handle(BlockSubmitFailed("b1", "boom", 0.1)), EnterError)
    s.handle(ManagerRegistered("m", "b2", 2, 1.0))
    assert s.status(1.0)["scaling_error"] is None
    assert submitted(s.handle(Load(2.0, 4, [ManagerLoad("m", "b2", 2, 0)]))) == ["b3"]


def test_a_successful_registration_resets_the_failure_count() -> None:
    s = strategy(max_block_failures=2, max_blocks=1)
    s.handle(Load(0.0, 1, []))
    s.handle(BlockSubmitFailed("b1", "boom", 0.0))
    s.handle(Load(1.0, 1, []))
    running(s, "b2", 1.0)
    assert s.failures == 0


def test_a_job_running_without_registering_is_cancelled_as_failed_once() -> None:
    s = strategy(registration_timeout=30.0)
    s.handle(Load(0.0, 1, []))
    s.handle(BlockSubmitted("b1", "j1", 0.0))
    s.handle(JobsPolled(1.0, {"j1": JobStatus(JobState.RUNNING)}))
    assert of(s.handle(Load(30.0, 1, [])), BlockFailed) == []
    actions = s.handle(Load(31.5, 1, []))
    assert of(actions, BlockFailed) == [BlockFailed("b1", "no manager registered within 30 s of job j1 starting")]
    assert cancelled(actions) == {"b1": "j1"}
    assert s.handle(JobsPolled(32.0, {"j1": JobStatus(JobState.CANCELLED)})) == []  # not counted twice
    assert s.failures == 1
    assert "b1" not in s.blocks


def test_a_connected_block_that_ends_unexpectedly_is_reported_and_replaced() -> None:
    s = with_running_blocks(1, min_blocks=1)
    actions = s.handle(JobsPolled(5.0, {"job-b1": JobStatus(JobState.CANCELLED)}))
    assert actions == [BlockEnded("b1", "job job-b1 ended: cancelled")]
    assert s.failures == 0
    assert submitted(s.handle(Load(6.0, 0, []))) == ["b2"]


def test_a_failed_cancel_is_asked_again() -> None:
    s = with_running_blocks(1)
    s.handle(Load(0.0, 0, [manager("b1")]))
    s.handle(Load(IDLE, 0, [manager("b1")]))
    assert cancelled(s.handle(Load(IDLE + 1, 0, [manager("b1")]))) == {"b1": "job-b1"}
    s.handle(CancelFailed(["b1"], "scancel: slurmctld timeout"))
    assert s.blocks["b1"].message == "cancel failed: scancel: slurmctld timeout"
    assert cancelled(s.handle(Load(IDLE + 2, 0, [manager("b1")]))) == {"b1": "job-b1"}


def test_a_late_manager_of_a_block_on_its_way_out_is_held_at_once() -> None:
    s = with_running_blocks(1, nodes_per_block=2)
    s.handle(Load(0.0, 0, [manager("b1")]))
    s.handle(Load(IDLE, 0, [manager("b1")]))
    assert s.handle(ManagerRegistered("b1-1", "b1", 2, IDLE + 0.5)) == [HoldManagers("b1", ["b1-1"])]


# --- retiring and stopping ------------------------------------------------------------------------


def test_a_retired_block_is_not_replaced() -> None:
    s = with_running_blocks(2, min_blocks=2, max_blocks=2)
    assert s.handle(ManagerRetired("b1-0", "b1")) == []
    assert s.blocks["b1"].state is BlockState.DRAINING
    assert (s.min_blocks, s.max_blocks) == (1, 1)
    assert submitted(s.handle(Load(1.0, 5, [manager("b1", 1), manager("b2", 2)]))) == []
    assert cancelled(s.handle(Load(2.0, 5, [manager("b2", 2)]))) == {"b1": "job-b1"}
    s.handle(JobsPolled(3.0, {"job-b1": JobStatus(JobState.COMPLETED), "job-b2": JobStatus(JobState.RUNNING)}))
    assert submitted(s.handle(Load(4.0, 5, [manager("b2", 2)]))) == []
    assert list(s.blocks) == ["b2"]


def test_a_multi_node_block_retires_when_all_its_managers_did() -> None:
    s = with_running_blocks(1, nodes_per_block=2, min_blocks=1)
    s.handle(ManagerRetired("b1-0", "b1"))
    assert s.blocks["b1"].state is BlockState.RUNNING
    s.handle(ManagerRetired("b1-1", "b1"))
    assert s.blocks["b1"].state is BlockState.DRAINING


def test_retiring_an_unknown_manager_changes_nothing() -> None:
    s = with_running_blocks(1, min_blocks=1)
    assert s.handle(ManagerRetired("x", None)) == []
    assert s.handle(ManagerRetired("x", "b9")) == []
    assert (s.min_blocks, s.max_blocks) == (1, 4)


def test_stop_cancels_every_job_and_the_ones_still_being_submitted() -> None:
    s = with_running_blocks(2)
    s.handle(Load(0.0, 9, [manager("b1", 2), manager("b2", 2)]))  # b3, b4 being submitted
    s.handle(BlockSubmitted("b3", "j3", 0.5))
    assert cancelled(s.handle(Stop(1.0))) == {"b1": "job-b1", "b2": "job-b2", "b3": "j3"}
    assert cancelled(s.handle(BlockSubmitted("b4", "j4", 1.5))) == {"b4": "j4"}
    assert submitted(s.handle(Load(2.0, 100, []))) == []


def test_unknown_events_are_refused() -> None:
    with pytest.raises(TypeError):
        strategy().handle(object())


# --- invariants under random event sequences -------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("load"), st.integers(0, 40), st.floats(0.0, 1.0)),
    st.tuples(st.just("submitted"), st.integers(0, 9)),
    st.tuples(st.just("submit_failed"), st.integers(0, 9)),
    st.tuples(st.just("register"), st.integers(0, 9)),
    st.tuples(st.just("poll"), st.sampled_from(list(JobState))),
    st.tuples(st.just("retire"), st.integers(0, 9)),
    st.tuples(st.just("wait"), st.floats(0.1, 30.0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60), st.integers(0, 2), st.integers(1, 4))
def test_invariants_hold_for_any_sequence_of_events(steps: list[Any], min_blocks: int, max_blocks: int) -> None:
    """A fake scheduler answers the strategy; whatever happens, it never holds more than
    ``max_blocks`` jobs, never loses track of a job that has not ended, and never cancels
    a block whose managers hold tasks (unless the block failed)."""
    min_blocks = min(min_blocks, max_blocks)
    s = Strategy(init_blocks=min_blocks, min_blocks=min_blocks, max_blocks=max_blocks, max_idletime=5.0,
                 workers_per_node=2, walltime=200.0, drain_margin=20.0, registration_timeout=60.0, poll_period=1.0,
                 max_block_failures=3)
    now = 0.0
    jobs: dict[str, str] = {}          # block id -> job id, for every job the scheduler still runs
    in_flight: list[str] = []          # submissions not yet answered
    outstanding: dict[str, int] = {}   # block id -> tasks its manager holds
    registered: set[str] = set()

    def run(actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, SubmitBlock):
                in_flight.append(action.block_id)
            elif isinstance(action, CancelBlocks):
                for block_id in action.jobs:
                    block = s.blocks.get(block_id)
                    assert block is not None
                    assert block.failed or outstanding.get(block_id, 0) == 0 or s.stopped, "cancelled a busy block"
        assert len(jobs) + len(in_flight) <= max_blocks + 0, "more jobs than max_blocks"
        assert set(jobs) | set(in_flight) <= set(s.blocks), "a live job was forgotten"

    run(s.handle(Start(now)))
    for kind, *args in steps:
        if kind == "load":
            queued, busy = args
            loads = [ManagerLoad(f"{b}-0", b, 2, outstanding.setdefault(b, 0)) for b in registered if b in jobs]
            for b in list(outstanding):
                outstanding[b] = 2 if busy > 0.5 and b in registered and s.blocks.get(b) is not None and \
                    s.blocks[b].state is BlockState.RUNNING else 0
            run(s.handle(Load(now, queued, loads)))
        elif kind in ("submitted", "submit_failed") and in_flight:
            block_id = in_flight.pop(args[0] % len(in_flight))
            if kind == "submitted":
                jobs[block_id] = f"j-{block_id}"
                run(s.handle(BlockSubmitted(block_id, jobs[block_id], now)))
            else:
                run(s.handle(BlockSubmitFailed(block_id, "no", now)))
        elif kind == "register" and jobs:
            block_id = sorted(jobs)[args[0] % len(jobs)]
            registered.add(block_id)
            run(s.handle(ManagerRegistered(f"{block_id}-0", block_id, 2, now)))
        elif kind == "poll" and jobs:
            state = args[0]
            block_id = sorted(jobs)[0]
            statuses = {j: JobStatus(JobState.RUNNING) for j in jobs.values()}
            statuses[jobs[block_id]] = JobStatus(state)
            if state.terminal:
                del jobs[block_id]
                registered.discard(block_id)
                outstanding.pop(block_id, None)
            run(s.handle(JobsPolled(now, statuses)))
        elif kind == "retire" and registered:
            block_id = sorted(registered)[args[0] % len(registered)]
            run(s.handle(ManagerRetired(f"{block_id}-0", block_id)))
        elif kind == "wait":
            now += args[0]
    run(s.handle(Stop(now)))
    still = {b for b in jobs if not s.blocks[b].cancel_sent}
    assert not still - set(in_flight), f"jobs left running after Stop: {still}"
