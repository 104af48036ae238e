"""Globus Compute users' way in: ``Client``, ``Executor`` and ``Batch`` with GC's names and semantics.

A script written for ``globus_compute_sdk`` runs here with its imports changed::

    from globus_compute_sdk import Client, Executor      # before
    from sdk.globus_compute import Client, Executor      # after

What matches Globus Compute (``globus_compute_sdk.Client`` as of 2.x/3.x):

- ``Client.register_function(function, function_name=None, container_uuid=None,
  description=None, metadata=None, public=False, group=None, searchable=None,
  ha_endpoint_id=None) -> str``: ``public=True`` shares it with everyone, ``group=`` with
  that group; ``function_name`` and ``searchable`` are deprecated there and warn here too.
- ``Client.run(*args, endpoint_id, function_id, **kwargs) -> task_id``.
- ``Client.create_batch(task_group_id=None, resource_specification=None,
  user_endpoint_config=None, create_websocket_queue=False, result_serializers=None)``,
  ``Batch.add(function_id, args=None, kwargs=None)``, ``len(batch)``, and
  ``Client.batch_run(endpoint_id, batch) -> {"tasks": {function_id: [task ids]},
  "task_group_id", "endpoint_id", "request_id"}``.
- ``Client.get_task(task_id) -> {"task_id", "pending", "status", "result" | "exception",
  "completion_t"}``; ``get_result`` raises ``TaskPending`` while pending, else returns the
  value or raises the task's exception; ``get_batch_result(task_ids) -> {task_id: get_task
  shape}``.
- ``Executor(endpoint_id=None, client=None, task_group_id=None, resource_specification=None,
  user_endpoint_config=None, ...)`` is this package's ``Executor``.

What differs is listed in ``docs/migrating-from-globus-compute.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from fabric.errors import TaskPending
from fabric.serialize import serialize_arguments
from fabric.rest import FINISHED as FINISHED_STATES
from sdk.client import Client as FabricClient
from sdk.executor import Executor as FabricExecutor
from sdk.results import outcome

__all__ = ["Batch", "Client", "Executor", "TaskPending"]

_IGNORED_EXECUTOR_OPTIONS = ("container_id", "label", "batch_size", "amqp_port", "api_burst_limit",
                             "api_burst_window_s", "serializer", "result_serializers")


def _user_endpoint_config(config: dict[str, Any] | None) -> None:
    if config:
        warnings.warn("user_endpoint_config is accepted but not used: fabric endpoints are configured by their "
                      "owner (fabric endpoint configure), not per task (docs/migrating-from-globus-compute.md)",
                      UserWarning, stacklevel=3)


class Batch:
    """Tasks to submit together (``Client.create_batch``; GC's ``Batch``)."""

    def __init__(self, task_group_id: str | None = None, resource_specification: dict[str, Any] | None = None,
                 user_endpoint_config: dict[str, Any] | None = None) -> None:
        self.task_group_id = None if task_group_id is None else str(task_group_id)
        self.resource_specification = resource_specification
        self.user_endpoint_config = user_endpoint_config
        self.tasks: dict[str, list[bytes]] = {}

    def add(self, function_id: str, args: tuple[Any, ...] | list[Any] | None = None,
            kwargs: dict[str, Any] | None = None) -> None:
        """Add one call of the registered function ``function_id``."""
        args = () if args is None else args
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(args, (list, tuple)):
            raise TypeError(f"args: expected `tuple`, got: {type(args).__name__}")
        if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
            raise TypeError("kwargs: expected a dict with `str` keys")
        self.tasks.setdefault(str(function_id), []).append(serialize_arguments(tuple(args), kwargs))

    def __len__(self) -> int:
        return sum(len(tasks) for tasks in self.tasks.values())

    def __bool__(self) -> bool:
        return all(self.tasks.values())


class Client(FabricClient):
    """This package's ``Client`` with Globus Compute's method names and result shapes."""

    def register_function(self, function: Callable[..., Any], function_name: str | None = None,
                          container_uuid: str | None = None, description: str | None = None,
                          metadata: dict[str, Any] | None = None, public: bool = False, group: str | None = None,
                          searchable: bool | None = None, ha_endpoint_id: str | None = None, *,
                          name: str | None = None) -> str:
        """Register ``function``; returns its id. ``public`` / ``group`` share it."""
        for argument, value in (("function_name", function_name), ("searchable", searchable)):
            if value is not None:
                warnings.warn(f"The '{argument}' argument is deprecated and no longer functional.",
                              DeprecationWarning, stacklevel=2)
        if container_uuid is not None or ha_endpoint_id is not None:
            raise ValueError("container_uuid and ha_endpoint_id are not supported (see "
                             "docs/migrating-from-globus-compute.md)")
        function_id = super().register_function(function, name=name, description=description or "")
        if public or group:
            self.share_function(function_id, public=bool(public), groups=[group] if group else ())
        return function_id

    def run(self, *args: Any, endpoint_id: str, function_id: str, **kwargs: Any) -> str:
        """Run the registered function once; returns the task id."""
        batch = self.create_batch()
        batch.add(function_id, args, kwargs)
        reply = self.batch_run(endpoint_id, batch)
        return str(reply["tasks"][str(function_id)][0])

    def create_batch(self, task_group_id: str | None = None, resource_specification: dict[str, Any] | None = None,
                     user_endpoint_config: dict[str, Any] | None = None, create_websocket_queue: bool = False,
                     result_serializers: list[str] | None = None) -> Batch:
        """A ``Batch`` to fill with ``add`` and submit with ``batch_run``."""
        _user_endpoint_config(user_endpoint_config)
        return Batch(task_group_id, resource_specification, user_endpoint_config)

    def batch_run(self, endpoint_id: str, batch: Batch) -> dict[str, Any]:
        """Submit the batch in one request; ``{"tasks": {function_id: [task ids]}, ...}``."""
        if not batch or not len(batch):
            raise ValueError("No tasks specified for batch run")
        function_ids = [fid for fid, tasks in batch.tasks.items() for _ in tasks]
        arguments = [payload for tasks in batch.tasks.values() for payload in tasks]
        submitted = self.submit_batch(str(endpoint_id), function_ids, arguments, task_group_id=batch.task_group_id,
                                      resource_spec=batch.resource_specification)
        tasks: dict[str, list[str]] = {}
        for function_id, task_id in zip(function_ids, submitted.task_ids):
            tasks.setdefault(function_id, []).append(task_id)
        batch.task_group_id = submitted.task_group_id
        return {"tasks": tasks, "task_group_id": submitted.task_group_id, "endpoint_id": str(endpoint_id),
                "request_id": submitted.task_group_id}

    def get_task(self, task_id: str) -> dict[str, Any]:
        """``{"task_id", "pending", "status", "result" | "exception", "completion_t"}``, as GC's."""
        record = super().get_task(str(task_id))  # a result of an endpoint you do not own: data only
        return _gc_task(str(task_id), record, not self.owns_endpoint(str(record.get("endpoint_id"))))

    def get_result(self, task_id: str, *, allow_pickled_results: bool = False) -> Any:
        """The value; ``TaskPending`` while it runs; the task's exception if it failed.
        (``allow_pickled_results`` is accepted for the base class's signature; results are
        decoded as ``get_task`` decodes them.)"""
        task = self.get_task(task_id)
        if task["pending"]:
            raise TaskPending(str(task_id), task["status"])
        if "exception" in task:
            raise task["exception"]
        return task["result"]

    def get_batch_result(self, task_id_list: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{task_id: get_task(task_id)}`` for each task."""
        if not isinstance(task_id_list, (list, tuple)):
            raise TypeError("get_batch_result expects a list of task ids")
        return {str(task_id): self.get_task(str(task_id)) for task_id in task_id_list}


def _gc_task(task_id: str, record: dict[str, Any], data_only: bool) -> dict[str, Any]:
    state = str(record.get("state"))
    task: dict[str, Any] = {"task_id": task_id, "pending": state not in FINISHED_STATES, "status": state}
    if state in FINISHED_STATES:
        ok, value = outcome(record["result_kind"], record.get("result") or b"", data_only)
        task["result" if ok else "exception"] = value
        task["completion_t"] = str(record.get("completed") or "")
    return task


class Executor(FabricExecutor):
    """This package's ``Executor``, taking Globus Compute's ``resource_specification`` and
    ``user_endpoint_config`` (and GC-only options, which it ignores)."""

    def __init__(self, endpoint_id: str | None = None, client: FabricClient | None = None, *,
                 task_group_id: str | None = None, resource_specification: dict[str, Any] | None = None,
                 user_endpoint_config: dict[str, Any] | None = None, **options: Any) -> None:
        for name in _IGNORED_EXECUTOR_OPTIONS:
            options.pop(name, None)
        _user_endpoint_config(user_endpoint_config)
        self.user_endpoint_config = user_endpoint_config
        super().__init__(None if endpoint_id is None else str(endpoint_id), client, task_group_id=task_group_id,
                         resource_specification=resource_specification or options.pop("resource_spec", None),
                         **options)
