"""``ManagerKeys``: the key pairs an interchange makes for its managers, and how the manager
command points each manager of a block at its own key file (no sockets are connected here;
tests/e2e/test_e2e_manager_curve.py runs real managers over CurveZMQ)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from fabric.config import InterchangeConfig, ManagerConfig, ProviderConfig
from fabric.errors import ConfigError
from interchange.manager_keys import ManagerKeys
from interchange.providers.launchers import block_command, manager_command
from manager.manager import read_key_file


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[ManagerKeys]:
    context: zmq.Context = zmq.Context()
    made = ManagerKeys(context, "ep", str(tmp_path / "scripts"))
    yield made
    made.close()
    context.term()


def expand(command: str, **env: str) -> ManagerConfig:
    """The configuration a manager of ``command`` receives after a real shell expands it."""
    probe = command.replace(" -m manager --config ", " -c 'import sys; print(sys.argv[1])' ", 1)
    done = subprocess.run(["/bin/bash", "-c", probe], capture_output=True, text=True, check=True,
                          env={"PATH": os.environ["PATH"], **env})
    return ManagerConfig.from_json(done.stdout)


def test_each_node_of_a_block_gets_its_own_key_file_and_no_secret_is_on_the_command(keys: ManagerKeys,
                                                                                    tmp_path: Path) -> None:
    config = InterchangeConfig(upstream_address="tcp://127.0.0.1:1", endpoint_id="ep",
                               provider=ProviderConfig(kind="slurm", nodes_per_block=3,
                                                       script_dir=str(tmp_path / "scripts")))
    command = manager_command(config, "tcp://10.0.0.1:54001", "b4", keys=keys)
    managers = [expand(command, FABRIC_NODE_RANK=str(rank)) for rank in range(3)]
    assert {m.curve_server_key for m in managers} == {keys.public}
    files = [Path(m.curve_key_file or "") for m in managers]
    assert len(set(files)) == 3 and all(f.parent == keys.folder for f in files)
    assert keys.folder.parent == tmp_path / "scripts" and stat.S_IMODE(keys.folder.stat().st_mode) == 0o700
    for manager, path in zip(managers, files):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        public, secret = read_key_file(str(path))
        assert secret.decode() not in command and keys.callback("fabric-managers", public)
        assert keys._user_id(z85.decode(public)) == manager.manager_id
    assert not keys.callback("fabric-managers", zmq.curve_keypair()[0])
    assert str(keys.folder / "b5.") in block_command(config, "tcp://10.0.0.1:54001", "b5", keys)
    plain = expand(manager_command(config, "tcp://10.0.0.1:54001", "b6"))
    assert plain.curve_key_file is None and plain.curve_server_key is None


def test_closing_removes_the_key_files(tmp_path: Path) -> None:
    context: zmq.Context = zmq.Context()
    keys = ManagerKeys(context, "ep")  # no script_dir: the system's temporary folder
    path = Path(keys.issue("b1", 1, "RANK").replace("RANK", "0"))
    assert path.exists() and keys.folder.parent == Path(os.environ.get("TMPDIR", "/tmp"))
    keys.close()
    context.term()
    assert not keys.folder.exists()


def test_a_manager_without_its_key_file_fails_to_start_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read this manager's CurveZMQ keys"):
        read_key_file(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"public": "short", "secret": "short"}))
    with pytest.raises(ConfigError, match="40 z85"):
        read_key_file(str(bad))
    with pytest.raises(ConfigError, match="go together"):
        ManagerConfig(interchange_address="tcp://h:1", manager_id="m", curve_key_file=str(bad))
