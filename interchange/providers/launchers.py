"""Launchers: the shell command that starts one manager on each node of a block.

The interchange makes one manager command per block (``manager_command``): ``python -m
manager --config JSON`` where the JSON leaves two values to the shell, so one command
serves every node of a block:

* the manager id ends with ``$FABRIC_NODE_RANK`` (the launcher sets it per node), and
* ``drain_at`` is ``$FABRIC_DRAIN_AT`` (set by the job script from the walltime, else null).

With CurveZMQ to the managers (``ManagerKeys``), each manager's key file path ends with
its node rank too; the secret keys themselves are never on the command line.

A launcher wraps that command for ``nodes`` nodes: ``single`` runs the managers on the
node the block's script runs on, ``srun`` starts one per node of a Slurm allocation,
``mpiexec`` one per node under PBS Pro (or any MPI launcher that takes ``-n`` and ``-ppn``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import sys
from collections.abc import Callable

from fabric.config import InterchangeConfig
from fabric.errors import ConfigError
from interchange.manager_keys import ManagerKeys

_RANK = "@@FABRIC_NODE_RANK@@"
_DRAIN_AT = "@@FABRIC_DRAIN_AT@@"
_SHELL_VALUES = {f'"{_DRAIN_AT}"': '"${FABRIC_DRAIN_AT:-null}"', _RANK: '"${FABRIC_NODE_RANK:-0}"'}
_PLACEHOLDERS = re.compile("(" + "|".join(map(re.escape, _SHELL_VALUES)) + ")")

Launcher = Callable[[str, int], str]
"""``launcher(manager_command, nodes) -> shell command`` starting one manager per node."""


def manager_command(config: InterchangeConfig, manager_address: str, block_id: str, python: str | None = None,
                    keys: ManagerKeys | None = None) -> str:
    """The shell command that runs one manager of block ``block_id`` (see the module docstring);
    with ``keys``, its managers get new CurveZMQ key pairs."""
    curve: dict[str, str] = {}
    if keys is not None:
        curve = {"curve_server_key": keys.public,
                 "curve_key_file": keys.issue(block_id, config.provider.nodes_per_block, _RANK)}
    manager = config.manager_config(f"{config.endpoint_id}-{block_id}-{_RANK}", manager_address, block_id, **curve)
    values = dataclasses.asdict(manager)
    values["drain_at"] = _DRAIN_AT
    parts = _PLACEHOLDERS.split(json.dumps(values))
    quoted = "".join(_SHELL_VALUES.get(part) or shlex.quote(part) for part in parts if part)
    return f"{shlex.quote(python or sys.executable)} -m manager --config {quoted}"


def single(command: str, nodes: int) -> str:
    """Every manager on this node: one ``exec``s (so the block is that one process), or
    ``nodes`` of them in the background until all have exited."""
    if nodes == 1:
        return f"export FABRIC_NODE_RANK=0; exec {command}"
    starts = "".join(f"FABRIC_NODE_RANK={rank}; export FABRIC_NODE_RANK; {command} &\n" for rank in range(nodes))
    return f"{starts}wait"


def srun(command: str, nodes: int) -> str:
    """One manager per node of a Slurm allocation, ranked by ``SLURM_PROCID``."""
    inner = f"export FABRIC_NODE_RANK=$SLURM_PROCID; exec {command}"
    return (f"srun --ntasks={nodes} --ntasks-per-node=1 --nodes={nodes} --kill-on-bad-exit=0 "
            f"/bin/bash -c {shlex.quote(inner)}")


def mpiexec(command: str, nodes: int) -> str:
    """One manager per node through ``mpiexec -n N -ppn 1`` (MPICH, Cray PALS, Intel MPI)."""
    rank = "${PMI_RANK:-${PALS_RANKID:-${OMPI_COMM_WORLD_RANK:-0}}}"
    inner = f"export FABRIC_NODE_RANK={rank}; exec {command}"
    return f"mpiexec -n {nodes} -ppn 1 /bin/bash -c {shlex.quote(inner)}"


LAUNCHERS: dict[str, Launcher] = {"single": single, "srun": srun, "mpiexec": mpiexec}
DEFAULT_LAUNCHERS = {"local": "single", "slurm": "srun", "pbspro": "mpiexec", "kubernetes": "single"}


def launcher_for(kind: str, name: str = "auto") -> Launcher:
    """The launcher called ``name`` (``auto``: the usual one for provider ``kind``)."""
    chosen = DEFAULT_LAUNCHERS.get(kind, "single") if name == "auto" else name
    try:
        return LAUNCHERS[chosen]
    except KeyError:
        raise ConfigError(f"unknown launcher {name!r}; known: {sorted(LAUNCHERS)}") from None


def block_command(config: InterchangeConfig, manager_address: str, block_id: str,
                  keys: ManagerKeys | None = None) -> str:
    """The whole command a block runs: its managers, started by the configured launcher."""
    provider = config.provider
    python = provider.python or ("python3" if provider.kind == "kubernetes" else None)
    launch = launcher_for(provider.kind, provider.launcher)
    return launch(manager_command(config, manager_address, block_id, python, keys), provider.nodes_per_block)
