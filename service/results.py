"""What the service reads of endpoints' messages without unpickling anything: counts an
endpoint may report, and a failed task's one-line description from its msgpack error payload."""

from __future__ import annotations

from typing import Any

import msgpack

from fabric import protocol

MAX_COUNT = 2**62


def is_count(value: object) -> bool:
    """A number an endpoint may report: a non-negative int SQLite can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT


def error_text(kind: int, payload: Any) -> str | None:
    """A one-line description of a failed task from its error payload (msgpack, never pickle)."""
    if kind == protocol.RESULT_OK:
        return None
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - any malformed payload just has no description
        return "the task failed (unreadable error payload)"
    if not isinstance(data, dict):
        return "the task failed"
    name = data.get("remote_type") or data.get("error")
    name = name[:256] if isinstance(name, str) else "TaskError"
    message = data.get("message") or data.get("fields") or ""
    try:  # what the endpoint sent may be anything msgpack holds: 1,000 nested lists defeat repr
        return f"{name}: {message}"[:4096]
    except (RecursionError, ValueError):
        return f"{name}: (an unreadable error message)"
