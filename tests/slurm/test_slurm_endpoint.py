"""Elastic endpoints on a real Slurm cluster: blocks are ``sbatch`` jobs on this host.

Every task reports the Slurm job (and job step) it ran in, so a test knows that the work
really ran inside the jobs the endpoint submitted.
"""

from __future__ import annotations

import subprocess

import slurm_functions as fns
from slurm_helpers import TIMEOUT, jobs_of, live_jobs, poll_until, report

from fabric import Endpoint


def blocks(endpoint: Endpoint) -> list[dict]:
    return report(endpoint).blocks


def test_scales_out_from_zero_for_500_tasks_and_back_to_zero_when_idle(slurm_endpoint) -> None:
    endpoint = slurm_endpoint(scaling={"min_blocks": 0, "max_blocks": 2, "max_idletime": 2.0})
    assert blocks(endpoint) == [] and report(endpoint).managers == []
    assert jobs_of(endpoint) == {}

    futures = [endpoint.submit(fns.where, x) for x in range(500)]
    results = [f.result(TIMEOUT) for f in futures]

    assert [x for x, _, _ in results] == list(range(500))
    jobs = {job for _, job, _ in results}
    assert None not in jobs and 1 <= len(jobs) <= 2  # ran inside at most max_blocks Slurm jobs
    assert {step for _, _, step in results} == {"0"}  # started by srun: the batch job's step 0
    assert set(jobs) <= set(jobs_of(endpoint))

    poll_until(lambda: not blocks(endpoint) and not report(endpoint).managers, "the endpoint to scale back to zero")
    assert not live_jobs(endpoint)
    ended = report(endpoint).ended_blocks
    assert {b["job_id"] for b in ended} >= jobs
    assert all(b["state"] == "cancelling" for b in ended)  # given back by us, not failed


def test_scancel_of_a_running_block_mid_batch_loses_no_task(slurm_endpoint) -> None:
    endpoint = slurm_endpoint(scaling={"min_blocks": 2, "max_blocks": 2, "init_blocks": 2}, retries=2)
    running = poll_until(lambda: len([b for b in blocks(endpoint) if b["state"] == "running"]) == 2 and
                         blocks(endpoint), "two running blocks")
    futures = [endpoint.submit(fns.where, x, 0.02) for x in range(300)]
    poll_until(lambda: sum(f.done() for f in futures) >= 30, "the batch to be under way")
    victim = running[0]["job_id"]
    subprocess.run(["scancel", victim], check=True, timeout=30)

    results = [f.result(TIMEOUT) for f in futures]  # every future resolves, none with an error

    assert [x for x, _, _ in results] == list(range(300))
    ran_in = {job for _, job, _ in results}
    assert victim in ran_in  # the cancelled block really was working
    assert len(ran_in) >= 2
    poll_until(lambda: any(b["job_id"] == victim for b in report(endpoint).ended_blocks),
               "the cancelled block to be noticed")
    [ended] = [b for b in report(endpoint).ended_blocks if b["job_id"] == victim]
    assert ended["job_state"] == "cancelled"
    poll_until(lambda: len([b for b in blocks(endpoint) if b["state"] == "running"]) == 2,
               "a replacement block (min_blocks=2)")


def test_a_block_drains_before_its_walltime_and_no_task_is_killed(slurm_endpoint) -> None:
    """A 60 s block drains 54 s early: its managers finish their running tasks and leave;
    the tasks they had not started run in the next block. No retries are allowed, so a
    task killed mid-run would fail."""
    endpoint = slurm_endpoint(provider={"walltime": 60, "drain_margin": 54, "launcher": "single"},
                              scaling={"max_blocks": 1}, workers=1, prefetch=0, retries=0)
    futures = [endpoint.submit(fns.where, x, 0.25) for x in range(24)]  # 6 s of work

    results = [f.result(TIMEOUT) for f in futures]

    assert [x for x, _, _ in results] == list(range(24))
    jobs = sorted({job for _, job, _ in results}, key=int)
    assert len(jobs) >= 2  # the first block drained, a second one finished the work
    assert {step for _, _, step in results} == {None}  # the single launcher: no srun step
    first = poll_until(lambda: [b for b in report(endpoint).ended_blocks if b["job_id"] == jobs[0]],
                       "the first block to end")[0]
    assert first["message"] in ("walltime: draining", "walltime: drained")
    assert jobs_of(endpoint)[jobs[0]] in ("CD", "CA")  # ended by us before Slurm's time limit (TO)


def test_blocks_that_cannot_start_are_reported_and_stop_the_scaling(slurm_endpoint) -> None:
    endpoint = slurm_endpoint(provider={"python": "/nonexistent/python3"},
                              scaling={"max_blocks": 1, "max_block_failures": 2})
    future = endpoint.submit(fns.where, 1)

    error = poll_until(lambda: report(endpoint).scaling_error, "the endpoint to enter its error state")

    assert "2 blocks failed in a row" in error
    ended = report(endpoint).ended_blocks
    assert len(ended) == 2
    for block in ended:
        assert block["job_state"] == "failed"
        assert "before any manager registered" in block["message"]
        assert "/nonexistent/python3" in block["message"]  # the end of the job's stderr
    assert not future.done() and not live_jobs(endpoint) and blocks(endpoint) == []
