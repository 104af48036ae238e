"""A real one-node Slurm cluster for the session (``scripts/slurm-cluster.sh``), and
endpoints whose blocks are Slurm jobs on it.

Without Slurm installed (or without root, which its daemons need) these tests are
skipped; ``.ci/run`` installs it. When Slurm is installed but the cluster does not
start, the tests fail with the script's output: that is a real problem to see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric import Endpoint
from fabric.config import ProviderConfig, ScalingConfig
from slurm_helpers import live_jobs, poll_until

REPOSITORY = Path(__file__).resolve().parents[2]
SCRIPT = REPOSITORY / "scripts" / "slurm-cluster.sh"
CLUSTER_DIR = "/tmp/fabric-slurm-pytest"
CLUSTER_PORT = "16837"
FAST = {"heartbeat_period": 0.5, "heartbeat_threshold": 5.0}


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the Slurm daemons need root"
    for program in ("sbatch", "squeue", "scancel", "sinfo", "scontrol"):
        if shutil.which(program) is None:
            return f"Slurm is not installed ({program} not found): run scripts/slurm-cluster.sh install"
    for daemon in ("slurmctld", "slurmd", "munged"):
        if shutil.which(daemon) is None and not os.access(f"/usr/sbin/{daemon}", os.X_OK):
            return f"{daemon} is not installed: run scripts/slurm-cluster.sh install"
    return None


def _cluster(command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FABRIC_SLURM_DIR": CLUSTER_DIR, "FABRIC_SLURM_PORT": CLUSTER_PORT}
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """Start the cluster once; every test of the session uses it. Yields SLURM_CONF."""
    reason = _missing()
    if reason and os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs Slurm: the Slurm tests must run in CI)")
    if reason:
        pytest.skip(reason)
    started = _cluster("start")
    if started.returncode != 0:
        pytest.fail(f"the Slurm cluster did not start:\n{started.stdout}\n{started.stderr}")
    conf = started.stdout.strip().rpartition("SLURM_CONF=")[2]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # inherited by the interchange and its sbatch calls
    try:
        yield conf
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        stopped = _cluster("stop")
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A folder jobs can read and write (pytest's own tmp_path is private to root: 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fabric-slurm-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def slurm_endpoint(slurm_cluster: str, scratch: Path) -> Iterator[Callable[..., Endpoint]]:
    """``slurm_endpoint(provider={...}, scaling={...}, **endpoint_options)``: an ``Endpoint``
    whose blocks are Slurm jobs; shut down after the test, leaving no job behind."""
    endpoints: list[Endpoint] = []

    def make(*, provider: dict[str, Any] | None = None, scaling: dict[str, Any] | None = None,
             **options: Any) -> Endpoint:
        provider_config = ProviderConfig(**{"kind": "slurm", "script_dir": str(scratch), "poll_period": 0.5,
                                            "walltime": 600, **(provider or {})})
        scaling_config = ScalingConfig(**{"init_blocks": 0, "min_blocks": 0, "max_blocks": 2, "max_idletime": 2.0,
                                          "strategy_period": 0.25, **(scaling or {})})
        endpoint = Endpoint(**{"workers": 2, **FAST, **options}, provider=provider_config, scaling=scaling_config)
        endpoints.append(endpoint)
        return endpoint

    yield make
    for endpoint in endpoints:
        endpoint.shutdown(wait=False, cancel_futures=True)
    for endpoint in endpoints:
        poll_until(lambda e=endpoint: not live_jobs(e), f"the jobs of {endpoint.endpoint_id} to end")
