"""Memoization: ``memoize`` in a batch, and ``DELETE /v1/memo`` (see ``service.store.memo``).

A batch with ``"memoize": {"ttl": seconds}`` (or ``true``: ``DEFAULT_TTL``) asks for each
task's stored result when the caller ran the same function with the same serialized
arguments before and it succeeded: such tasks finish at once (``"memoized": true`` in
``GET /v1/tasks/<id>``, ``memo_hits`` in their group's counts) and never run. Each user has
their own memo. A batch with ``depends_on`` is not memoized (its arguments are not all known
at submit).

``DELETE /v1/memo`` (``?function_id=`` for one function) forgets the caller's stored results;
the reply is ``{"forgotten": n}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from service.api.common import Services, current_user, services
from service.errors import InvalidField
from service.openapi import operation
from service.records import RECEIVED, WAITING, NewTasks
from service.store.memo import DEFAULT_TTL, MAX_TTL

blueprint = Blueprint("memo", __name__)


def memoize_ttl(data: dict[str, Any]) -> float | None:
    """Seconds a batch's results are remembered; None: not memoized."""
    value = data.get("memoize")
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_TTL
    ttl = value.get("ttl", DEFAULT_TTL) if isinstance(value, dict) else None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL:
        raise InvalidField("memoize", f"must be true or {{\"ttl\": seconds}}, 0 < ttl <= {MAX_TTL:.0f}")
    return float(ttl)


def submit_memoized(parts: Services, owner: str, tasks: NewTasks, ttl: float) -> tuple[str, list[str]] | None:
    """Store memoized tasks: hits finish now (long-polls told), misses wait for the endpoint."""
    state = RECEIVED if parts.dispatcher.is_online(tasks.endpoint_id) else WAITING
    added = parts.store.add_memoized_tasks(owner, tasks, state, ttl)
    if added is None:
        return None
    group_id, task_ids, hits = added
    if hits:
        parts.signal.ring()
    if hits < len(task_ids):
        parts.dispatcher.tasks_added(tasks.endpoint_id)
    return group_id, task_ids


@blueprint.delete("/memo")
@operation("Forget the caller's memoized results (?function_id= for one function's)", errors=(400,))
def forget() -> dict[str, Any]:
    function_id = request.args.get("function_id") or None
    return {"forgotten": services().store.forget(current_user().user_id, function_id)}
