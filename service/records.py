"""The records the store hands out, and the task states (plain data, no behaviour)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

RECEIVED = "received"
WAITING = "waiting-for-endpoint"
DISPATCHED = "dispatched"
RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"
WAITING_FOR_INPUTS = "waiting-for-dependencies"
"""A task whose inputs (tasks passed as arguments) are unfinished: it waits in the store, not
for an endpoint (``service.store.dependencies``); not in ``UNFINISHED``, which lists the states
an endpoint deals with."""
STATES = (RECEIVED, WAITING, WAITING_FOR_INPUTS, DISPATCHED, RUNNING, SUCCESS, FAILED)
UNFINISHED = (RECEIVED, WAITING, DISPATCHED, RUNNING)



class Unset(enum.Enum):
    """The type of ``UNSET``: a value left out, so left as it is (where None means something)."""

    UNSET = "unset"


UNSET = Unset.UNSET

OWNER = "owner"
SHARED = "shared"
PUBLIC = "public"
ACCESS = (OWNER, SHARED, PUBLIC)
"""How a caller reaches an endpoint or a function: owns it, was given it (by name or through a
group), or it is public. Only an owner changes, shares or deletes it."""


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    user_id: str
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class TokenRecord:
    """One of a user's API tokens, as listed: its id (the part of the token before the dot,
    not secret), its name and when it was issued; never its secret."""

    token_id: str
    user_id: str
    name: str
    created: float


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as the operator lists them: how many tokens they hold."""

    user_id: str
    name: str
    created: float
    tokens: int


@dataclasses.dataclass(frozen=True, slots=True)
class FunctionRecord:
    function_id: str
    owner: str
    name: str
    description: str
    body: bytes
    created: float


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointRecord:
    endpoint_id: str
    owner: str
    name: str
    public_key: str  # the service keeps no secret key: the endpoint got it in the registration reply
    created: float
    connected: bool
    last_heartbeat: float | None
    hostname: str | None
    pid: int | None
    managers: int
    workers: int
    interchange_queued: int
    interchange_outstanding: int
    allowed_functions: tuple[str, ...] | None = None  # None: any function


@dataclasses.dataclass(frozen=True, slots=True)
class Sharing:
    """Who besides its owner may use an endpoint or a function: everyone (``public``),
    these users, and the members of these groups (ids)."""

    public: bool = False
    users: tuple[User, ...] = ()
    groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRecord:
    """A named set of users, made by ``owner`` (its first member) to share with at once."""

    group_id: str
    owner: str
    name: str
    created: float
    members: tuple[User, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    owner: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    state: str
    result_kind: int | None
    result: bytes | None
    error: str | None
    created: float
    dispatched: float | None
    started: float | None
    completed: float | None
    retries: int
    resource_spec: dict[str, Any] | None
    dispatch_count: int
    seq: int | None
    route_id: str | None = None  # submitted to an endpoint group: the route that placed it
    route_reason: str | None = None  # why it went where it did (or was moved)
    memo_hit: int = 0  # 1: answered from the memo, never ran


@dataclasses.dataclass(frozen=True, slots=True)
class ResultPage:
    """Results of one task group after a cursor: columns, the next cursor, unfinished count."""

    task_ids: list[str]
    kinds: list[int]
    payloads: list[bytes]
    cursor: int
    pending: int


@dataclasses.dataclass(frozen=True, slots=True)
class GroupCounts:
    """A task group's tasks: ``tasks`` = ``success`` + ``failed`` + ``pending``, and
    ``pending`` = ``waiting`` (received or waiting-for-endpoint) + ``running`` (dispatched
    or running); ``cancelled`` of the ``failed`` ones were cancelled. Purging results
    changes none of these."""

    tasks: int
    success: int
    failed: int
    pending: int
    waiting: int = 0
    running: int = 0
    cancelled: int = 0
    memo_hits: int = 0  # of the ``success`` ones, answered from the memo (never ran)


@dataclasses.dataclass(frozen=True, slots=True)
class CommitOutcome:
    committed: list[str]
    ignored: int
    task_groups: set[str]
    round_trip: float | None = None  # mean seconds from dispatch to this commit of the committed tasks
    released: set[str] = dataclasses.field(default_factory=set)  # endpoints with dependents now waiting


@dataclasses.dataclass(frozen=True, slots=True)
class CancelOutcome:
    """``cancelled`` tasks were never sent and are now failed with ``TaskCancelled``;
    ``dispatched`` (endpoint id -> task ids) were sent already: their endpoints are asked to drop them."""

    cancelled: int
    dispatched: dict[str, list[str]]


@dataclasses.dataclass(frozen=True, slots=True)
class RetryOutcome:
    """``retried`` failed tasks wait to run again, on these endpoints."""

    retried: int
    endpoints: set[str]


@dataclasses.dataclass(frozen=True, slots=True)
class PurgeOutcome:
    """Rows one purge step deleted: tasks whose results the client had, tasks past the time
    to live, and task groups left empty; ``more``: it ran out of time with work left."""

    acknowledged: int = 0
    expired: int = 0
    task_groups: int = 0
    more: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class NewTasks:
    """What a client submits in one batch (all tasks share the options)."""

    endpoint_id: str
    function_ids: Sequence[str]
    payloads: Sequence[bytes]
    task_group_id: str | None = None
    retries: int = 0
    walltime: float | None = None
    priority: int = 0
    resource_spec: dict[str, Any] | None = None
    batch_id: str | None = None


ROUTE_PREFIX = "route:"
"""A task submitted to an endpoint group and not yet placed has endpoint id ``route:<route id>``
(so it waits in the same index range as an endpoint's waiting tasks)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointGroupRecord:
    """A named set of endpoints to submit to at once (the service picks one per task)."""

    endpoint_group_id: str
    owner: str
    name: str
    members: tuple[str, ...]
    created: float


@dataclasses.dataclass(frozen=True, slots=True)
class RouteRecord:
    """How one submitter's tasks to a group are placed: the policy (``routing.RoutingSpec``
    as a dict) and the members they may go to (reachable by the submitter)."""

    route_id: str
    owner: str
    endpoint_group_id: str
    spec: dict[str, Any]
    members: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RoutedBatch:
    """A group's batch as stored: ``sent`` (endpoint id -> tasks placed there at submit,
    stored ``dispatched``) and how many more wait under the route (``waiting``)."""

    task_group_id: str
    task_ids: list[str]
    route_id: str
    sent: dict[str, list[Any]]
    waiting: int


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointReport:
    """An endpoint's last hardware report (``managers``, ``labels``, live load) and the
    service's measurements of it (``round_trip``, ``tasks_per_s``, ``failure_rate``, ``rtt``)."""

    endpoint_id: str
    report: dict[str, Any]
    measured: dict[str, Any]
    updated: float
