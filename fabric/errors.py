"""Every error the fabric raises, in one hierarchy.

::

    FabricError
    ├── ProtocolError            a message that does not follow fabric.protocol
    ├── SerializationError       a value or function that cannot be (de)serialized
    ├── ConfigError              a configuration value that cannot work
    ├── PayloadTooLarge          arguments or a result bigger than the configured limit
    ├── EndpointError            the local endpoint cannot take or finish work
    │   └── EndpointShutdown     submitted to (or pending in) an endpoint that shut down
    ├── ServiceError             the service refused a request (status, error_type, request_id)
    │   ├── AuthError            401: no token, or an unknown or expired one
    │   │   └── Forbidden        403: known caller, not allowed (not the owner; a function
    │   │                        the endpoint does not allow)
    │   ├── NotFound             404: no such function, endpoint, task or group *for you*
    │   ├── InvalidRequest       400/405/409/415: a request the service cannot take (409
    │   │                        ``batch_conflict``: a batch id reused with other content)
    │   │   └── NoEligibleEndpoint 409: no member of the endpoint group meets ``requires``
    │   ├── BatchGone            410: a batch replayed after its tasks were purged
    │   ├── RateLimited          429: too many requests; ``retry_after`` seconds
    │   ├── ServiceUnavailable   502/503/504, or the service cannot be reached (retried)
    │   └── ServiceInternalError 500: the service failed on this request (never retried)
    ├── TaskPending              the task has no result yet (``task_id``, ``state``)
    └── TaskError                a task ended without a result
        ├── RemoteExecutionError the function raised; carries the remote type, message, traceback
        ├── TaskTimeout          the task ran past its walltime; its worker was replaced
        ├── WorkerLost           the worker process died while running the task
        ├── ManagerLost          the manager (node) running the task disappeared
        ├── TaskCancelled        the task was cancelled before it ran
        ├── DependencyFailed     an input of the task (a future passed as an argument) failed
        └── FunctionNotAllowed   the endpoint's own allow-list refused the task's function

Task errors cross process boundaries as plain data (``to_wire`` / ``from_wire``), never
as pickles, so the interchange and manager can create them without unpickling anything
and a client only ever rebuilds classes listed in this module.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FabricError(Exception):
    """Base class of every error raised by the fabric."""


class ProtocolError(FabricError):
    """A message broke the wire protocol: unknown tag, wrong version, bad or missing frames."""


class SerializationError(FabricError):
    """A function, argument or result could not be serialized or deserialized."""


class ConfigError(FabricError, ValueError):
    """A configuration value is invalid."""


class PayloadTooLarge(FabricError, ValueError):
    """A task's arguments or result exceed the size limit of the fabric."""

    def __init__(self, size: int, limit: int, what: str = "payload") -> None:
        super().__init__(size, limit, what)
        self.size, self.limit, self.what = size, limit, what

    def __str__(self) -> str:
        return f"{self.what} of {self.size} bytes exceeds the limit of {self.limit} bytes"


class ServiceError(FabricError):
    """The service refused or failed a request; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, *, status: int = 0, error_type: str = "", request_id: str = "") -> None:
        super().__init__(message)
        self.message, self.status, self.error_type, self.request_id = message, status, error_type, request_id

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.message}{where}"


class AuthError(ServiceError):
    """No token, an unknown or expired one, or a token without access to what was asked."""


class Forbidden(AuthError, PermissionError):
    """The caller is known but may not do this: only an owner may change or share what it
    owns, and an endpoint runs only the functions its allow-list names (``error_type``
    ``forbidden`` or ``function_not_allowed``)."""


class NotFound(ServiceError, LookupError):
    """No such function, endpoint, task or task group visible to the caller."""


class InvalidRequest(ServiceError, ValueError):
    """The service cannot take the request as sent (bad fields, wrong method or content type)."""


class NoEligibleEndpoint(InvalidRequest):
    """No endpoint of the group you submitted to (that you reach) meets the routing
    constraints (``requires``), so the batch was refused and nothing of it stored."""


class RateLimited(ServiceError):
    """Too many requests; retry after ``retry_after`` seconds (None: the service did not say)."""

    def __init__(self, message: str, *, retry_after: float | None = 1.0, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after


class BatchGone(ServiceError):
    """A batch sent again (same ``batch_id``) after its tasks were purged: the service can no
    longer name them, so the replay adds nothing and the submitter's futures fail with this."""


class ServiceUnavailable(ServiceError):
    """The service could not be reached, or answered 502, 503 or 504: worth retrying."""


