"""The wire protocol every fabric process speaks (client, interchange, manager, worker).

Frames
------
A message is a ZeroMQ multipart message ``[header, payload, payload, ...]``.

* ``header`` is a msgpack map. Key ``"v"`` is the protocol version (``PROTOCOL_VERSION``),
  key ``"t"`` the message tag; every other key is a field of the message class.
* Payload frames carry user bytes (serialized functions, arguments, results) untouched.
  Brokers (interchange, manager, service) slice and join them, never deserialize them.
* Batches put all their payloads into **one** frame (``blob``) with the sizes in the
  header: one frame per batch, not per task, is what makes the small-task path fast.

Versions and unknown fields
---------------------------
A header whose version is not ``PROTOCOL_VERSION`` is rejected with ``ProtocolError``.
Unknown keys in a header are ignored, so a newer sender may add optional fields within
a version. A missing required field, a field of the wrong type or out of bounds (a string
longer than ``MAX_TEXT`` characters, an integer beyond 64 bits, and what a message's
``limits`` add: e.g. a hostname of at most 255 characters, a pid below 2**32), an
unknown tag, a header that is not msgpack, or payload frames that do not match the
header raise ``ProtocolError`` (whose text never quotes more than a few characters of
what was sent); the interchange and the manager log it and drop the message, they
never crash. A worker exits on a malformed message from its own manager (fail fast: its
manager then reports the loss and starts a fresh worker).

Tasks and results
-----------------
A task is ``Task(task_id, function_id, payload, walltime, retries, priority)``; task ids
are opaque msgpack scalars (ints on a local endpoint, strings from the service). A
result is ``(task_id, kind, payload)`` where ``kind`` is ``RESULT_OK`` (payload: the
serialized return value), ``RESULT_REMOTE_ERROR`` (payload: msgpack map with
``remote_type``, ``message``, ``traceback`` and optionally a dill-pickled ``exception``,
made by the worker) or ``RESULT_TASK_ERROR`` (payload: msgpack ``TaskError.to_wire()``,
made by a manager or interchange for lost workers, lost managers, timeouts).

Acknowledged results (interchange <-> service)
----------------------------------------------
The service answers every ``ResultBatch`` it has committed to its store with
``ResultsAck(task_ids)``: every id of that batch, committed or ignored as a duplicate (a
batch the store could not commit is not acknowledged; its results come again). An
interchange in service mode holds each result it sent, in memory or in its spool on
disk, until a ``ResultsAck`` names it, and re-sends every unacknowledged result on each
new connection (after its ``InterchangeRegistration``, always the first message of a
connection). Redelivery is therefore at-least-once; the service drops results of tasks
that are already finished, so none counts twice. A local upstream (the ``Endpoint``)
never sends ``ResultsAck``; an interchange that is not in service mode ignores one.
"""

from __future__ import annotations

import dataclasses
import itertools
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, NamedTuple, Union

import msgpack

from fabric.errors import ProtocolError
from fabric.untrusted import check_field, printable

PROTOCOL_VERSION = 1

RESULT_OK = 0
RESULT_REMOTE_ERROR = 1
RESULT_TASK_ERROR = 2

Frame = Union[bytes, memoryview]

MAX_BATCH_TASKS = 4096
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""A batch holds at most this many tasks or (past its first task) this many payload bytes,
so no message grows past what a receiver accepts however large the backlog."""

_packb = msgpack.Packer(use_bin_type=True).pack


def _unpackb(data: Frame) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Task(NamedTuple):
    """One function call travelling to a worker."""

    task_id: Any
    function_id: str
    payload: Frame
    walltime: float | None = None
    retries: int = 0
    priority: int = 0


_REGISTRY: dict[str, type[Message]] = {}


def _field_check(hint: Any) -> tuple[type, ...]:
    """The runtime types a header field of annotation ``hint`` may hold (``()``: any)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        checks = [_field_check(arg) for arg in typing.get_args(hint)]
        return () if () in checks else tuple(itertools.chain(*checks))
    if hint is None or hint is type(None):
        return (type(None),)
    if hint is float:
        return (float, int)
    if hint is Any:
        return ()
    return (origin or hint,)


