"""Turning result payloads back into values and typed exceptions (client side only)."""

from __future__ import annotations

from typing import Any

import msgpack

from fabric.errors import RemoteExecutionError, SerializationError, TaskError
from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR
from fabric.rest import ResultPage
from fabric.serialize import deserialize


def task_exception(kind: int, payload: bytes | memoryview) -> BaseException:
    """The exception a failed task's future raises, from its ``kind`` and payload."""
    try:
        data = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt error payload is itself an error
        return SerializationError(f"cannot decode the error of a failed task: {exc}")
    if not isinstance(data, dict):
        return SerializationError("the error of a failed task is not a map")
    if kind != RESULT_REMOTE_ERROR:
        return TaskError.from_wire(data)
    error = RemoteExecutionError(
        remote_type=data.get("remote_type"), message=data.get("message"),
        traceback=data.get("traceback"), task_id=data.get("task_id"),
    )
    if data.get("exception"):
        try:
            error.exception = deserialize(data["exception"])
        except SerializationError:
            error.exception = None
    return error


def outcome(kind: int, payload: bytes | memoryview) -> tuple[bool, Any]:
    """``(True, value)`` for a result, ``(False, exception)`` for a failure."""
    if kind == RESULT_OK:
        try:
            return True, deserialize(payload)
        except SerializationError as exc:
            return False, exc
    return False, task_exception(kind, payload)


def outcomes(page: ResultPage) -> list[tuple[str, bool, Any]]:
    """``(task id, ok, value or exception)`` for each result of ``page`` (deserialized here, client side)."""
    return [(task_id, *outcome(kind, payload))
            for task_id, kind, payload in zip(page.task_ids, page.kinds, page.payloads)]
