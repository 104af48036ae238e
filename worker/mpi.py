"""The MPI launcher prefix of a task, from its ``resource_specification`` and its block.

``mpi_prefix`` is a pure function: the launcher (``mpiexec`` / ``mpirun`` on a plain
node, ``srun`` inside a Slurm job, where Slurm places the ranks on the job's nodes and
makes the step wait for free ones), the endpoint's ``mpi_options``, and the task's
ranks. Elsewhere ``reserve_nodes`` holds the task's nodes (whole nodes, as Globus
Compute's MPI engine does) against the other MPI tasks of the same manager's workers.
``task_environment`` gives the variables a task sees while it runs:
``FABRIC_MPI_PREFIX`` (and ``PARSL_MPI_PREFIX``, Globus Compute's name, which its
``MPIFunction`` uses), ``FABRIC_NUM_NODES``, ``FABRIC_RANKS_PER_NODE``, ``FABRIC_NUM_RANKS``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping

from fabric.errors import ResourceSpecError
from fabric.functions import RESOURCE_KEYS, check_resource_specification



def resolve_launcher(launcher: str, environ: Mapping[str, str]) -> str:
    """``auto``: ``srun`` inside a Slurm job, else ``mpiexec``."""
    if launcher != "auto":
        return launcher
    return "srun" if environ.get("SLURM_JOB_ID") else "mpiexec"


def block_nodes(environ: Mapping[str, str]) -> list[str]:
    """The nodes of this block: the Slurm job's (``SLURM_JOB_NODELIST``), else this node."""
    return list(_expand(environ.get("SLURM_JOB_NODELIST", "")))


@functools.lru_cache(maxsize=4)
def _expand(nodelist: str) -> tuple[str, ...]:
    if nodelist and shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
            return tuple(out.split()) or ("localhost",)
        except (OSError, subprocess.SubprocessError):
            pass
    return ("localhost",)


def mpi_prefix(launcher: str, options: list[str], resources: Mapping[str, int], nodes: list[str]) -> str:
    """The command line that starts ``resources`` ranks with ``launcher`` on ``nodes``."""
    count, per_node, ranks = resources["num_nodes"], resources["ranks_per_node"], resources["num_ranks"]
    if count > len(nodes):
        raise ResourceSpecError(f"the task asks for {count} nodes; this block has {len(nodes)}")
    if launcher == "srun":
        words = ["srun", *options, f"--nodes={count}", f"--ntasks={ranks}"]
        if ranks == count * per_node:
            words.append(f"--ntasks-per-node={per_node}")
    else:
        words = [launcher, *options, "-n", str(ranks)]
        if count > 1 or nodes != ["localhost"]:
            words += ["--host", ",".join(f"{node}:{per_node}" for node in nodes[:count])]
    return shlex.join(words)


def task_environment(spec: Mapping[str, object], launcher: str, options: list[str],
                     environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The variables of a task whose spec asks for MPI resources (empty if it does not), and
    the nodes it must reserve while it runs (none under ``srun``: Slurm reserves them)."""
    asked = {key: spec[key] for key in RESOURCE_KEYS if key in spec}
    if not asked:
        return {}, []
    resources = check_resource_specification(asked)
    assert resources is not None
    launcher = resolve_launcher(launcher, environ)
    nodes = block_nodes(environ)
    prefix = mpi_prefix(launcher, options, resources, nodes)
    variables = {
        "FABRIC_MPI_PREFIX": prefix, "PARSL_MPI_PREFIX": prefix,
        "FABRIC_NUM_NODES": str(resources["num_nodes"]), "FABRIC_RANKS_PER_NODE": str(resources["ranks_per_node"]),
        "FABRIC_NUM_RANKS": str(resources["num_ranks"]),
    }
    return variables, [] if launcher == "srun" else nodes[:resources["num_nodes"]]


@contextlib.contextmanager
def reserve_nodes(lock_dir: str, nodes: list[str]) -> Iterator[None]:
    """Hold ``nodes`` for one MPI task: an exclusive lock per node, shared by the workers of
    one manager (``lock_dir``), taken in name order so two tasks never deadlock; a task
    waits until its nodes are free."""
    if not nodes:
        yield
        return
    os.makedirs(lock_dir, exist_ok=True)
    with contextlib.ExitStack() as held:
        for node in sorted(nodes):
            lock = held.enter_context(open(os.path.join(lock_dir, f"{node}.lock"), "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
