"""Shell functions through the service: the Executor registers a ShellFunction like any
function, and the endpoint's workers run its command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support import TIMEOUT
from tests.support.service import user

from fabric import Executor
from fabric.config import ContainerConfig
from fabric.errors import ContainerNotAllowed, TemplateKeyMissing
from fabric.functions import ShellFunction


def test_a_shell_function_runs_through_the_service(cluster: Any, tmp_path: Path) -> None:
    _, client, registration = cluster.running()
    count = ShellFunction("seq 1 {n}; echo done >&2; exit {code}", snippet_lines=2)
    with Executor(registration["endpoint_id"], client=client) as executor:
        result = executor.submit(count, n=50, code=4).result(TIMEOUT)
        assert (result.stdout, result.stderr, result.returncode) == ("49\n50\n", "done\n", 4)
        assert result.cmd == "seq 1 50; echo done >&2; exit 4"
        with pytest.raises(TemplateKeyMissing, match="'code'"):
            executor.submit(count, n=1)


def test_a_task_asks_for_a_container_through_the_service(cluster: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "marker").write_text("inside\n")
    service = cluster.service()
    client = user(service)
    registration = client.register_endpoint("boxed")
    cluster.endpoint(registration, containers={"box": ContainerConfig(type="bubblewrap", binds=[f"{data}:/mnt:ro"])})
    look = ShellFunction("cat /mnt/marker")
    with Executor(registration["endpoint_id"], client=client, container="box") as executor:
        assert executor.submit(look).result(TIMEOUT).stdout == "inside\n"
        executor.container = "elsewhere"
        with pytest.raises(ContainerNotAllowed) as caught:
            executor.submit(look).result(TIMEOUT)
        assert caught.value.allowed == ["box"]
        executor.container = None
        assert executor.submit(look).result(TIMEOUT).returncode == 1  # outside: no such file
