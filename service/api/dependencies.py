"""Submitting tasks with inputs (``depends_on`` in a batch): see ``service.store.dependencies``.

``depends_on`` is a list beside ``args``, one list of task ids per task: the tasks whose
results the task's arguments refer to (``fabric.dependencies``). Each must be a task of the
caller's (404 ``not_found`` otherwise, and nothing of the batch is stored). Such a batch is
never dispatched at submit: its tasks wait in the store until their inputs finish.
"""

from __future__ import annotations

from typing import Any

from fabric.dependencies import MAX_INPUTS
from service.api.common import Services
from service.errors import InvalidField, NotFound
from service.records import NewTasks
from service.store.dependencies import DependencyNotFound, parse_depends_on


def depends_on(data: dict[str, Any], count: int) -> list[list[str]] | None:
    """The batch's inputs per task; None when it has none (the usual, unchanged path)."""
    try:
        return parse_depends_on(data.get("depends_on"), count, MAX_INPUTS)
    except ValueError as exc:
        raise InvalidField("depends_on", str(exc)) from exc


def submit_dependent(parts: Services, owner: str, tasks: NewTasks,
                     inputs: list[list[str]]) -> tuple[str, list[str]] | None:
    """Store tasks with inputs; tell the dispatcher of those released at once."""
    try:
        added = parts.store.add_dependent_tasks(owner, tasks, inputs)
    except DependencyNotFound as exc:
        raise NotFound(str(exc)) from exc
    if added is None:
        return None
    for endpoint_id in added[2]:
        parts.dispatcher.tasks_added(endpoint_id)
    return added[0], added[1]
