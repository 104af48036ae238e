"""An MPIFunction in a Slurm block: the worker, inside the batch job, prefixes ``srun``
(the launcher ``auto`` picks inside a Slurm job), which starts the ranks as a job step
through Slurm's PMIx; the reduction's result is checked."""

from __future__ import annotations

from pathlib import Path

from slurm_helpers import TIMEOUT
from tests.support.mpi_programs import REDUCE, build

from fabric.functions import MPIFunction


def test_an_mpi_reduction_runs_as_a_job_step_of_the_block(slurm_endpoint, scratch: Path) -> None:
    reduce = build(scratch, "reduce", REDUCE)
    endpoint = slurm_endpoint(provider={"launcher": "single", "cores_per_node": 4}, scaling={"max_blocks": 1},
                              workers=1, mpi_options=["--mpi=pmix", "--overcommit"])
    function = MPIFunction(f"{reduce} {{factor}} && echo job $SLURM_JOB_ID step $SLURM_STEP_ID")
    result = endpoint.submit_task(function, kwargs={"factor": 5},
                                  resource_specification={"num_nodes": 1, "ranks_per_node": 4}).result(TIMEOUT)
    assert result.returncode == 0, result.stderr
    summed, where = result.stdout.splitlines()
    assert summed == "sum 50 over 4 ranks"  # (1 + 2 + 3 + 4) * 5
    assert where.startswith("job ") and where.split()[1].isdigit()  # the worker ran inside the block's job