class ServiceInternalError(ServiceError):
    """The service failed on this request (500): sent again, it would fail again, so the
    client raises it at once with the service's message and ``request_id`` (for its log)."""


class TaskPending(FabricError):
    """The task has no result yet."""

    def __init__(self, task_id: str, state: str) -> None:
        super().__init__(task_id, state)
        self.task_id, self.state = task_id, state

    def __str__(self) -> str:
        return f"task {self.task_id} is {self.state}"


class EndpointError(FabricError):
    """The endpoint cannot accept or complete work."""


class EndpointShutdown(EndpointError):
    """The endpoint was shut down before the task could finish."""


_TASK_ERRORS: dict[str, type[TaskError]] = {}


class TaskError(FabricError):
    """A task ended without producing a result.

    Subclasses name their fields in ``fields``; those are what crosses the wire.
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _TASK_ERRORS[cls.__name__] = cls

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown fields {sorted(unknown)}")
        for name in self.fields:
            setattr(self, name, values.get(name))
        super().__init__(*(values.get(name) for name in self.fields))

    def __str__(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self.fields)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self).__name__, self.to_wire()["fields"]))

    def to_wire(self) -> dict[str, Any]:
        """Plain data (msgpack-able) describing this error."""
        return {"error": type(self).__name__, "fields": {n: getattr(self, n) for n in self.fields}}

    @staticmethod
    def from_wire(data: dict[str, Any]) -> TaskError:
        """Rebuild an error from ``to_wire`` output; unknown names become ``TaskError``."""
        cls = _TASK_ERRORS.get(str(data.get("error")), TaskError)
        fields = data.get("fields") or {}
        return cls(**{k: v for k, v in fields.items() if k in cls.fields})


def _rebuild(name: str, fields: dict[str, Any]) -> TaskError:
    return TaskError.from_wire({"error": name, "fields": fields})


class RemoteExecutionError(TaskError):
    """The function raised an exception on the worker.

    ``remote_type`` is the qualified name of the exception's class, ``message`` its
    ``str()``, ``traceback`` the formatted remote traceback. ``exception`` holds the
    original exception object when it could be rebuilt on this side, else None.
    """

    fields = ("remote_type", "message", "traceback", "task_id")
    remote_type: str | None
    message: str | None
    traceback: str | None
    task_id: Any
    exception: BaseException | None = None

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.message}\n\nRemote traceback:\n{self.traceback}"


class TaskTimeout(TaskError):
    """The task ran longer than its walltime; the worker running it was replaced."""

    fields = ("task_id", "walltime", "hostname")
    task_id: Any
    walltime: float | None
    hostname: str | None

    def __str__(self) -> str:
        return f"task {self.task_id} exceeded its walltime of {self.walltime} s on {self.hostname}"


class WorkerLost(TaskError):
    """The worker process running the task died (signal or exit) before returning a result."""

    fields = ("task_id", "worker_id", "hostname", "exit_code")
    task_id: Any
    worker_id: str | None
    hostname: str | None
    exit_code: int | None

    def __str__(self) -> str:
        return (
            f"worker {self.worker_id} on {self.hostname} died (exit code {self.exit_code}) "
            f"while running task {self.task_id}"
        )


class ManagerLost(TaskError):
    """The manager running the task stopped answering (node lost, process killed)."""

    fields = ("task_id", "manager_id", "hostname")
    task_id: Any
    manager_id: str | None
    hostname: str | None

    def __str__(self) -> str:
        return f"manager {self.manager_id} on {self.hostname} was lost while running task {self.task_id}"


class TaskCancelled(TaskError):
    """The task was cancelled before it ran."""

    fields = ("task_id",)
    task_id: Any

    def __str__(self) -> str:
        return f"task {self.task_id} was cancelled"


class FunctionNotAllowed(TaskError):
    """The endpoint refused to run the task: its function is not in the endpoint's allow-list
    (``allowed_functions`` in the endpoint's configuration, checked before anything runs)."""

    fields = ("task_id", "function_id")
    task_id: Any
    function_id: str | None

    def __str__(self) -> str:
        return f"function {self.function_id} is not allowed on this endpoint (task {self.task_id})"


class DependencyFailed(TaskError):
    """The task never ran: an input (a task whose future was passed as an argument) failed."""

    fields = ("task_id", "input_id", "reason")
    task_id: Any
    input_id: str | None
    reason: str | None

    def __str__(self) -> str:
        return f"task {self.task_id} did not run: its input task {self.input_id} failed ({self.reason})"
