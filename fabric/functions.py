"""Function kinds that are not plain Python: shell commands and MPI programs.

``ShellFunction`` and ``MPIFunction`` have Globus Compute's names and semantics::

    from fabric.functions import ShellFunction, MPIFunction
    echo = ShellFunction("echo {message}", walltime=5, snippet_lines=100)
    result = endpoint.submit(echo, message="hello").result()   # a ShellResult
    result.returncode, result.stdout, result.stderr, result.cmd

    hello = MPIFunction("./hello_mpi {n}")
    endpoint.submit_task(hello, kwargs={"n": 3},
                         resource_specification={"num_nodes": 1, "ranks_per_node": 4})

Both are ordinary callables: the worker calls them like any function. The command
template is formatted with the call's arguments (``str.format``); a key it names that
the call does not give raises ``TemplateKeyMissing`` at submit, before anything runs
(``check_call``). The command runs with bash in a fresh sandbox folder per task
(under ``$FABRIC_TASK_SANDBOX_ROOT``), its output streamed and only the last
``snippet_lines`` lines kept (``fabric.shell``). A non-zero exit is a ``ShellResult``
with that ``returncode`` (127: command not found; 124: killed at ``walltime``, with its
whole process group), not an exception, unless ``raise_on_error=True``
(``ShellCommandFailed``).

``MPIFunction`` prefixes the command with ``$FABRIC_MPI_PREFIX`` (also exported as
``$PARSL_MPI_PREFIX``, Globus Compute's name), which the worker sets for each task from
its ``resource_specification`` and the block's launcher (``mpiexec`` locally, ``srun``
in a Slurm block; ``worker.mpi``).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterable
from typing import Any

from fabric.errors import (ContainerNotAllowed, ResourcesUnavailable, ResourceSpecError, ShellCommandFailed, TaskError,
                           TemplateKeyMissing)
from fabric.protocol import Task
from fabric.shell import run_command

RESOURCE_KEYS = ("num_nodes", "ranks_per_node", "num_ranks")
"""The keys of an MPI task's ``resource_specification`` (Globus Compute's names)."""
TASK_SPEC_KEYS = frozenset({"container", *RESOURCE_KEYS})
"""What of a task's specification travels with it to the endpoint (``protocol.Task.spec``)."""


@dataclasses.dataclass(slots=True)
class ShellResult:
    """What a shell command did: the command line run, the tails of its output, its exit status.

    ``exception_name`` is ``subprocess.CalledProcessError`` for a non-zero exit,
    ``subprocess.TimeoutExpired`` past the walltime (``returncode`` 124), else None.
    """

    cmd: str
    stdout: str
    stderr: str
    returncode: int
    exception_name: str | None = None

    def __str__(self) -> str:
        return f"Command {self.cmd} returned with exit status: {self.returncode}"


class ShellFunction:
    """A shell command template run as a function; calling it returns a ``ShellResult``.

    ``cmd``: the template (``str.format`` fields filled from the call's arguments);
    ``stdout`` / ``stderr``: files (relative to the task's sandbox folder, or absolute)
    that also receive the whole output; ``walltime``: seconds before the command's
    process group is killed; ``snippet_lines``: how many final lines of each stream the
    result keeps; ``raise_on_error``: raise ``ShellCommandFailed`` on a non-zero exit.
    """

    def __init__(self, cmd: str, stdout: str | None = None, stderr: str | None = None,
                 walltime: float | None = None, snippet_lines: int = 1000, *, raise_on_error: bool = False) -> None:
        if not isinstance(cmd, str) or not cmd.strip():
            raise TypeError("cmd must be a non-empty command template (a string)")
        if walltime is not None and not walltime > 0:
            raise ValueError(f"walltime must be a positive number of seconds, got {walltime!r}")
        if not isinstance(snippet_lines, int) or snippet_lines < 0:
            raise ValueError(f"snippet_lines must be a non-negative integer, got {snippet_lines!r}")
        self.cmd, self.stdout, self.stderr = cmd, stdout, stderr
        self.walltime, self.snippet_lines, self.raise_on_error = walltime, snippet_lines, raise_on_error
        self.fields = template_fields(cmd)

    @property
    def __name__(self) -> str:
        return f"{type(self).__name__}: {self.cmd}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cmd!r}, walltime={self.walltime!r})"

    def check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise ``TemplateKeyMissing`` if the template names a field the call does not give."""
        for field in self.fields:
            if field.isdigit():
                if int(field) >= len(args):
                    raise TemplateKeyMissing(field, self.cmd)
            elif field == "":
                continue  # automatic numbering: str.format itself reports a shortfall
            elif field not in kwargs:
                raise TemplateKeyMissing(field, self.cmd)

    def format(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        self.check_call(args, kwargs)
        try:
            return self.cmd.format(*args, **kwargs)
        except IndexError as exc:
            raise TemplateKeyMissing(str(len(args)), self.cmd) from exc

    def __call__(self, *args: Any, **kwargs: Any) -> ShellResult:
        return self.execute(self.format(args, kwargs))

    def execute(self, cmd: str) -> ShellResult:
        """Run an already formatted command line (on the worker)."""
        outcome = run_command(cmd, walltime=self.walltime, snippet_lines=self.snippet_lines,
                              stdout_path=self.stdout, stderr_path=self.stderr)
        result = ShellResult(cmd, outcome.stdout, outcome.stderr, outcome.returncode, outcome.exception_name)
        if self.raise_on_error and result.returncode != 0:
            raise ShellCommandFailed(cmd, result.returncode, result.stderr)
        return result


class MPIFunction(ShellFunction):
    """A ``ShellFunction`` whose command the worker launches as an MPI program: it runs as
    ``$FABRIC_MPI_PREFIX <command>``. Submit it with a ``resource_specification``
    (``num_nodes``, ``ranks_per_node``, ``num_ranks``); without one it fails."""

    def __call__(self, *args: Any, **kwargs: Any) -> ShellResult:
        import os

        if not os.environ.get("FABRIC_MPI_PREFIX"):
            raise ResourceSpecError("an MPIFunction needs a resource_specification "
                                    "(num_nodes, ranks_per_node, num_ranks) on its task")
        return self.execute("$FABRIC_MPI_PREFIX " + self.format(args, kwargs))


def template_fields(template: str) -> list[str]:
    """The field names a ``str.format`` template uses (``"0"`` for positional ``{0}``)."""
    fields = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        name = field.split(".", 1)[0].split("[", 1)[0]
        fields.append(name)
    return fields


def check_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """At submit: raise ``TemplateKeyMissing`` now for a shell function's missing field."""
    if isinstance(fn, ShellFunction):
        fn.check_call(args, kwargs)


