"""Running a worker's tasks inside containers, keeping each container warm for the next.

A task whose spec names a container runs only there: the worker (started by its manager
on the node) starts a *container runner*, ``python -m worker.inside``, inside that
container (``container_command``: podman, docker, bubblewrap or apptainer), and hands it
the task's function body and arguments as bytes over the runner's stdin; the result comes
back on its stdout. The worker never deserializes such a task's function or arguments,
so nothing of it runs outside the container. The runner stays up (warm) for the next
tasks of the same container: only the first pays the start (``cold``), measured from
start to the runner's first message and reported with each task (``timing``).

A runner dies with its worker: bubblewrap's ``--die-with-parent``; podman and docker
clients get SIGTERM when the worker dies (``PR_SET_PDEATHSIG``) and the runner inside
exits when its stdin closes. A runner that dies mid-task fails that task with
``WorkerLost``; the next task starts a fresh one.
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import IO, Any

import msgpack

from fabric import protocol
from fabric.config import CONTAINER_WORKER_LABEL, MPI_LAUNCHER_VARIABLE, MPI_OPTIONS_VARIABLE, ContainerConfig
from fabric.errors import ContainerError, WorkerLost
from fabric.process import child_environment, exit_with_parent

logger = logging.getLogger(__name__)

START_TIMEOUT = 120.0
"""Seconds a container runner may take to start before the task fails."""
MAX_WARM = 4
"""Warm containers one worker keeps at most (the least recently used one is stopped)."""
INSIDE_SANDBOX_ROOT = "/tmp/fabric-tasks"
PODMAN_DEFAULTS = ["--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
"""Flags podman needs on hosts without systemd and with small default limits (see INFRA)."""

_LENGTH = struct.Struct("!I")


def container_command(config: ContainerConfig, environ: Mapping[str, str]) -> list[str]:
    """The command line that starts ``python -m worker.inside`` in ``config``'s container."""
    python = config.python or sys.executable
    inner = [python, "-m", "worker.inside"]
    env = _inside_environment(environ)
    if config.type == "bubblewrap":
        return _bubblewrap(config, env) + ["--", *inner]
    if config.type in ("podman", "docker"):
        private_tmp = "/tmp:notmpcopyup" if config.type == "podman" else "/tmp"  # never copy the node's /tmp in
        command = [config.type, "run", "--rm", "-i", "--tmpfs", private_tmp,
                   "--label", f"{CONTAINER_WORKER_LABEL}={os.getpid()}"]
        if config.type == "podman":
            command += PODMAN_DEFAULTS
        if not config.network:
            command.append("--network=none")
        for key, value in env.items():
            command += ["--env", f"{key}={value}"]
        if config.rootfs == "/:O":  # the node's root: our code and interpreter under /tmp are hidden by the
            for path in _import_paths(env):  # private /tmp, so bind them back (read-only), as bubblewrap does
                if path.startswith("/tmp/"):
                    command += ["-v", f"{path}:{path}:ro"]
        for bind in config.binds:
            command += ["-v", bind]
        command += config.options
        if config.rootfs is not None:
            return command + ["--rootfs", config.rootfs, *inner]
        return command + ["--pull=never", str(config.image), *inner]
    command = ["apptainer", "exec", "--containall", "--cleanenv"]
    if not config.network:
        command += ["--net", "--network", "none"]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    for path in _import_paths(env):  # the fabric's code and interpreter, read-only
        command += ["--bind", f"{path}:{path}:ro"]
    for bind in config.binds:
        command += ["--bind", bind]
    return command + config.options + [str(config.image), *inner]


def _inside_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the runner inside needs: our import path, a writable sandbox root, MPI settings."""
    paths = dict.fromkeys(child_environment()["PYTHONPATH"].split(os.pathsep))
    env = {"PYTHONPATH": os.pathsep.join(paths), "FABRIC_TASK_SANDBOX_ROOT": INSIDE_SANDBOX_ROOT}
    for key in (MPI_LAUNCHER_VARIABLE, MPI_OPTIONS_VARIABLE, "FABRIC_LOG_LEVEL"):
        if environ.get(key):
            env[key] = environ[key]
    return env


def _import_paths(env: dict[str, str]) -> list[str]:
    """The folders the runner inside imports from, and this interpreter's prefixes."""
    paths = [*env["PYTHONPATH"].split(os.pathsep), sys.prefix, sys.base_prefix]
    return [path for path in dict.fromkeys(paths) if path and os.path.isdir(path)]