@dataclasses.dataclass(slots=True)
class Message:
    """Base of every message. Subclasses set ``tag``; plain fields travel in the header."""

    tag: ClassVar[str] = ""
    limits: ClassVar[dict[str, int | tuple[int, int]]] = {}
    """Bounds beyond the defaults: a string field's most characters, an integer field's (low, high)."""
    _checks: ClassVar[tuple[tuple[str, tuple[type, ...], bool], ...]] = ()

    def __init_subclass__(cls) -> None:
        # no super() call: dataclass(slots=True) re-creates classes, breaking zero-arg super
        if not cls.tag:
            return
        previous = _REGISTRY.get(cls.tag)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise TypeError(f"duplicate message tag {cls.tag!r}")
        _REGISTRY[cls.tag] = cls  # dataclass(slots=True) re-creates the class: keep the last

    @classmethod
    def _prepare(cls) -> None:
        hints = typing.get_type_hints(cls)
        cls._checks = tuple(
            (f.name, _field_check(hints[f.name]), f.default is dataclasses.MISSING
             and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(cls)
        )

    def header(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name, _, _ in self._checks}
        fields["v"] = PROTOCOL_VERSION
        fields["t"] = self.tag
        return fields

    def to_frames(self) -> list[Frame]:
        return [_packb(self.header())]

    @classmethod
    def from_header(cls, header: dict[str, Any], frames: Sequence[Frame]) -> Message:
        values = {}
        for name, allowed, required in cls._checks:
            if name not in header:
                if required:
                    raise ProtocolError(f"{cls.tag}: missing field {name!r}")
                continue
            value = header[name]
            if allowed and not isinstance(value, allowed):
                raise ProtocolError(f"{cls.tag}: field {name!r} has type {type(value).__name__}")
            check_field(cls.tag, name, value, cls.limits.get(name))
            values[name] = value
        if len(frames) != 1:
            raise ProtocolError(f"{cls.tag}: expected 1 frame, got {len(frames)}")
        return cls(**values)


def encode(message: Message) -> list[Frame]:
    """The frames of ``message``, ready for ``socket.send_multipart``."""
    return message.to_frames()


def decode(frames: Sequence[Any]) -> Message:
    """Parse received frames into a message; anything malformed raises ``ProtocolError``."""
    if not frames:
        raise ProtocolError("empty message")
    try:
        header = _unpackb(frames[0])
    except Exception as exc:
        raise ProtocolError(f"header is not msgpack: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("header is not a map")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {printable(repr(version), 32)} is not {PROTOCOL_VERSION}")
    tag = header.get("t")
    cls = _REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message tag {printable(repr(tag), 32)}")
    try:
        return cls.from_header(header, frames)
    except ProtocolError:
        raise
    except Exception as exc:  # malformed values deep inside a batch
        raise ProtocolError(f"{cls.tag}: malformed message: {printable(repr(exc))}") from exc


_ID_TYPES = frozenset((int, str, bytes))


def task_error_result(task_id: Any, error: Any) -> tuple[Any, int, bytes]:
    """The ``(task_id, RESULT_TASK_ERROR, payload)`` result for ``error`` (a ``TaskError``)."""
    return task_id, RESULT_TASK_ERROR, _packb(error.to_wire())


def _check_ids(ids: list[Any], what: str) -> None:
    """Task ids must be msgpack scalars (they become dictionary keys downstream)."""
    if not {type(i) for i in ids} <= _ID_TYPES:
        raise ProtocolError(f"{what}: task ids must be integers or strings")


def _nbytes(payload: Frame) -> int:
    return len(payload) if type(payload) is bytes else memoryview(payload).nbytes


def _split(blob: Frame, sizes: Sequence[int]) -> list[memoryview]:
    """Slice one payload frame into per-item views (no copies)."""
    view = memoryview(blob)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    ends = list(itertools.accumulate(sizes))
    if (ends[-1] if ends else 0) != len(view) or any(size < 0 for size in sizes):
        raise ProtocolError(f"payload frame has {len(view)} bytes, header says {ends[-1:] or 0}")
    return [view[end - size:end] for end, size in zip(ends, sizes)]


def batches_of(tasks: Sequence[Task], max_tasks: int = MAX_BATCH_TASKS,
               max_bytes: int = MAX_BATCH_BYTES) -> Iterator[list[Task]]:
    """Consecutive groups of ``tasks`` within the task and byte limits (never empty)."""
    batch: list[Task] = []
    size = 0
    for task in tasks:
        length = _nbytes(task[2])
        if batch and (len(batch) >= max_tasks or size + length > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(task)
        size += length
    if batch:
        yield batch


# --- messages between any two hops -------------------------------------------------


@dataclasses.dataclass(slots=True)
class Heartbeat(Message):
    """Liveness when nothing else is being sent (any message counts as liveness)."""

    tag = "heartbeat"


@dataclasses.dataclass(slots=True)
class Shutdown(Message):
    """Stop now: the receiver ends its work and exits (managers stop their workers)."""

    tag = "shutdown"
    reason: str = ""


@dataclasses.dataclass(slots=True)
class FunctionDefinitions(Message):
    """Serialized function bodies, one payload frame each; sent once per hop per function."""

    tag = "functions"
    function_ids: list[str] = dataclasses.field(default_factory=list)
    bodies: list[Frame] = dataclasses.field(default_factory=list)

    def to_frames(self) -> list[Frame]:
        return [_packb({"v": PROTOCOL_VERSION, "t": self.tag, "function_ids": self.function_ids}),
                *self.bodies]

    @classmethod
    def from_header(cls, header: dict[str, Any], frames: Sequence[Frame]) -> Message:
        ids = header.get("function_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ProtocolError("functions: function_ids must be a list of strings")
        if len(ids) != len(frames) - 1:
            raise ProtocolError(f"functions: {len(ids)} ids but {len(frames) - 1} bodies")
        return cls(function_ids=ids, bodies=list(frames[1:]))


@dataclasses.dataclass(slots=True)
class TaskBatch(Message):
    """Tasks, all payloads packed into one frame."""

    tag = "tasks"
    tasks: list[Task] = dataclasses.field(default_factory=list)

    def to_frames(self) -> list[Frame]:
        tasks = self.tasks
        header = {
            "v": PROTOCOL_VERSION,
            "t": self.tag,
            "ids": [t[0] for t in tasks],
            "fns": [t[1] for t in tasks],
            "sizes": [_nbytes(t[2]) for t in tasks],
            "walltimes": [t[3] for t in tasks],
            "retries": [t[4] for t in tasks],
            "priorities": [t[5] for t in tasks],
        }
        return [_packb(header), b"".join([t[2] for t in tasks])]

    @classmethod
    def from_header(cls, header: dict[str, Any], frames: Sequence[Frame]) -> Message:
        if len(frames) != 2:
            raise ProtocolError(f"tasks: expected 2 frames, got {len(frames)}")
        columns = [header.get(k) for k in ("ids", "fns", "sizes", "walltimes", "retries", "priorities")]
        if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:  # type: ignore[arg-type]
            raise ProtocolError("tasks: header columns missing or of different lengths")
        ids, fns, sizes, walltimes, retries, priorities = columns
        _check_ids(ids, "tasks")  # type: ignore[arg-type]
        if not all(isinstance(f, str) for f in fns):  # type: ignore[union-attr]
            raise ProtocolError("tasks: function ids must be strings")
        if not all(isinstance(r, int) for r in itertools.chain(retries, priorities)):  # type: ignore[arg-type]
            raise ProtocolError("tasks: retries and priorities must be integers")
        if not all(w is None or isinstance(w, (int, float)) for w in walltimes):  # type: ignore[union-attr]
            raise ProtocolError("tasks: walltimes must be numbers or nil")
        payloads = _split(frames[1], sizes)  # type: ignore[arg-type]
        return cls(tasks=list(map(Task, ids, fns, payloads, walltimes, retries, priorities)))  # type: ignore[arg-type, misc]


@dataclasses.dataclass(slots=True)
class ResultBatch(Message):
    """Results, columnar, all payloads in one frame; brokers forward it without unpacking.

    ``started`` lists task ids a manager's workers began running since its last message
    (what the service shows as running); ``handed`` lists the task ids the manager hands to
    its workers right after this message, so any of them may have started by the time the
    interchange reads it (a lost manager's handed tasks count as started, its others were
    only prefetched); ``capacity`` is the sender's current task capacity (None: unchanged); ``elapsed`` is
    the worker time spent on these results, in seconds.
    """

    tag = "results"
    task_ids: list[Any] = dataclasses.field(default_factory=list)
    kinds: list[int] = dataclasses.field(default_factory=list)
    sizes: list[int] = dataclasses.field(default_factory=list)
    blob: Frame = b""
    started: list[Any] = dataclasses.field(default_factory=list)
    capacity: int | None = None
    elapsed: float = 0.0
    handed: list[Any] = dataclasses.field(default_factory=list)

    def to_frames(self) -> list[Frame]:
        header = {
            "v": PROTOCOL_VERSION, "t": self.tag, "ids": self.task_ids, "kinds": self.kinds,
            "sizes": self.sizes, "started": self.started, "capacity": self.capacity,
            "elapsed": self.elapsed,
        }
        if self.handed:
            header["handed"] = self.handed
        return [_packb(header), self.blob]

    @classmethod
    def from_header(cls, header: dict[str, Any], frames: Sequence[Frame]) -> Message:
        if len(frames) != 2:
            raise ProtocolError(f"results: expected 2 frames, got {len(frames)}")
        ids, kinds, sizes = header.get("ids"), header.get("kinds"), header.get("sizes")
        started, handed = header.get("started", []), header.get("handed", [])
        if not all(isinstance(c, list) for c in (ids, kinds, sizes, started, handed)):
            raise ProtocolError("results: ids, kinds, sizes, started and handed must be lists")
        if not len(ids) == len(kinds) == len(sizes):  # type: ignore[arg-type]
            raise ProtocolError("results: columns of different lengths")
        _check_ids(ids, "results")  # type: ignore[arg-type]
        _check_ids(started, "results")  # type: ignore[arg-type]
        _check_ids(handed, "results")  # type: ignore[arg-type]
        if not all(isinstance(n, int) and n >= 0 for n in sizes) or sum(sizes) != _nbytes(frames[1]):  # type: ignore[union-attr, arg-type]
            raise ProtocolError("results: sizes do not match the payload frame")
        if not all(k in (RESULT_OK, RESULT_REMOTE_ERROR, RESULT_TASK_ERROR) for k in kinds):  # type: ignore[union-attr]
            raise ProtocolError("results: unknown result kind")
        capacity = header.get("capacity")
        elapsed = header.get("elapsed", 0.0)
        if capacity is not None and not isinstance(capacity, int):
            raise ProtocolError("results: capacity must be an integer")
        if not isinstance(elapsed, (int, float)):
            raise ProtocolError("results: elapsed must be a number")
        return cls(task_ids=ids, kinds=kinds, sizes=sizes, blob=frames[1], started=started,  # type: ignore[arg-type]
                   capacity=capacity, elapsed=float(elapsed), handed=handed)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.task_ids)

    def payloads(self) -> list[memoryview]:
        return _split(self.blob, self.sizes)

    def results(self) -> Iterator[tuple[Any, int, memoryview]]:
        return zip(self.task_ids, self.kinds, self.payloads())

    @classmethod
    def build(cls, results: Sequence[tuple[Any, int, Frame]], **fields: Any) -> ResultBatch:
        """A batch from ``(task_id, kind, payload)`` triples."""
        return cls(
            task_ids=[r[0] for r in results], kinds=[r[1] for r in results],
            sizes=[_nbytes(r[2]) for r in results], blob=b"".join([r[2] for r in results]), **fields,
        )

    @classmethod
    def merge_within(cls, batches: Sequence[ResultBatch], max_bytes: int = MAX_BATCH_BYTES) -> list[ResultBatch]:
        """Merge ``batches`` into as few as possible, each within ``max_bytes`` of payload."""
        merged: list[ResultBatch] = []
        group: list[ResultBatch] = []
        size = 0
        for batch in batches:
            if group and size + _nbytes(batch.blob) > max_bytes:
                merged.append(cls.merge(group))
                group, size = [], 0
            group.append(batch)
            size += _nbytes(batch.blob)
        if group:
            merged.append(cls.merge(group))
        return merged

    @classmethod
    def merge(cls, batches: Sequence[ResultBatch], **fields: Any) -> ResultBatch:
        """One batch holding every result of ``batches`` (``started`` concatenated too)."""
        if len(batches) == 1 and not fields:
            return batches[0]
        merged = cls(
            task_ids=[i for b in batches for i in b.task_ids],
            kinds=[k for b in batches for k in b.kinds],
            sizes=[s for b in batches for s in b.sizes],
            blob=b"".join([b.blob for b in batches]),
            started=[i for b in batches for i in b.started],
            elapsed=sum(b.elapsed for b in batches),
            handed=[i for b in batches for i in b.handed],
        )
        for name, value in fields.items():
            setattr(merged, name, value)
        return merged


# --- manager <-> interchange ---------------------------------------------------------


@dataclasses.dataclass(slots=True)
class ManagerRegistration(Message):
    """A manager introduces itself: first message on its connection."""

    tag = "register_manager"
    limits = {"hostname": 255, "pid": (0, 2**32 - 1), "python_version": 64, "manager_id": 256}
    manager_id: str
    hostname: str
    pid: int
    cores: int
    memory: int
    accelerators: list[str]
    python_version: str
    protocol_version: int
    worker_count: int
    prefetch: int
    capacity: int
    block_id: str | None = None


@dataclasses.dataclass(slots=True)
class RegistrationReply(Message):
    """The interchange accepts or refuses a manager, and tells it the heartbeat settings."""

    tag = "registration_reply"
    accepted: bool
    reason: str = ""
    heartbeat_period: float = 2.0
    heartbeat_threshold: float = 10.0


@dataclasses.dataclass(slots=True)
class Drain(Message):
    """Finish the tasks already received, accept no more, then exit."""

    tag = "drain"


@dataclasses.dataclass(slots=True)
class ManagerExiting(Message):
    """A manager says goodbye (drained, shut down, or failing) so nothing waits for it.

    ``unstarted``: tasks it was sent that no worker of it ever began (its workers stopped
    before them), so they may run elsewhere whatever their retry budget."""

    tag = "manager_exiting"
    reason: str = ""
    unstarted: list[Any] = dataclasses.field(default_factory=list)

    @classmethod
    def from_header(cls, header: dict[str, Any], frames: Sequence[Frame]) -> Message:
        message = super(ManagerExiting, cls).from_header(header, frames)
        _check_ids(message.unstarted, "manager_exiting")  # type: ignore[attr-defined]
        return message


# --- worker <-> manager -------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class WorkerReady(Message):
    """A worker process started and can take tasks."""

    tag = "worker_ready"
    limits = {"pid": (0, 2**32 - 1)}
    worker_id: str
    pid: int


# --- interchange <-> upstream (local Endpoint client or the service) ----------------


@dataclasses.dataclass(slots=True)
class InterchangeRegistration(Message):
    """The interchange introduces itself to its upstream after connecting."""

    tag = "register_interchange"
    limits = {"endpoint_id": 64, "hostname": 255, "pid": (0, 2**32 - 1), "manager_address": 1024,
              "protocol_version": (0, 2**31)}
    endpoint_id: str
    hostname: str
    pid: int
    manager_address: str
    protocol_version: int = PROTOCOL_VERSION


@dataclasses.dataclass(slots=True)
class ResultsAck(Message):
    """The service committed the results of these tasks: the interchange may forget them."""

    tag = "results_ack"
    task_ids: list[Any]

    @classmethod
    def from_header(cls, header: dict[str, Any], frames: Sequence[Frame]) -> Message:
        ids = header.get("task_ids")
        if not isinstance(ids, list):
            raise ProtocolError("results_ack: field 'task_ids' missing or not a list")
        _check_ids(ids, "results_ack")
        if len(frames) != 1:
            raise ProtocolError(f"results_ack: expected 1 frame, got {len(frames)}")
        return cls(task_ids=ids)


@dataclasses.dataclass(slots=True)
class StatusRequest(Message):
    tag = "status_request"
    request_id: int


@dataclasses.dataclass(slots=True)
class StatusReport(Message):
    """Managers (one map each: ``workers``, ``cores``, ``memory``, ``accelerators``,
    ``python_version``, ...), queued and outstanding task counts; blocks (one map each:
    ``block_id``, ``job_id``, ``state``, ``managers``, ...), recently ended blocks, why
    scaling stopped, if it did, and the endpoint's configured ``labels`` (routing reads them)."""

    tag = "status_report"
    request_id: int
    managers: list[dict[str, Any]]
    queued_tasks: int
    outstanding_tasks: int
    functions: int = 0
    blocks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ended_blocks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    scaling_error: str | None = None
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class ManagerCommand(Message):
    """Ask the interchange to ``drain``, ``hold`` or ``release`` one manager."""

    tag = "manager_command"
    request_id: int
    action: str
    manager_id: str


@dataclasses.dataclass(slots=True)
class CommandReply(Message):
    tag = "command_reply"
    request_id: int
    ok: bool
    message: str = ""


@dataclasses.dataclass(slots=True)
class CancelTasks(Message):
    """Drop these tasks if they have not been dispatched yet (reported as TaskCancelled)."""

    tag = "cancel_tasks"
    task_ids: list[Any]


for _cls in list(_REGISTRY.values()):
    _cls._prepare()
_prepare_done = True
