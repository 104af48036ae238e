"""MPIFunction through a real local endpoint with Debian's Open MPI: the worker prefixes the
launcher from the task's resource_specification, and bad specifications fail at submit."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import TIMEOUT
from tests.support.mpi_programs import HELLO, REDUCE, ROOT_OPTIONS, build

from fabric.errors import RemoteExecutionError, ResourceSpecError
from fabric.functions import MPIFunction


def test_four_ranks_say_hello_and_reduce_a_sum(make_endpoint, tmp_path: Path) -> None:
    hello, reduce = build(tmp_path, "hello", HELLO), build(tmp_path, "reduce", REDUCE)
    endpoint = make_endpoint(mpi_launcher="mpirun", mpi_options=ROOT_OPTIONS)
    four = {"num_nodes": 1, "ranks_per_node": 4}
    said = endpoint.submit_task(MPIFunction(hello), resource_specification=four).result(TIMEOUT)
    assert said.returncode == 0, said.stderr
    assert sorted(said.stdout.splitlines()) == [f"hello from rank {r} of 4" for r in range(4)]
    assert said.cmd.startswith("$FABRIC_MPI_PREFIX ")

    summed = endpoint.submit_task(MPIFunction(f"{reduce} {{factor}}"), kwargs={"factor": 10},
                                  resource_specification={"num_ranks": 3}).result(TIMEOUT)
    assert summed.stdout == "sum 60 over 3 ranks\n"  # (1 + 2 + 3) * 10


def test_bad_resource_specifications_fail_at_submit(make_endpoint, tmp_path: Path) -> None:
    endpoint = make_endpoint(mpi_options=ROOT_OPTIONS)
    for bad in ({"num_ranks": 0}, {"ranks_per_node": -2}, {"num_nodes": 1, "num_ranks": 5, "ranks_per_node": 2},
                {"cores": 4}):
        with pytest.raises(ResourceSpecError):
            endpoint.submit_task(MPIFunction("true"), resource_specification=bad)
    with pytest.raises(ResourceSpecError, match="2 nodes; a block of this endpoint has 1"):
        endpoint.submit_task(MPIFunction("true"), resource_specification={"num_nodes": 2})
    with pytest.raises(RemoteExecutionError) as caught:  # an MPIFunction needs resources
        endpoint.submit(MPIFunction("true")).result(TIMEOUT)
    assert isinstance(caught.value.exception, ResourceSpecError)


def test_mpi_tasks_reserve_the_node_one_at_a_time(make_endpoint) -> None:
    """Two workers, two MPI tasks each wanting the endpoint's one node: they run one after
    the other, never both at once (whole nodes are reserved, as Globus Compute does)."""
    endpoint = make_endpoint(workers=2, mpi_launcher="mpirun", mpi_options=ROOT_OPTIONS)
    window = MPIFunction("sh -c 'echo start $(date +%s%N); sleep 0.5; echo end $(date +%s%N)'; echo worker $PPID")
    futures = [endpoint.submit_task(window, resource_specification={"num_ranks": 1}, walltime=TIMEOUT)
               for _ in range(2)]  # a task with a walltime goes to an idle worker: one each
    outputs = [f.result(TIMEOUT).stdout.split() for f in futures]
    assert outputs[0][5] != outputs[1][5], "both ran on one worker: nothing to reserve against"
    spans = sorted((int(out[1]), int(out[3])) for out in outputs)
    (_, first_end), (second_start, _) = spans
    assert first_end <= second_start, f"the two tasks overlapped: {spans}"
