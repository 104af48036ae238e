"""What a task with a ``spec`` (``protocol.Task.spec``) gets from its worker.

The manager hands its workers the endpoint's settings in their environment
(``manager.environments``): ``FABRIC_MPI_LAUNCHER``, ``FABRIC_MPI_OPTIONS`` and
``FABRIC_CONTAINERS`` (JSON). ``TaskEnvironments.run`` then runs a task:

* asking for a ``container``: only inside that container, through its warm runner
  (``worker.containers``); a name the endpoint does not offer fails with
  ``ContainerNotAllowed`` and the task never runs, here or anywhere;
* asking for MPI resources: with ``FABRIC_MPI_PREFIX`` and friends set for the length of
  the call, holding its nodes against the other MPI tasks of the manager's workers
  (``worker.mpi``; lock files in ``<tmp>/fabric-mpi-nodes-<manager pid>``).

Tasks without a spec never come here: the worker's hot path is untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from fabric import protocol
from fabric.config import CONTAINERS_VARIABLE, MPI_LAUNCHER_VARIABLE, MPI_OPTIONS_VARIABLE, ContainerConfig
from fabric.errors import ContainerError, ContainerNotAllowed, ResourceSpecError
from fabric.protocol import RESULT_REMOTE_ERROR
from worker.mpi import reserve_nodes, task_environment

Outcome = tuple[Any, int, bytes]


class TaskEnvironments:
    """The worker's containers and MPI settings, read once from its environment."""

    def __init__(self, environ: Mapping[str, str], lock_dir: str | None = None) -> None:
        self.environ = environ
        self.lock_dir = lock_dir or os.path.join(tempfile.gettempdir(), f"fabric-mpi-nodes-{os.getppid()}")
        self.launcher = environ.get(MPI_LAUNCHER_VARIABLE, "auto")
        self.options: list[str] = json.loads(environ.get(MPI_OPTIONS_VARIABLE) or "[]")
        self.containers = {name: ContainerConfig.from_dict(config)
                           for name, config in json.loads(environ.get(CONTAINERS_VARIABLE) or "{}").items()}
        self.pool: Any = None  # worker.containers.ContainerPool, made on first use
        self.timings: dict[Any, dict[str, Any]] = {}  # task id -> container start, until sent

    def run(self, task: protocol.Task, body: Callable[[str], bytes], run_here: Callable[[protocol.Task], Outcome],
            describe: Callable[[BaseException, Any], bytes]) -> Outcome:
        """Run ``task`` where its spec says; ``body(function_id)`` gives a function's bytes
        (for a container), ``run_here`` runs a task in this process."""
        spec = task.spec or {}
        name = spec.get("container")
        if name is not None:
            if name not in self.containers:
                error = ContainerNotAllowed(task_id=task.task_id, container=name, allowed=sorted(self.containers))
                return protocol.task_error_result(task.task_id, error)
            try:
                return self.in_container(name, task, body)
            except ContainerError as exc:
                return task.task_id, RESULT_REMOTE_ERROR, describe(exc, task.task_id)
        try:
            variables, nodes = task_environment(spec, self.launcher, self.options, self.environ)
        except ResourceSpecError as exc:
            return task.task_id, RESULT_REMOTE_ERROR, describe(exc, task.task_id)
        saved = {key: os.environ.get(key) for key in variables}
        os.environ.update(variables)
        try:
            with reserve_nodes(self.lock_dir, nodes):
                return run_here(task)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def in_container(self, name: str, task: protocol.Task, body: Callable[[str], bytes]) -> Outcome:
        from worker.containers import ContainerPool

        if self.pool is None:
            self.pool = ContainerPool(self.containers, self.environ)
        outcome, timing = self.pool.run(name, task, body)
        self.timings[task.task_id] = timing
        return outcome

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

