"""MPI functions through the service: the Executor's resource_specification travels with
each task to the endpoint, whose workers launch the ranks; bad specifications are refused
(400 at the service, ResourceSpecError in the SDK, ResourcesUnavailable at the endpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support import TIMEOUT
from tests.support.mpi_programs import REDUCE, ROOT_OPTIONS, build
from tests.support.service import user

from fabric import Executor, InvalidRequest
from fabric.errors import ResourcesUnavailable, ResourceSpecError
from fabric.functions import MPIFunction
from fabric.serialize import serialize_arguments, serialize_function


def test_an_mpi_reduction_runs_through_the_service(cluster: Any, tmp_path: Path) -> None:
    reduce = build(tmp_path, "reduce", REDUCE)
    service = cluster.service()
    client = user(service)
    registration = client.register_endpoint("mpi")
    cluster.endpoint(registration, mpi_launcher="mpirun", mpi_options=ROOT_OPTIONS)
    function = MPIFunction(f"{reduce} {{factor}}")
    with Executor(registration["endpoint_id"], client=client,
                  resource_specification={"num_nodes": 1, "ranks_per_node": 4}) as executor:
        result = executor.submit(function, factor=2).result(TIMEOUT)
        assert result.stdout == "sum 20 over 4 ranks\n", result.stderr  # (1 + 2 + 3 + 4) * 2
        assert executor.resource_spec == {"num_nodes": 1, "ranks_per_node": 4}  # the old name still reads

        executor.resource_specification = {"num_nodes": 3}  # more than the endpoint's one-node block
        with pytest.raises(ResourcesUnavailable, match="3 nodes"):
            executor.submit(function, factor=1).result(TIMEOUT)
        executor.resource_specification = {"num_ranks": 0}
        with pytest.raises(ResourceSpecError):
            executor.submit(function, factor=1)

    function_id, body = serialize_function(function)
    client.register_function_body(body, name="reduce", function_id=function_id)
    for bad in ({"num_ranks": 0}, {"ranks_per_node": -1}, {"num_nodes": "two"}, {"container": ""}):
        with pytest.raises(InvalidRequest) as caught:
            client.submit_batch(registration["endpoint_id"], function_id, [serialize_arguments((), {"factor": 1})],
                                resource_spec=bad)
        assert caught.value.status == 400
