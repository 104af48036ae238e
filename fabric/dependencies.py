"""Futures as arguments: a task that takes another task's result (a dependency).

On the client, an argument that is a fabric future (``sdk.executor.ServiceTaskFuture``) or a
``TaskRef`` is pickled as a reference to its task, at any depth of the arguments (inside
lists, dicts, your own objects): pickling calls ``reduce_task_ref``, which records the task
id in the ``collect_inputs`` context the SDK opens around serializing one call's arguments.
The ids travel beside the serialized arguments (``depends_on`` in a batch), so the service
learns them without unpickling anything. A plain ``concurrent.futures.Future`` cannot travel
(it would pickle into a dead future on the worker): pickling one raises ``NotAFabricFuture``.

The service keeps the task ``waiting-for-dependencies`` until every input finished
(``service.store.dependencies``). Then it wraps the arguments and the inputs' serialized
results, as they are, in a ``WithInputs`` buffer (strategy header ``0x10``)::

    0x10 | msgpack [arguments: bin, [[input task id: str, result: bin], ...]]

Only the worker opens it: it deserializes each input's result, then the arguments, and
every reference in them becomes its input's value (``_resolve``). A reference no input
matches (a task retried without its inputs) stays a ``TaskRef``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copyreg
import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from fabric.errors import FabricError
from fabric.serialize import Strategy, deserialize

WITH_INPUTS = b"\x10"
MAX_INPUTS = 1000
"""Inputs one task may wait for."""

_local = threading.local()


class NotAFabricFuture(FabricError, TypeError):
    """An argument is a ``concurrent.futures.Future`` that is not a fabric future: its value
    lives only in this process, so no task elsewhere can wait for it."""

    def __init__(self, future: object) -> None:
        super().__init__(f"{type(future).__name__} {future!r} is not a fabric future: only futures of a "
                         "fabric Executor (or a fabric.dependencies.TaskRef) can be task arguments")


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRef:
    """A reference to a task by id: as an argument, the task's result (once it finished)."""

    task_id: str

    def __reduce__(self) -> tuple[Any, ...]:
        return reduce_task_ref(self.task_id)


def reduce_task_ref(task_id: str | None) -> tuple[Any, ...]:
    """How a reference to task ``task_id`` pickles; records it as an input of the call being serialized."""
    inputs: list[str] | None = getattr(_local, "inputs", None)
    if inputs is None:
        raise TypeError("a fabric future or TaskRef pickles only as an argument of a task (Executor.submit)")
    if not isinstance(task_id, str) or not task_id:
        raise TypeError(f"a task reference needs a task id, not {task_id!r}")
    if task_id not in inputs:
        inputs.append(task_id)
    return (_resolve, (task_id,))


def _resolve(task_id: str) -> Any:
    """Unpickling a reference: its input's value inside ``WithInputs.loads``, else a ``TaskRef``."""
    values: dict[str, Any] | None = getattr(_local, "values", None)
    if values is not None and task_id in values:
        return values[task_id]
    return TaskRef(task_id)


def _refuse_future(future: concurrent.futures.Future) -> tuple[Any, ...]:  # type: ignore[type-arg]
    raise NotAFabricFuture(future)


copyreg.pickle(concurrent.futures.Future, _refuse_future)  # exact type only: fabric futures reduce themselves


@contextlib.contextmanager
def collect_inputs() -> Iterator[list[str]]:
    """While open, references pickled in this thread are listed (in order, once each) in the list it yields."""
    outer = getattr(_local, "inputs", None)
    inputs: list[str] = []
    _local.inputs = inputs
    try:
        yield inputs
    finally:
        _local.inputs = outer


def wrap(arguments: bytes, inputs: Sequence[tuple[str, bytes]]) -> bytes:
    """A ``WithInputs`` buffer: serialized arguments and ``(task id, serialized result)`` of each input."""
    return WITH_INPUTS + msgpack.packb([arguments, [list(item) for item in inputs]], use_bin_type=True)


class WithInputs(Strategy):
    """Arguments with their inputs' results (made by the service, opened by the worker)."""

    header = WITH_INPUTS

    @staticmethod
    def dumps(obj: Any) -> bytes:
        raise TypeError("WithInputs buffers are made by the service (fabric.dependencies.wrap)")

    @staticmethod
    def loads(body: memoryview) -> Any:
        arguments, inputs = msgpack.unpackb(body, raw=False)
        values = {task_id: deserialize(result) for task_id, result in inputs}
        outer = getattr(_local, "values", None)
        _local.values = values
        try:
            return deserialize(arguments)
        finally:
            _local.values = outer