def check_resource_specification(spec: dict[str, Any] | None, *, nodes_per_block: int | None = None,
                                 ) -> dict[str, int] | None:
    """A ``resource_specification`` completed and checked: ``num_ranks`` defaults to
    ``num_nodes * ranks_per_node``, ``ranks_per_node`` to ``num_ranks / num_nodes``.
    Raises ``ResourceSpecError`` for unknown keys, values that are not positive integers,
    inconsistent values, or more nodes than a block has."""
    if not spec:
        return None
    if not isinstance(spec, dict):
        raise ResourceSpecError("resource_specification must be a dict")
    unknown = set(spec) - set(RESOURCE_KEYS)
    if unknown:
        raise ResourceSpecError(f"resource_specification: unknown keys {sorted(unknown)} "
                                f"(known: {', '.join(RESOURCE_KEYS)})")
    for key, value in spec.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ResourceSpecError(f"resource_specification.{key} must be a positive integer, got {value!r}")
    nodes = spec.get("num_nodes", 1)
    per_node = spec.get("ranks_per_node")
    ranks = spec.get("num_ranks")
    if ranks is None:
        ranks = nodes * (per_node or 1)
    if per_node is None:
        per_node = -(-ranks // nodes)
    if ranks > nodes * per_node or ranks < nodes:
        raise ResourceSpecError(f"resource_specification: {ranks} ranks do not fit {nodes} nodes "
                                f"of {per_node} ranks each")
    if nodes_per_block is not None and nodes > nodes_per_block:
        raise ResourceSpecError(f"resource_specification asks for {nodes} nodes; a block of this endpoint "
                                f"has {nodes_per_block}")
    return {"num_nodes": nodes, "ranks_per_node": per_node, "num_ranks": ranks}


class TaskRequirements:
    """What an endpoint can give a task that asks (``protocol.Task.spec``): its
    ``containers`` (names) and the nodes of one of its blocks. The interchange checks each
    such task on arrival (and the local ``Endpoint`` at submit): a container the endpoint
    does not offer is ``ContainerNotAllowed``; more nodes than a block has, or ranks that
    cannot be, ``ResourcesUnavailable``. A refused task is never queued and never runs."""

    def __init__(self, containers: Iterable[str], nodes_per_block: int) -> None:
        self.containers = frozenset(containers)
        self.nodes_per_block = nodes_per_block

    def refusal(self, task: Task) -> TaskError | None:
        """Why ``task`` cannot run here (None: it can)."""
        spec = task.spec
        if not spec:
            return None
        container = spec.get("container")
        if container is not None and container not in self.containers:
            return ContainerNotAllowed(task_id=task.task_id, container=container, allowed=sorted(self.containers))
        try:
            check_resource_specification({k: v for k, v in spec.items() if k in RESOURCE_KEYS},
                                         nodes_per_block=self.nodes_per_block)
        except ResourceSpecError as exc:
            return ResourcesUnavailable(task_id=task.task_id, reason=str(exc))
        return None