def _bubblewrap(config: ContainerConfig, env: dict[str, str]) -> list[str]:
    """A read-only system (``rootfs``, default the node's ``/``), private /tmp, no network."""
    command = ["bwrap", "--ro-bind", config.rootfs or "/", "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp"]
    for path in _import_paths(env):
        if path.startswith("/tmp/"):  # hidden by the private /tmp: bind it back
            command += ["--ro-bind", path, path]
    for bind in config.binds:
        source, target, *mode = bind.split(":")
        command += ["--ro-bind" if mode == ["ro"] else "--bind", source, target]
    command += ["--unshare-all", "--die-with-parent", "--new-session", "--chdir", "/tmp"]
    if config.network:
        command.append("--share-net")
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command + config.options


def write_frame(stream: IO[bytes], value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame, or None at end of stream."""
    head = _read_exactly(stream, _LENGTH.size)
    if head is None:
        return None
    data = _read_exactly(stream, _LENGTH.unpack(head)[0])
    return None if data is None else msgpack.unpackb(data, raw=False, strict_map_key=False)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class ContainerRunner:
    """One warm container with a runner inside, serving one task at a time."""

    def __init__(self, name: str, config: ContainerConfig, environ: Mapping[str, str]) -> None:
        self.name = name
        command = container_command(config, environ)
        logger.info("starting container %s: %s", name, shlex.join(command))
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            preexec_fn=exit_with_parent)
        except OSError as exc:
            raise ContainerError(f"container {name}: cannot run {command[0]}: {exc}") from exc
        self.sent: set[str] = set()
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        hello = read_frame(self.process.stdout) if ready else None
        if hello != ["ready"]:
            self.close()
            raise ContainerError(f"container {name} did not start (exit status {self.process.poll()}): "
                               f"{shlex.join(command)}")
        self.start_seconds = time.monotonic() - started

    def run(self, task: protocol.Task, body: Callable[[str], bytes]) -> tuple[Any, int, bytes] | None:
        """The task's result from inside, or None if the runner died."""
        assert self.process.stdin is not None and self.process.stdout is not None
        new = task.function_id not in self.sent
        try:
            write_frame(self.process.stdin, [task.task_id, task.function_id, body(task.function_id) if new else None,
                                             bytes(task.payload), task.spec])
        except (BrokenPipeError, OSError):
            return None
        self.sent.add(task.function_id)
        reply = read_frame(self.process.stdout)
        if reply is None:
            return None
        return reply[0], reply[1], reply[2]

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ContainerPool:
    """A worker's warm containers, by name (at most ``MAX_WARM``)."""

    def __init__(self, containers: Mapping[str, ContainerConfig], environ: Mapping[str, str]) -> None:
        self.containers, self.environ = containers, environ
        self.warm: OrderedDict[str, ContainerRunner] = OrderedDict()

    def run(self, name: str, task: protocol.Task,
            body: Callable[[str], bytes]) -> tuple[tuple[Any, int, bytes], dict[str, Any]]:
        """Run ``task`` in container ``name``; returns its result and how the container started."""
        runner = self.warm.pop(name, None)
        start = "warm"
        if runner is None:
            while len(self.warm) >= MAX_WARM:
                self.warm.popitem(last=False)[1].close()
            start = "cold"
            runner = ContainerRunner(name, self.containers[name], self.environ)
        self.warm[name] = runner
        timing = {"container": name, "start": start, "start_seconds": runner.start_seconds if start == "cold" else 0.0}
        outcome = runner.run(task, body)
        if outcome is None:
            del self.warm[name]
            code = runner.process.poll()
            runner.close()
            error = WorkerLost(task_id=task.task_id, worker_id=f"container {name}", hostname=os.uname().nodename,
                               exit_code=code)
            return protocol.task_error_result(task.task_id, error), timing
        return outcome, timing

    def close(self) -> None:
        while self.warm:
            self.warm.popitem()[1].close()
