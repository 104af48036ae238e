"""Tasks in containers through a real local endpoint: real bubblewrap and podman (no image
pulled: podman runs on the node's own root, copy on write). A task inside sees the
container's files and no network; a warm container serves the next tasks; a container the
endpoint does not offer is refused and nothing runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from container_functions import look_around, sleep_inside
from tests.support import TIMEOUT, poll_until

from fabric.config import ContainerConfig
from fabric.errors import ContainerNotAllowed, TaskTimeout
from fabric.functions import ShellFunction


@pytest.fixture
def host_port() -> Iterator[int]:
    """A TCP port listening on this host's loopback: reachable from the host, not from a
    sandbox without network."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "marker").write_text("only in the container\n")
    folder.chmod(0o755)
    return folder


CONTAINERS = {
    "bubblewrap": ("/mnt", lambda data: ContainerConfig(type="bubblewrap", binds=[f"{data}:/mnt:ro"])),
    "podman": ("/data", lambda data: ContainerConfig(type="podman", rootfs="/:O", binds=[f"{data}:/data:ro"])),
}


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_a_task_in_a_container_sees_its_files_no_network_and_reuses_it_warm(make_endpoint, data_dir: Path,
                                                                            host_port: int, kind: str) -> None:
    assert shutil.which("bwrap" if kind == "bubblewrap" else kind), f"{kind} is installed by .ci/run"
    inside_dir, make_config = CONTAINERS[kind]
    endpoint = make_endpoint(containers={"box": make_config(data_dir)})

    outside = endpoint.submit(look_around, inside_dir, host_port, count=False).result(TIMEOUT)
    assert outside["marker"] is None and outside["reached_host"]  # the same function, not in a container

    futures = [endpoint.submit_task(look_around, (inside_dir, host_port), container="box") for _ in range(3)]
    seen = [future.result(TIMEOUT) for future in futures]
    for inside in seen:
        assert inside["marker"] == "only in the container\n"
        assert not inside["reached_host"] and inside["interfaces"] == ["lo"]
    if kind == "bubblewrap":
        assert not any(inside["system_writable"] for inside in seen)  # a read-only system
    assert [inside["tasks_in_this_container"] for inside in seen] == [1, 2, 3]  # one warm container
    assert [f.timing["start"] for f in futures] == ["cold", "warm", "warm"]
    assert futures[0].timing["container"] == "box" and futures[0].timing["start_seconds"] > 0

    shell = endpoint.submit_task(ShellFunction("cat {path}/marker; pwd"), kwargs={"path": inside_dir},
                                 container="box").result(TIMEOUT)
    assert shell.returncode == 0 and shell.stdout.startswith("only in the container\n/tmp/fabric-tasks/task-")


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_a_container_task_past_its_walltime_takes_its_container_with_it(make_endpoint, data_dir: Path,
                                                                        kind: str) -> None:
    endpoint = make_endpoint(containers={"box": CONTAINERS[kind][1](data_dir)})
    with pytest.raises(TaskTimeout):
        endpoint.submit_task(sleep_inside, (60,), container="box", walltime=1.0).result(TIMEOUT)
    again = endpoint.submit_task(sleep_inside, (0,), container="box")  # a fresh worker, a fresh container
    assert again.result(TIMEOUT) == "woke" and again.timing["start"] == "cold"
    endpoint.shutdown()
    if kind == "podman":  # its containers are not our children: ask podman for any, in any state
        poll_until(lambda: not subprocess.run(["podman", "ps", "-aq"], capture_output=True, text=True,
                                              check=True).stdout.strip(), "podman's containers to be gone")


def test_a_container_the_endpoint_does_not_offer_is_refused_and_nothing_runs(make_endpoint, tmp_path: Path) -> None:
    endpoint = make_endpoint(containers={"box": ContainerConfig(type="bubblewrap")})
    marker = tmp_path / "ran"
    with pytest.raises(ContainerNotAllowed) as caught:
        endpoint.submit_task(ShellFunction("touch {m}"), kwargs={"m": str(marker)}, container="other")
    assert caught.value.container == "other" and caught.value.allowed == ["box"]
    with pytest.raises(ContainerNotAllowed):
        make_endpoint(container="box")  # an endpoint offering no containers
    assert not marker.exists()


APPTAINER_IMAGE = os.environ.get("FABRIC_TEST_APPTAINER_IMAGE")


@pytest.mark.skipif(shutil.which("apptainer") is None, reason="apptainer is not installed (not in Debian 12)")
@pytest.mark.skipif(not APPTAINER_IMAGE, reason="no local apptainer image named in FABRIC_TEST_APPTAINER_IMAGE "
                                              "(none can be pulled here)")
def test_apptainer_runs_a_task_in_its_image(make_endpoint, data_dir: Path, host_port: int) -> None:
    endpoint = make_endpoint(containers={"sif": ContainerConfig(type="apptainer", image=APPTAINER_IMAGE,
                                                                binds=[f"{data_dir}:/mnt:ro"])})
    first, second = (endpoint.submit_task(look_around, ("/mnt", host_port), container="sif") for _ in range(2))
    assert first.result(TIMEOUT)["marker"] == "only in the container\n" and not first.result()["reached_host"]
    assert second.result(TIMEOUT)["tasks_in_this_container"] == 2 and second.timing["start"] == "warm"
