"""A Globus Compute tutorial script runs against a real service and endpoint with only its
import line changed (``sdk.globus_compute``), and the GC-shaped calls answer as GC's do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support import TIMEOUT, poll_until

from sdk.globus_compute import Batch, Client, Executor

SCRIPT = Path(__file__).parent / "scripts" / "gc_tutorial.py"
GC_IMPORT = "from globus_compute_sdk import Client, Executor"


def test_the_gc_tutorial_runs_with_only_its_imports_changed(cluster: Any, tmp_path: Path) -> None:
    service, client, registration = cluster.running()
    source = SCRIPT.read_text()
    assert source.count(GC_IMPORT) == 1
    script = tmp_path / "tutorial.py"
    script.write_text(source.replace(GC_IMPORT, "from sdk.globus_compute import Client, Executor"))
    env = {**os.environ, "FABRIC_SERVICE_URL": service.url, "FABRIC_TOKEN": client._token,
           "TUTORIAL_ENDPOINT": registration["endpoint_id"], "FABRIC_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=3 * TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "Hello World!"
    assert lines[2] == "squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    assert lines[3].startswith("Exception: ") and "ValueError: as planned" in done.stdout  # with its traceback
    assert lines[-2:] == ["executor: Hello World!", "registered: 49"]
    assert "user_endpoint_config" not in done.stderr  # an empty one is no surprise


def square(x: int) -> int:
    return x * x


def test_gc_shapes(cluster: Any) -> None:
    service, plain, registration = cluster.running()
    endpoint_id = registration["endpoint_id"]
    client = Client(service.url, plain._token)
    with pytest.warns(DeprecationWarning, match="function_name"):
        function_id = client.register_function(square, function_name="square")
    public_id = client.register_function(lambda: 1, public=True)
    assert client.get_function_sharing(public_id)["public"] is True
    batch = client.create_batch(resource_specification={"priority": 2})
    assert isinstance(batch, Batch) and not len(batch)
    batch.add(function_id, args=(3,))
    batch.add(function_id, kwargs={"x": 4})
    with pytest.raises(TypeError):
        batch.add(function_id, args=5)  # type: ignore[arg-type]
    reply = client.batch_run(endpoint_id, batch)
    assert set(reply) == {"tasks", "task_group_id", "endpoint_id", "request_id"}
    assert reply["endpoint_id"] == endpoint_id and len(reply["tasks"][function_id]) == 2
    first, second = reply["tasks"][function_id]
    results = poll_until(lambda: (r := client.get_batch_result([first, second])) and
                         not any(t["pending"] for t in r.values()) and r, "the batch")
    assert results[first]["result"] == 9 and results[second]["result"] == 16
    assert results[first]["status"] == "success" and float(results[first]["completion_t"]) > 0
    with pytest.raises(ValueError, match="No tasks"):
        client.batch_run(endpoint_id, client.create_batch())
    with pytest.warns(UserWarning, match="user_endpoint_config"):
        executor = Executor(endpoint_id, client, user_endpoint_config={"worker_init": "module load x"},
                            resource_specification={"priority": 1}, batch_size=10)
    with executor:
        assert executor.resource_specification == {"priority": 1}
        assert executor.submit(square, 5).result(TIMEOUT) == 25
