"""``python -m worker.inside``: the runner a worker starts inside a container.

It speaks length-prefixed msgpack frames on its stdin and stdout (``worker.containers``):
it says ``["ready"]`` once imported, then for each ``[task_id, function_id, body or nil,
arguments, spec]`` runs the function (deserialized here, inside, and cached by id) and
answers ``[task_id, kind, payload]`` exactly as a worker would. What the user's code
prints goes to stderr, never into the channel. It exits when its stdin closes (its
worker is gone or done with it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR, Task
from fabric.serialize import deserialize, serialize
from worker.containers import read_frame, write_frame
from worker.environments import TaskEnvironments
from worker.worker import describe_exception

logger = logging.getLogger(__name__)


def run_task(functions: dict[str, Any], task_id: Any, function_id: str,
             args_kwargs: bytes | memoryview) -> tuple[Any, int, bytes]:
    try:
        args, kwargs = deserialize(args_kwargs)
        return task_id, RESULT_OK, serialize(functions[function_id](*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the caller
        return task_id, RESULT_REMOTE_ERROR, describe_exception(exc, task_id)


def serve(channel_in: Any, channel_out: Any) -> str:
    """Answer tasks until the channel closes; returns why it stopped."""
    functions: dict[str, Any] = {}
    bodies: dict[str, bytes] = {}
    environments = TaskEnvironments(os.environ)  # MPI settings; no containers in here
    write_frame(channel_out, ["ready"])
    while True:
        frame = read_frame(channel_in)
        if frame is None:
            return "channel closed"
        task_id, function_id, body, payload, spec = frame
        if body is not None:
            bodies[function_id] = body

        def run_here(task: Task) -> tuple[Any, int, bytes]:
            if task.function_id not in functions:
                try:
                    functions[task.function_id] = deserialize(bodies.pop(task.function_id))
                except BaseException as exc:  # noqa: BLE001
                    return task.task_id, RESULT_REMOTE_ERROR, describe_exception(exc, task.task_id)
            return run_task(functions, task.task_id, task.function_id, task.payload)

        task = Task(task_id, function_id, payload, spec={k: v for k, v in (spec or {}).items() if k != "container"})
        if task.spec:
            result = environments.run(task, lambda f: b"", run_here, describe_exception)
        else:
            result = run_here(task)
        write_frame(channel_out, list(result))


def main() -> int:
    # PID 1 of a container ignores signals it has no handler for: its worker's SIGTERM must end it
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: os._exit(128 + signum))
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() of user code goes to stderr
    sys.stdout = sys.stderr
    from fabric.process import configure_logging

    configure_logging(None)
    reason = serve(sys.stdin.buffer, channel_out)
    logger.info("container runner exiting: %s", reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
