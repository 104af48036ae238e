"""The store's interface: what the app, the forwarder and the purger may ask of it."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fabric.protocol import Task
from service.records import (UNSET, CancelOutcome, CommitOutcome, EndpointGroupRecord, EndpointRecord, EndpointReport,
                             FunctionRecord, GroupCounts, GroupRecord, NewTasks, PurgeOutcome, ResultPage, RetryOutcome,
                             RoutedBatch, RouteRecord, Sharing, TaskRecord, TokenRecord, Unset, User, UserRecord)
from service.routing import Placement


class Store(abc.ABC):
    """The service's durable state. Implementations must be safe to call from many threads."""

    # -- users and tokens ----------------------------------------------------------------
    @abc.abstractmethod
    def add_user(self, name: str, token_name: str | None = None) -> tuple[User, str]:
        """Create user ``name`` if new; issue and return a new token for it (named
        ``token_name``, None: by its id). A user may hold several tokens."""

    @abc.abstractmethod
    def user_for_token(self, token: str) -> User | None:
        """The user a token belongs to, or None (a revoked token, a removed user)."""

    @abc.abstractmethod
    def find_user(self, reference: str) -> User | None:
        """The local user of this name or id."""

    @abc.abstractmethod
    def list_users(self) -> list[UserRecord]:
        """Every user, by name, with how many tokens each holds."""

    @abc.abstractmethod
    def list_tokens(self, user_id: str | None, prefix: str = "") -> list[TokenRecord]:
        """The user's tokens (None: everyone's) whose id starts with ``prefix``; never their secrets."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, user_id: str | None = None) -> bool:
        """Delete the token (only if it is ``user_id``'s, unless None): refused from the next request on."""

    @abc.abstractmethod
    def remove_user(self, user_id: str) -> list[str] | None:
        """Delete the user, their tokens and identities, their groups and memberships, their
        endpoints and functions and what they shared or was shared with them; returns the
        ids of their task groups with unfinished tasks (``cancel_group`` stops them), None
        if there is no such user."""

    @abc.abstractmethod
    def user_for_identity(self, provider: str, subject: str, username: str) -> User:
        """The user an identity provider's identity is (made on its first use), named by
        its current username (sharing finds users by it)."""

    # -- functions -----------------------------------------------------------------------
    @abc.abstractmethod
    def put_function(self, owner: str, function_id: str, name: str, description: str, body: bytes) -> FunctionRecord:
        """Register a function (again: free, and it undoes a delete)."""

    @abc.abstractmethod
    def function_access(self, user_id: str, function_id: str) -> tuple[FunctionRecord, str] | None:
        """The function as the user reaches it (their own first, else one shared with them,
        else a public one) and how (``OWNER``/``SHARED``/``PUBLIC``); None if they cannot."""

    @abc.abstractmethod
    def visible_functions(self, user_id: str) -> list[tuple[FunctionRecord, str]]:
        """Functions the user owns or that were shared with them or their groups (without
        bodies; not the merely public ones), with how they reach each."""

    @abc.abstractmethod
    def delete_function(self, owner: str, function_id: str) -> bool:
        """Hide a function from its owner and end its sharing; tasks already accepted still get its body."""

    @abc.abstractmethod
    def function_bodies(self, function_ids: Iterable[str]) -> dict[str, bytes]:
        """Bodies by id, deleted or not, for the forwarder (ids are content hashes)."""

    # -- endpoints -----------------------------------------------------------------------
    @abc.abstractmethod
    def register_endpoint(self, owner: str, name: str, public_key: str, *, rotate_keys: bool = False,
                          allowed_functions: Sequence[str] | None | Unset = UNSET) -> tuple[EndpointRecord, bool]:
        """The owner's endpoint called ``name`` and, unless ``UNSET``, now with this allow-list
        (None: any function); (record, created). A new endpoint gets ``public_key``; an
        existing one keeps its key unless ``rotate_keys`` (then the old key pair no longer
        connects): looking an endpoint up never rotates its keys."""

    @abc.abstractmethod
    def set_allowed_functions(self, endpoint_id: str, function_ids: Sequence[str] | None) -> None:
        """The only functions the endpoint accepts tasks for (None: any)."""

    @abc.abstractmethod
    def get_endpoint(self, owner: str | None, endpoint_id: str) -> EndpointRecord | None:
        """``owner`` None: whoever owns it (the forwarder's view)."""

    @abc.abstractmethod
    def endpoint_access(self, user_id: str, endpoint_id: str) -> tuple[EndpointRecord, str] | None:
        """The endpoint and how the user reaches it (``OWNER``/``SHARED``/``PUBLIC``); None if they cannot."""

    @abc.abstractmethod
    def visible_endpoints(self, user_id: str) -> list[tuple[EndpointRecord, str]]:
        """Endpoints the user owns or that were shared with them or their groups (not the
        merely public ones), with how they reach each."""

    @abc.abstractmethod
    def endpoint_for_key(self, public_key: str) -> str | None:
        """The id of the endpoint holding this CurveZMQ public key (z85), or None."""

    @abc.abstractmethod
    def set_connection(self, endpoint_id: str, connected: bool, now: float, hostname: str | None = None,
                       pid: int | None = None) -> None: ...

    @abc.abstractmethod
    def record_heartbeats(self, last_heard: dict[str, float]) -> None: ...

    @abc.abstractmethod
    def record_status(self, endpoint_id: str, managers: int, workers: int, queued: int, outstanding: int) -> None: ...

    @abc.abstractmethod
    def disconnect_all(self) -> None:
        """Mark every endpoint offline (a starting service has no connections yet)."""

    # -- sharing and groups ----------------------------------------------------------------
    @abc.abstractmethod
    def find_users(self, references: Iterable[str]) -> dict[str, User | None]:
        """Each reference (a user id or a user name) and the user it names (None: nobody)."""

    @abc.abstractmethod
    def user_names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The names of these users (unknown ids left out)."""

    @abc.abstractmethod
    def get_sharing(self, kind: str, object_id: str, owner: str) -> Sharing:
        """Who the owner shares this endpoint or function (``kind``) with."""

    @abc.abstractmethod
    def set_sharing(self, kind: str, object_id: str, owner: str, grantees: Iterable[str]) -> Sharing:
        """Replace whom it is shared with (``public``, ``user:<id>``, ``group:<id>``)."""

    @abc.abstractmethod
    def create_group(self, owner: str, name: str) -> GroupRecord | None:
        """A new group with its owner as first member; None if the owner has one of that name."""

    @abc.abstractmethod
    def get_group(self, group_id: str) -> GroupRecord | None: ...

    @abc.abstractmethod
    def list_groups(self, user_id: str) -> list[GroupRecord]:
        """Groups the user owns or is a member of."""

    @abc.abstractmethod
    def add_group_members(self, group_id: str, user_ids: Sequence[str]) -> GroupRecord | None: ...

    @abc.abstractmethod
    def remove_group_member(self, group_id: str, user_id: str) -> bool: ...

    @abc.abstractmethod
    def delete_group(self, group_id: str) -> None:
        """The group, its members and everything shared with it (shared with nobody now)."""

    # -- tasks and results ---------------------------------------------------------------
    @abc.abstractmethod
    def add_tasks(self, owner: str, tasks: NewTasks, state: str) -> tuple[str, list[str]] | None:
        """Write a batch in one transaction; (task group id, task ids), None if the
        group (or the batch id) belongs to someone else. A batch id seen before from the
        same owner adds nothing and answers what the first request got (a safe retry), or
        raises ``BatchConflict`` (other content) or ``BatchGone`` (tasks purged since)."""

    @abc.abstractmethod
    def add_dispatched(self, owner: str, tasks: NewTasks) -> tuple[str, list[str], list[Task]] | None:
        """``add_tasks`` of a batch sent as soon as it is stored (dispatch at submit): its tasks
        are ``dispatched`` (once, now) and counted sent in their group, in the same transaction.
        Also answers the ``Task``s to send: none for a batch id seen before (that batch's tasks
        went out with the first request, or are re-sent when their endpoint reconnects)."""

    @abc.abstractmethod
    def add_dependent_tasks(self, owner: str, tasks: NewTasks,
                            inputs: Sequence[Sequence[str]]) -> tuple[str, list[str], set[str]] | None:
        """``add_tasks`` of tasks with inputs (``inputs[i]``: the ids of the owner's tasks task i
        waits for; see ``service.store.dependencies``): they wait for their inputs, and those
        whose inputs are all finished are released in the same transaction. Also answers the
        endpoints with tasks released. Raises ``DependencyNotFound`` (nothing stored)."""

    @abc.abstractmethod
    def add_memoized_tasks(self, owner: str, tasks: NewTasks, state: str,
                           ttl: float) -> tuple[str, list[str], int] | None:
        """``add_tasks`` of memoized tasks (``service.store.memo``): those whose (owner, function
        id, hash of the arguments) has an unexpired result finish with it at once; the others
        wait in ``state`` and remember a success for ``ttl`` seconds. (group id, task ids, hits)."""

    @abc.abstractmethod
    def create_trigger(self, owner: str, endpoint_id: str, function_id: str, directory: str, pattern: str,
                       max_per_minute: int) -> dict[str, Any]:
        """A new trigger (``service.store.triggers``): its record."""

    @abc.abstractmethod
    def list_triggers(self, owner: str, endpoint_id: str | None) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def delete_trigger(self, owner: str, trigger_id: str) -> bool: ...

    @abc.abstractmethod
    def forget(self, owner: str, function_id: str | None) -> int:
        """Drop the owner's memoized results (of one function, or all); how many."""

    @abc.abstractmethod
    def group_task_ids(self, task_group_id: str, after: int, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` task ids of the group in submission order after a cursor; (ids, next cursor)."""

    @abc.abstractmethod
    def get_task(self, owner: str, task_id: str) -> TaskRecord | None: ...

    @abc.abstractmethod
    def take_waiting(self, endpoint_id: str, limit: int, now: float) -> list[Task]:
        """Up to ``limit`` not-yet-sent tasks of the endpoint, oldest first, now ``dispatched``."""

    @abc.abstractmethod
    def take_unfinished(self, endpoint_id: str, now: float) -> list[Task]:
        """Every dispatched or running task of the endpoint (to send again), now ``dispatched``."""

    @abc.abstractmethod
    def mark_running(self, endpoint_id: str, task_ids: Sequence[Any], now: float) -> None: ...

    @abc.abstractmethod
    def commit_results(self, endpoint_id: str, results: Iterable[tuple[Any, int, bytes, str | None]],
                       now: float) -> CommitOutcome:
        """Store ``(task id, kind, payload, error)`` results of the endpoint's unfinished
        tasks; anything else (finished already, unknown, another endpoint's) is ignored."""

    @abc.abstractmethod
    def task_group_owner(self, task_group_id: str) -> str | None: ...

    @abc.abstractmethod
    def results_after(self, task_group_id: str, after: int, limit: int) -> ResultPage: ...

    @abc.abstractmethod
    def group_counts(self, task_group_id: str) -> GroupCounts | None:
        """How many tasks the group has, finished (success, failed, cancelled) and pending
        (waiting, running)."""

    @abc.abstractmethod
    def unfinished_counts(self, endpoint_id: str) -> dict[str, int]:
        """How many of the endpoint's tasks are in each unfinished state (none: left out)."""

    # -- routing (``service.store.routes``) -----------------------------------------------
    @abc.abstractmethod
    def record_report(self, endpoint_id: str, report: dict[str, Any], measured: dict[str, Any], now: float) -> None:
        """The endpoint's last hardware and load report, and the service's measurements of it."""

    @abc.abstractmethod
    def endpoint_reports(self, endpoint_ids: Iterable[str]) -> dict[str, EndpointReport]:
        """The last reports of these endpoints (those never reported left out)."""

    @abc.abstractmethod
    def create_endpoint_group(self, owner: str, name: str, members: Sequence[str]) -> EndpointGroupRecord | None:
        """A new endpoint group; None if the owner has one of that name."""

    @abc.abstractmethod
    def endpoint_group_access(self, user_id: str, group_id: str) -> tuple[EndpointGroupRecord, str] | None:
        """The endpoint group and how the user reaches it (owner, shared, public); None if they cannot."""

    @abc.abstractmethod
    def visible_endpoint_groups(self, user_id: str) -> list[tuple[EndpointGroupRecord, str]]:
        """Endpoint groups the user owns or that were shared with them or their groups."""

    @abc.abstractmethod
    def delete_endpoint_group(self, owner: str, group_id: str) -> bool:
        """Delete the owner's endpoint group and its sharing (tasks already routed keep their route)."""

    @abc.abstractmethod
    def add_routed(self, owner: str, tasks: NewTasks, endpoint_group_id: str, spec: dict[str, Any],
                   members: Sequence[str], placed: Sequence[Placement] = ()) -> RoutedBatch | None:
        """Store a batch for a group: the first tasks ``placed`` on endpoints at once
        (``dispatched``, with the reasons), the rest waiting under a route (policy ``spec``
        over ``members``) until placed; None as ``add_tasks``. A batch id seen before adds
        nothing (``sent`` empty, ``waiting`` 0)."""

    @abc.abstractmethod
    def get_route(self, route_id: str) -> RouteRecord | None: ...

    @abc.abstractmethod
    def waiting_routes(self) -> dict[str, int]:
        """Routes with tasks waiting to be placed, and how many."""

    @abc.abstractmethod
    def take_routed(self, route_id: str, endpoint_id: str, limit: int, reason: str, now: float) -> list[Task]:
        """Place up to ``limit`` waiting tasks of the route on the endpoint, now ``dispatched``, with the reason."""

    @abc.abstractmethod
    def reroute(self, endpoint_id: str, dispatched: bool, reason: str) -> dict[str, int]:
        """The endpoint's routed tasks not yet sent (and, if ``dispatched``, those sent and
        unfinished) wait under their routes again; a late result from it is then ignored.
        Returns the routes concerned, and how many tasks of each."""

    @abc.abstractmethod
    def routed_endpoints(self) -> set[str]:
        """Endpoints holding routed unfinished tasks."""

    @abc.abstractmethod
    def placements(self, task_group_id: str) -> dict[str, int]:
        """How many of the group's routed tasks were placed on each endpoint (moves deducted)."""

    # -- whole task groups ---------------------------------------------------------------
    @abc.abstractmethod
    def cancel_group(self, task_group_id: str, now: float) -> CancelOutcome:
        """Fail the group's tasks not yet sent with a ``TaskCancelled`` result (each gets its
        seq, so result streams deliver it); name the dispatched ones, for their endpoints."""

    @abc.abstractmethod
    def retry_group(self, task_group_id: str, is_online: Callable[[str], bool], now: float) -> RetryOutcome:
        """Send the group's failed tasks (not the cancelled ones) again: their results are
        cleared and they wait, ``received`` if ``is_online(endpoint id)`` else ``waiting``."""

    # -- purging ---------------------------------------------------------------------------
    @abc.abstractmethod
    def acknowledge(self, task_group_id: str, seq: int) -> None:
        """The client holds every result of the group up to ``seq``: they may be deleted.
        Cheap (no write on the request path); ``purge`` makes it durable."""

    @abc.abstractmethod
    def purge(self, now: float, result_ttl: float, *, budget: float = 1.0) -> PurgeOutcome:
        """Delete acknowledged finished tasks (failed ones stay for ``retry_group`` until
        they expire), finished tasks older than ``result_ttl`` seconds, and task groups
        empty and idle that long; in short transactions, for about ``budget`` seconds at most."""

    @abc.abstractmethod
    def close(self) -> None: ...
