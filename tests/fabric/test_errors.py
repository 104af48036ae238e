"""Unit tests for fabric.errors: the hierarchy, wire round trips, pickling, rendering."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import msgpack
import pytest

from fabric import errors
from fabric.errors import (ConfigError, EndpointError, EndpointShutdown, FabricError, ManagerLost, PayloadTooLarge,
                           ProtocolError,
                           RemoteExecutionError, SerializationError, TaskCancelled, TaskError, TaskTimeout,
                           WorkerLost)

TASK_ERRORS = [
    RemoteExecutionError(remote_type="builtins.ZeroDivisionError", message="division by zero",
                         traceback="Traceback (most recent call last):\n  ...\nZeroDivisionError", task_id=7),
    TaskTimeout(task_id="task-1", walltime=2.5, hostname="node-3"),
    WorkerLost(task_id=3, worker_id="worker-1", hostname="node-1", exit_code=-9),
    WorkerLost(task_id=4, worker_id="worker-2", hostname="node-1", exit_code=None),
    ManagerLost(task_id=5, manager_id="manager-9", hostname="node-9"),
    TaskCancelled(task_id="abc"),
]


def error_id(error: TaskError) -> str:
    return type(error).__name__


def fields_of(error: TaskError) -> dict[str, Any]:
    return {name: getattr(error, name) for name in error.fields}


# --- hierarchy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ProtocolError, FabricError), (SerializationError, FabricError), (ConfigError, FabricError),
        (ConfigError, ValueError), (PayloadTooLarge, FabricError), (PayloadTooLarge, ValueError),
        (EndpointError, FabricError), (EndpointShutdown, EndpointError),
        (TaskError, FabricError), (RemoteExecutionError, TaskError), (TaskTimeout, TaskError),
        (WorkerLost, TaskError), (ManagerLost, TaskError), (TaskCancelled, TaskError), (FabricError, Exception),
    ],
)
def test_hierarchy(cls: type, parent: type) -> None:
    assert issubclass(cls, parent)


def test_task_errors_are_not_other_fabric_errors() -> None:
    for cls in (RemoteExecutionError, TaskTimeout, WorkerLost, ManagerLost, TaskCancelled):
        assert not issubclass(cls, (ProtocolError, SerializationError, ConfigError, EndpointError, PayloadTooLarge))
    assert not issubclass(PayloadTooLarge, TaskError)


# --- fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TASK_ERRORS, ids=error_id)
def test_fields_are_attributes_and_args(error: TaskError) -> None:
    assert error.args == tuple(getattr(error, name) for name in error.fields)


def test_missing_fields_are_none() -> None:
    error = WorkerLost(task_id=1)
    assert error.worker_id is None
    assert error.hostname is None
    assert error.exit_code is None


@pytest.mark.parametrize("cls", [TaskError, RemoteExecutionError, TaskTimeout, WorkerLost, ManagerLost, TaskCancelled])
def test_unknown_fields_are_refused(cls: type[TaskError]) -> None:
    with pytest.raises(TypeError, match="unknown"):
        cls(not_a_field=1)


def test_remote_execution_error_exception_defaults_to_none() -> None:
    error = RemoteExecutionError(remote_type="x.Y", message="m", traceback="tb")
    assert error.exception is None
    error.exception = KeyError("k")
    assert isinstance(error.exception, KeyError)


# --- wire ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TASK_ERRORS, ids=error_id)
def test_to_wire_is_plain_data(error: TaskError) -> None:
    wire = error.to_wire()
    assert wire == {"error": type(error).__name__, "fields": fields_of(error)}
    assert msgpack.unpackb(msgpack.packb(wire), raw=False) == wire


@pytest.mark.parametrize("error", TASK_ERRORS, ids=error_id)
def test_wire_round_trip(error: TaskError) -> None:
    wire = msgpack.unpackb(msgpack.packb(error.to_wire(), use_bin_type=True), raw=False)
    rebuilt = TaskError.from_wire(wire)
    assert type(rebuilt) is type(error)
    assert fields_of(rebuilt) == fields_of(error)
    assert str(rebuilt) == str(error)


def test_from_wire_of_an_unknown_name_is_a_plain_task_error() -> None:
    rebuilt = TaskError.from_wire({"error": "SomethingNew", "fields": {"task_id": 1, "detail": "x"}})
    assert type(rebuilt) is TaskError


@pytest.mark.parametrize("name", [None, 5, "FabricError", "ProtocolError", "ValueError", "TaskError", "_rebuild"])
def test_from_wire_only_rebuilds_task_error_classes(name: Any) -> None:
    rebuilt = TaskError.from_wire({"error": name, "fields": {}})
    assert isinstance(rebuilt, TaskError)
    assert type(rebuilt) is TaskError


def test_from_wire_ignores_unknown_fields_and_fills_missing_ones() -> None:
    rebuilt = TaskError.from_wire({"error": "ManagerLost", "fields": {"task_id": 1, "added_later": True}})
    assert isinstance(rebuilt, ManagerLost)
    assert rebuilt.task_id == 1
    assert rebuilt.manager_id is None
    assert not hasattr(rebuilt, "added_later")


@pytest.mark.parametrize("wire", [{"error": "TaskCancelled"}, {"error": "TaskCancelled", "fields": None}])
def test_from_wire_without_fields(wire: dict[str, Any]) -> None:
    rebuilt = TaskError.from_wire(wire)
    assert isinstance(rebuilt, TaskCancelled)
    assert rebuilt.task_id is None


# --- pickling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TASK_ERRORS, ids=error_id)
def test_task_errors_pickle(error: TaskError) -> None:
    rebuilt = pickle.loads(pickle.dumps(error))
    assert type(rebuilt) is type(error)
    assert fields_of(rebuilt) == fields_of(error)
    assert str(rebuilt) == str(error)


@pytest.mark.parametrize("error", TASK_ERRORS, ids=error_id)
def test_task_errors_copy(error: TaskError) -> None:
    for rebuilt in (copy.copy(error), copy.deepcopy(error)):
        assert type(rebuilt) is type(error)
        assert fields_of(rebuilt) == fields_of(error)


def test_plain_task_error_pickles() -> None:
    rebuilt = pickle.loads(pickle.dumps(TaskError()))
    assert type(rebuilt) is TaskError


@pytest.mark.parametrize(
    "error",
    [FabricError("f"), ProtocolError("bad frame"), SerializationError("bad pickle"), ConfigError("bad value"),
     EndpointError("down"), EndpointShutdown("gone"), PayloadTooLarge(10, 5, "arguments")],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_pickle(error: FabricError) -> None:
    rebuilt = pickle.loads(pickle.dumps(error))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_task_error_raised_and_caught_across_pickle() -> None:
    try:
        raise WorkerLost(task_id=1, worker_id="w", hostname="h", exit_code=1)
    except TaskError as exc:
        caught = pickle.loads(pickle.dumps(exc))
    with pytest.raises(WorkerLost):
        raise caught


# --- rendering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", TASK_ERRORS, ids=error_id)
def test_str_renders_every_field_value(error: TaskError) -> None:
    text = str(error)
    for name in error.fields:
        if isinstance(error, RemoteExecutionError) and name == "task_id":
            continue  # the remote traceback already says where it happened
        assert str(getattr(error, name)) in text, (name, text)


def test_specific_messages() -> None:
    assert str(TaskTimeout(task_id=1, walltime=2.5, hostname="n")) == "task 1 exceeded its walltime of 2.5 s on n"
    assert str(TaskCancelled(task_id="t")) == "task t was cancelled"
    assert str(ManagerLost(task_id=1, manager_id="m", hostname="h")) == "manager m on h was lost while running task 1"
    assert "exit code -9" in str(WorkerLost(task_id=1, worker_id="w", hostname="h", exit_code=-9))
    remote = str(RemoteExecutionError(remote_type="builtins.KeyError", message="'k'", traceback="TB"))
    assert remote.startswith("builtins.KeyError: 'k'")
    assert remote.endswith("TB")


def test_payload_too_large_carries_its_numbers() -> None:
    error = PayloadTooLarge(300, 256, "result")
    assert (error.size, error.limit, error.what) == (300, 256, "result")
    assert str(error) == "result of 300 bytes exceeds the limit of 256 bytes"
    assert str(PayloadTooLarge(2, 1)) == "payload of 2 bytes exceeds the limit of 1 bytes"
    rebuilt = pickle.loads(pickle.dumps(error))
    assert (rebuilt.size, rebuilt.limit, rebuilt.what) == (300, 256, "result")


class _FieldedError(TaskError):
    """A subclass without its own __str__: the base class renders name=value pairs."""

    fields = ("task_id", "detail")


def test_base_str_renders_name_value_pairs() -> None:
    assert str(_FieldedError(task_id=3, detail="disk full")) == "task_id=3, detail='disk full'"
    assert str(TaskError()) == ""


def test_subclasses_register_for_from_wire() -> None:
    rebuilt = TaskError.from_wire(_FieldedError(task_id=1, detail="d").to_wire())
    assert type(rebuilt) is _FieldedError
    assert pickle.loads(pickle.dumps(_FieldedError(task_id=2))).task_id == 2


def test_module_docstring_draws_every_error() -> None:
    doc = errors.__doc__ or ""
    for name in ("FabricError", "ProtocolError", "SerializationError", "ConfigError", "PayloadTooLarge",
                 "EndpointError", "EndpointShutdown", "TaskError", "RemoteExecutionError", "TaskTimeout", "WorkerLost",
                 "ManagerLost", "TaskCancelled"):
        assert name in doc
