"""Turning result payloads back into values and typed exceptions (client side only).

With ``data_only`` (results of an endpoint the caller does not own: its owner could send
anything) a value is decoded only if it is data-only (``fabric.data_only``; a pickle fails
the task with ``DataOnlyError`` and is never loaded) and a remote exception is rebuilt
from its type name, message and traceback text alone (``RemoteExecutionError.exception``
stays None).
"""

from __future__ import annotations

from typing import Any

import msgpack

from fabric.errors import RemoteExecutionError, SerializationError, TaskError
from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR
from fabric.rest import ResultPage
from fabric.serialize import deserialize, deserialize_data


def task_exception(kind: int, payload: bytes | memoryview, data_only: bool = False) -> BaseException:
    """The exception a failed task's future raises, from its ``kind`` and payload."""
    try:
        data = msgpack.unpackb(payload, raw=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt error payload is itself an error
        return SerializationError(f"cannot decode the error of a failed task: {exc}")
    if not isinstance(data, dict):
        return SerializationError("the error of a failed task is not a map")
    if kind != RESULT_REMOTE_ERROR:
        return TaskError.from_wire(data)
    error = RemoteExecutionError(**{name: _text(data.get(name)) for name in ("remote_type", "message", "traceback")},
                                 task_id=data.get("task_id"))
    if data.get("exception") and not data_only:
        try:
            error.exception = deserialize(data["exception"])
        except SerializationError:
            error.exception = None
    return error


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else repr(value)


def outcome(kind: int, payload: bytes | memoryview, data_only: bool = False) -> tuple[bool, Any]:
    """``(True, value)`` for a result, ``(False, exception)`` for a failure; ``data_only``:
    nothing but data is decoded (the results of an endpoint the caller does not own)."""
    if kind == RESULT_OK:
        try:
            return True, deserialize_data(payload, "result") if data_only else deserialize(payload)
        except SerializationError as exc:
            return False, exc
    return False, task_exception(kind, payload, data_only)


def outcomes(page: ResultPage, data_only: bool = False) -> list[tuple[str, bool, Any]]:
    """``(task id, ok, value or exception)`` for each result of ``page`` (deserialized here, client
    side; ``data_only``: nothing but data, for results of an endpoint you do not own)."""
    return [(task_id, *outcome(kind, payload, data_only))
            for task_id, kind, payload in zip(page.task_ids, page.kinds, page.payloads)]
