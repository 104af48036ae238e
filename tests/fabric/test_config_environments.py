"""Containers and MPI settings in the endpoint's configuration (what config.json may hold):
checked where written, carried to every manager, to its workers as environment variables."""

from __future__ import annotations

import json

import pytest

from fabric.config import (CONTAINERS_VARIABLE, MPI_LAUNCHER_VARIABLE, MPI_OPTIONS_VARIABLE, ContainerConfig,
                           InterchangeConfig, ManagerConfig, worker_settings)
from fabric.errors import ConfigError

SETTINGS = {
    "upstream_address": "tcp://127.0.0.1:5000", "endpoint_id": "e",
    "containers": {"sandbox": {"type": "bubblewrap", "binds": ["/data:/mnt:ro"]},
                   "overlay": {"type": "podman", "rootfs": "/:O", "options": ["--cpus=2"]}},
    "mpi_launcher": "mpirun", "mpi_options": ["--oversubscribe"],
}


def test_containers_and_mpi_settings_reach_managers_and_their_workers() -> None:
    config = InterchangeConfig.from_json(json.dumps(SETTINGS))
    assert config.containers["overlay"] == ContainerConfig(type="podman", rootfs="/:O", options=["--cpus=2"])
    manager = ManagerConfig.from_json(config.manager_config("m", "tcp://127.0.0.1:5001").to_json())
    assert manager.containers == config.containers and manager.mpi_options == ["--oversubscribe"]
    env = worker_settings(manager)
    assert json.loads(env[CONTAINERS_VARIABLE])["sandbox"]["binds"] == ["/data:/mnt:ro"]
    assert env[MPI_LAUNCHER_VARIABLE] == "mpirun" and json.loads(env[MPI_OPTIONS_VARIABLE]) == ["--oversubscribe"]
    assert worker_settings(ManagerConfig(interchange_address="tcp://127.0.0.1:1", manager_id="m")) == {}


@pytest.mark.parametrize("container, message", [
    ({"type": "lxc"}, "container type must be one of"),
    ({"type": "podman"}, "needs an image or a rootfs"),
    ({"type": "docker", "rootfs": "/"}, "needs an image"),
    ({"type": "podman", "image": "a", "rootfs": "/"}, "an image or a rootfs, not both"),
    ({"type": "bubblewrap", "binds": ["/only-one-side"]}, "host:container"),
    ({"type": "bubblewrap", "extra": 1}, "unknown settings"),
])
def test_a_container_that_cannot_work_is_a_config_error(container: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InterchangeConfig.from_dict({**SETTINGS, "containers": {"bad": container}})


def test_an_unknown_mpi_launcher_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mpi_launcher"):
        InterchangeConfig.from_dict({**SETTINGS, "mpi_launcher": "aprun"})
