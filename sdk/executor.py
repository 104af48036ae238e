"""``Executor``: a ``concurrent.futures.Executor`` that runs tasks on an endpoint through the service.

::

    from fabric import Executor
    with Executor(endpoint_id) as executor:              # Client() from FABRIC_TOKEN / fabric login
        future = executor.submit(pow, 2, 10)
        print(future.result(), future.task_id)
        print(list(executor.map(abs, range(-5, 0))))

How tasks move. ``submit`` serializes the arguments in the caller's thread (so a value
that cannot be serialized fails there) and queues the task; one *submitter* thread
takes whatever is queued, registers functions it has not registered yet, and uploads
the tasks in batches (``Client.submit_batch``, which retries safely). The client's
*result watcher* (``sdk.watcher``: one long-poll for all executors of a ``Client``) fetches
the executor's task group's results by cursor and resolves futures in bulk. All tasks of
an executor belong to one task group (``task_group_id``); ``reload_tasks()`` re-attaches
to a group later, from another process, and returns a future for each of its tasks.

Memory stays bounded however many tasks go through: a submit blocks while
``max_queued_tasks`` tasks wait to be uploaded (back-pressure), and ``map`` keeps at most
``window`` tasks unfinished, submitting more as results are consumed, in order. A progress
bar (``sdk.progress``) shows tasks finished out of submitted when the work takes a while
and someone is watching (``progress=True/False`` to choose). Results are deserialized
client side only.

Serializers. At its first submit the executor reads the endpoint's record (one request):
an endpoint whose policy is data-only arguments (``data_only``: the default when it has an
allow-list) gets arguments encoded data-only (``fabric.data_only``; a value that is not data
fails ``submit`` with ``DataOnlyError``). The results of an endpoint you do not own are
decoded data-only, and its remote exceptions rebuilt from their type name, message and
traceback text: a pickle from there could run anything its owner wants in your process.
``allow_pickled_results=True`` accepts pickled results from such an endpoint, if you trust
its owner as you trust your own code.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import dataclasses
import logging
import platform
import threading
import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fabric import data
from fabric.dependencies import NotAFabricFuture, collect_inputs, reduce_task_ref
from fabric.errors import (BatchGone, FabricError, Forbidden, NotFound, PayloadTooLarge, ResourceSpecError,
                           SerializationError)
from fabric.functions import RESOURCE_KEYS, check_call, check_resource_specification
from fabric.rest import Oversized
from fabric.serialize import serialize_arguments, serialize_function
from sdk.client import Client, function_name
from sdk.credentials import resolve
from sdk.futures import TaskFuture
from sdk.memo import memo_option
from sdk.offline import OFFLINE_WARNING_AFTER, OfflineWatch
from sdk.progress import Progress

logger = logging.getLogger(__name__)

DEFAULT_BATCH_TASKS = 4096
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024
MAP_WINDOW = 50_000
"""Tasks ``map`` keeps unfinished at most (its memory bound). Below the service's default
``max_outstanding`` (100,000 per endpoint), so all of them can be at the endpoint: past it,
tasks wait in the service's store, which costs it a second write per task."""

_live_executors: weakref.WeakSet[Executor] = weakref.WeakSet()
_shared_clients: dict[tuple[str | None, str | None], Client] = {}
_shared_clients_lock = threading.Lock()


def _shared_client() -> Client:
    """The ``Client()`` of executors made without one: one per service and token, so that
    they share its result watcher (one long-poll for all of them)."""
    credentials = resolve(None, None)
    key = (credentials.service_url, credentials.token)
    with _shared_clients_lock:
        client = _shared_clients.get(key)
        if client is None:
            client = _shared_clients[key] = Client()
        return client


class ServiceTaskFuture(TaskFuture):
    """A ``TaskFuture`` that knows its task's id once the service accepted it, and
    (``endpoint_id``) the endpoint it runs on once dispatched."""

    def __init__(self, task_id: str | None = None) -> None:
        super().__init__()
        self.task_id = task_id
        self._endpoint_id: str | None = None
        self._client: Client | None = None  # set for tasks of an endpoint group: asked on demand

    @property
    def endpoint_id(self) -> str | None:
        """The endpoint the task was sent to (for an endpoint group's task: the one the service
        picked, asked of the service the first time; None until it is dispatched)."""
        if self._endpoint_id is None and self._client is not None and self.task_id is not None:
            self._endpoint_id = self._client.get_task(self.task_id).get("endpoint_id")
        return self._endpoint_id

    def __reduce__(self) -> tuple[Any, ...]:
        """As an argument of another task: a reference to this task (``fabric.dependencies``)."""
        return reduce_task_ref(wait_for_task_id(self))


@dataclasses.dataclass(slots=True)
class _Queued:
    future: ServiceTaskFuture
    function_id: str
    payload: bytes
    options: tuple[int, tuple[tuple[str, Any], ...] | None, bool | float | None]  # (retries, spec items, memoize)
    inputs: list[str]  # ids of the tasks its arguments refer to (fabric.dependencies)


class Executor(concurrent.futures.Executor):
    """Run functions on endpoint ``endpoint_id`` through the service ``client`` talks to
    (None: a ``Client()`` shared by the executors made without one).

    Or on an endpoint group (``endpoint_group``: its id): the service picks a member for
    each task when it dispatches it, by ``policy`` (``least-loaded``, ``fastest``,
    ``cheapest``, ``closest`` to ``near``) or by ``weights`` (figures to numbers, lowest
    weighted sum wins), among the members meeting ``requires`` (e.g. ``{"gpu": 1}``,
    ``{"site": "aps"}``); ``NoEligibleEndpoint`` (on the futures) if none does. The first
    upload warns (``RuntimeWarning``) if the workers run another Python than this one.

    ``task_group_id``: the group to add tasks to (None: a new one).
    ``resource_specification`` (e.g. ``{"walltime": 60, "priority": 1}``, and for an
    ``MPIFunction`` ``{"num_nodes": 2, "ranks_per_node": 4}``; ``resource_spec`` is its
    old name), ``container`` (the name of a container the endpoint offers; its tasks run
    only there) and ``retries`` apply to tasks submitted while they are set.
    ``batch_tasks`` / ``batch_bytes`` bound one upload; ``progress`` shows a progress bar
    (None: when stderr is a terminal or in a notebook).
    ``memoize``: True (or a ttl in seconds) answers a call repeated with the same arguments
    from its earlier result, without running it (``sdk.memo``; functions marked with
    ``sdk.memo.memoize`` are memoized either way).
    ``allow_pickled_results``: unpickle results (and remote exceptions) from an endpoint you
    do not own; its owner can then run any code in this process (see the module's text).
    ``offline_warning_after``: seconds the endpoint may be offline while tasks wait before
    the executor warns, once, naming it (``sdk.offline``; None: never).
    """

    def __init__(self, endpoint_id: str | None = None, client: Client | None = None, *,
                 task_group_id: str | None = None, resource_specification: dict[str, Any] | None = None,
                 resource_spec: dict[str, Any] | None = None, container: str | None = None, retries: int = 0,
                 batch_tasks: int = DEFAULT_BATCH_TASKS, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 max_queued_tasks: int = 100_000, progress: bool | None = None,
                 endpoint_group: str | None = None, policy: str | None = None,
                 requires: dict[str, Any] | None = None, weights: dict[str, float] | None = None,
                 near: str | None = None, memoize: bool | float = False,
                 allow_pickled_results: bool = False,
                 offline_warning_after: float | None = OFFLINE_WARNING_AFTER) -> None:
        if endpoint_id is not None and endpoint_group is not None:
            raise ValueError("an executor runs on an endpoint_id or an endpoint_group, not both")
        self.endpoint_id = endpoint_id
        self.endpoint_group = endpoint_group
        routing = {"policy": policy, "requires": requires, "weights": weights, "near": near}
        self.routing = {k: v for k, v in routing.items() if v is not None} if endpoint_group else None
        self._python_checked = False
        self.client = client if client is not None else _shared_client()
        self.task_group_id = task_group_id or str(uuid.uuid4())
        if resource_spec is not None and resource_specification is not None:
            raise TypeError("give resource_specification or its old name resource_spec, not both")
        self.resource_specification = resource_specification if resource_specification is not None else resource_spec
        self.container = container
        self.retries = retries
        self.memoize = memoize
        self.allow_pickled_results = allow_pickled_results
        self._policy: tuple[bool, bool] | None = None  # (data-only arguments, data-only results)
        self.batch_tasks, self.batch_bytes, self.max_queued_tasks = batch_tasks, batch_bytes, max_queued_tasks
        self._lock = threading.Condition()
        self._queue: deque[_Queued] = deque()
        self._bodies: dict[str, tuple[bytes, str]] = {}  # function id -> (body, name), not yet registered
        self._function_ids: dict[Any, str] = {}
        self._futures: dict[str, ServiceTaskFuture] = {}  # uploaded, unresolved, by task id
        self._early: dict[str, tuple[bool, Any]] = {}  # results that beat their upload's reply
        self._uploading = 0
        self._cursor = 0
        self._generation = 0  # bumped when the watcher must restart from cursor 0 (reload_tasks)
        self._closing = False
        self._stopped = False
        self.progress = Progress(progress)
        self._offline = (OfflineWatch(self.client, endpoint_id, offline_warning_after)
                         if endpoint_id is not None and offline_warning_after is not None else None)
        self._submitter = threading.Thread(target=self._submit_loop, name="fabric-executor-submit", daemon=True)
        self._submitter.start()
        _live_executors.add(self)

    @property
    def resource_spec(self) -> dict[str, Any] | None:
        """The old name of ``resource_specification``."""
        return self.resource_specification

    @resource_spec.setter
    def resource_spec(self, value: dict[str, Any] | None) -> None:
        self.resource_specification = value

    def __repr__(self) -> str:
        where = (f"endpoint_group={self.endpoint_group!r}" if self.endpoint_group
                 else f"endpoint_id={self.endpoint_id!r}")
        return f"Executor({where}, task_group_id={self.task_group_id!r})"

    # -- submitting --------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ServiceTaskFuture:
        """Run ``fn(*args, **kwargs)`` on the endpoint; the future's ``task_id`` is set once uploaded."""
        if self.endpoint_id is None and self.endpoint_group is None:
            raise ValueError("the executor has no endpoint_id (nor endpoint_group)")
        check_call(fn, args, kwargs)
        return self._enqueue(self._function_id(fn), args, kwargs, memo_option(fn, self.memoize))

    def submit_to_registered_function(self, function_id: str, args: Iterable[Any] = (),
                                      kwargs: dict[str, Any] | None = None) -> ServiceTaskFuture:
        """Run a function already registered with the service, by id: yours, or one shared with
        you or your groups, or a public one (``NotFound`` on the future otherwise)."""
        if self.endpoint_id is None and self.endpoint_group is None:
            raise ValueError("the executor has no endpoint_id (nor endpoint_group)")
        if not isinstance(function_id, str) or not function_id:
            raise TypeError("function_id must be a function id (a non-empty string)")
        return self._enqueue(function_id, tuple(args), kwargs or {}, memo_option(None, self.memoize))

    def _endpoint_policy(self) -> tuple[bool, bool]:
        """(arguments data-only, results data-only) for this executor's endpoint, asked once."""
        policy = self._policy
        if policy is None:
            if self.endpoint_id is None:  # reloading a group: where its tasks ran is unknown
                return False, not self.allow_pickled_results
            try:
                record = self.client.get_endpoint_status(self.endpoint_id)
            except (NotFound, Forbidden):  # the upload fails with this on the futures
                return False, not self.allow_pickled_results
            owned = record.get("access") == "owner"
            policy = self._policy = (bool(record.get("data_only")), not owned and not self.allow_pickled_results)
        return policy

    def _results_data_only(self) -> bool:
        """For the client's ``ResultWatcher``: decode this executor's results data-only."""
        try:
            return self._endpoint_policy()[1]
        except FabricError:  # the endpoint cannot be asked now: the safe choice
            return not self.allow_pickled_results

    def _enqueue(self, function_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 memoize: bool | float | None = None) -> ServiceTaskFuture:
        data_arguments, data_results = self._endpoint_policy()
        with collect_inputs() as inputs:  # futures among the arguments become references to their tasks
            try:
                payload = serialize_arguments(args, kwargs, data_only=data_arguments, data_only_result=data_results)
            except SerializationError as exc:
                if isinstance(exc.__cause__, NotAFabricFuture):
                    raise exc.__cause__ from None
                raise
        if len(payload) > data.THRESHOLD:  # sent once to the data store; a reference rides in the task
            payload = data.by_reference(payload, self.client)
        spec = (service_spec(self.resource_specification, self.container)
                if self.resource_specification or self.container is not None else None)
        future = ServiceTaskFuture()
        with self._lock:
            if self._closing:
                raise RuntimeError("cannot submit to an executor that is shut down")
            while len(self._queue) >= self.max_queued_tasks and not self._closing:
                self._lock.wait()
            self._queue.append(_Queued(future, function_id, payload, (self.retries, spec, memoize), inputs))
            if len(self._queue) == 1:  # the submitter waits only for an empty queue to fill
                self._lock.notify_all()
        return future

    def _function_id(self, fn: Callable[..., Any]) -> str:
        try:
            known = self._function_ids.get(fn)
        except TypeError:  # unhashable callables are serialized every time
            known = None
        if known is not None:
            return known
        function_id, body = serialize_function(fn)
        with self._lock:
            self._bodies.setdefault(function_id, (body, function_name(fn)))
            with contextlib.suppress(TypeError):
                self._function_ids[fn] = function_id
        return function_id

    def _submit_loop(self) -> None:
        reason = "stopped"
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._lock.wait()
                    if not self._queue:
                        return
                    batch = self._take_batch()
                    bodies, self._bodies = self._bodies, {}
                    self._uploading += 1
                    self._lock.notify_all()
                try:
                    self._register(bodies, batch)
                    self._upload([q for q in batch if q.future.set_running_or_notify_cancel()])
                finally:
                    with self._lock:
                        self._uploading -= 1
                        if not self._uploading:
                            self._early.clear()  # results of tasks no future of ours waits for
                        self._lock.notify_all()
        except BaseException as exc:
            reason = f"failed: {exc!r}"
            logger.exception("the executor's submitter failed")
            raise
        finally:
            logger.debug("executor submitter ended: %s", reason)

    def _take_batch(self) -> list[_Queued]:
        """Queued tasks with the same options, up to the batch limits (caller holds the lock)."""
        first = self._queue.popleft()
        batch, size = [first], len(first.payload)
        while (self._queue and len(batch) < self.batch_tasks and self._queue[0].options == first.options
               and size + len(self._queue[0].payload) <= self.batch_bytes):
            queued = self._queue.popleft()
            batch.append(queued)
            size += len(queued.payload)
        return batch

    def _register(self, bodies: dict[str, tuple[bytes, str]], batch: list[_Queued]) -> None:
        for function_id, (body, name) in bodies.items():
            try:
                self.client.register_function_body(body, name=name, function_id=function_id)
            except FabricError as exc:
                for queued in batch:
                    if queued.function_id == function_id:
                        queued.function_id = ""  # left out of the upload, cancelled or not
                        if queued.future.set_running_or_notify_cancel():
                            queued.future.set_exception(exc)
                with self._lock:  # later tasks of this function fail the same way
                    self._function_ids = {f: i for f, i in self._function_ids.items() if i != function_id}
        batch[:] = [q for q in batch if q.function_id]

    def _upload(self, batch: list[_Queued]) -> None:
        """Upload a batch; an oversized one is split, and only the tasks too big on their own fail."""
        if not batch:
            return
        retries, spec, memoize = batch[0].options
        try:
            submitted = self.client.submit_batch(
                self.endpoint_id, [q.function_id for q in batch], [q.payload for q in batch],
                task_group_id=self.task_group_id, retries=retries, resource_spec=dict(spec) if spec else None,
                endpoint_group=self.endpoint_group, routing=self.routing,
                python_version=None if self._python_checked else platform.python_version(),
                depends_on=[q.inputs for q in batch] if any(q.inputs for q in batch) else None, memoize=memoize)
            self._python_checked = True
            for warning in submitted.warnings:
                warnings.warn(warning, RuntimeWarning, stacklevel=1)
        except PayloadTooLarge as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            if exc.what == Oversized.TASK_ARGUMENTS and exc.limit:
                for queued in batch:
                    if len(queued.payload) > exc.limit:
                        queued.future.set_exception(PayloadTooLarge(len(queued.payload), exc.limit, exc.what))
                rest = [q for q in batch if len(q.payload) <= exc.limit]
                if len(rest) < len(batch):
                    self._upload(rest)
                    return
            half = len(batch) // 2
            self._upload(batch[:half])
            self._upload(batch[half:])
            return
        except (NotFound, Forbidden) as exc:
            by_function: dict[str, list[_Queued]] = {}
            for queued in batch:
                by_function.setdefault(queued.function_id, []).append(queued)
            if len(by_function) > 1:  # a function not yours, or not allowed there: only its tasks fail
                for part in by_function.values():
                    self._upload(part)
                return
            logger.warning("uploading %d tasks failed: %s", len(batch), exc)
            for queued in batch:
                queued.future.set_exception(exc)
            return
        except FabricError as exc:  # BatchGone (a replay after a purge) and every other refusal
            logger.warning("uploading %d tasks failed: %s", len(batch), exc)
            for queued in batch:
                queued.future.set_exception(exc)
            return
        if len(submitted.task_ids) != len(batch):  # never leave a future without a task
            gone = BatchGone(f"the service named {len(submitted.task_ids)} tasks for a batch of {len(batch)}")
            logger.warning("uploading %d tasks failed: %s", len(batch), gone)
            for queued in batch:
                queued.future.set_exception(gone)
            return
        self._attach(submitted.task_ids, [q.future for q in batch])
        self.progress.add_submitted(len(batch))

    def _attach(self, task_ids: list[str], futures: list[ServiceTaskFuture]) -> None:
        routed = self.client if self.endpoint_group is not None else None
        with self._lock:
            for task_id, future in zip(task_ids, futures):
                future.task_id = task_id
                future._endpoint_id, future._client = self.endpoint_id, routed
                early = self._early.pop(task_id, None)
                if early is None:
                    self._futures[task_id] = future
                else:
                    _resolve(future, *early)
            self._lock.notify_all()
        self.client.results_watcher().watch(self)

    # -- results -----------------------------------------------------------------------
    def _watch_state(self) -> tuple[str, int, int] | None:
        """For the client's ``ResultWatcher``: (group, cursor, generation) while results are awaited."""
        with self._lock:
            if self._stopped or not self._futures:
                return None
            return self.task_group_id, self._cursor, self._generation

    def _deliver(self, outcomes: list[tuple[str, bool, Any]], cursor: int, generation: int) -> None:
        resolved = []
        with self._lock:
            if generation == self._generation:
                self._cursor = max(self._cursor, cursor)  # an older poll may answer after a newer one
            for task_id, ok, value in outcomes:
                future = self._futures.pop(task_id, None)
                if future is not None:
                    resolved.append((future, ok, value))
                elif self._uploading:
                    self._early[task_id] = (ok, value)
            self._lock.notify_all()
        for future, ok, value in resolved:  # outside the lock: callbacks run here
            _resolve(future, ok, value)
        self.progress.add_done(len(resolved))

    def _check_endpoint(self) -> None:
        """Called by the result watcher after each poll: warn if the endpoint is offline too long."""
        if self._offline is not None:
            self._offline.check(len(self._futures) + len(self._queue))

    def _fail_all(self, exc: Exception) -> None:
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(exc)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, window: int = MAP_WINDOW) -> Iterator[Any]:
        """``fn`` over the iterables' items, results in order, like ``concurrent.futures``.

        Streams: at most ``window`` tasks are unfinished at once (the first ``window`` are
        submitted now, one more each time a result is taken), so a million items never
        become a million futures. ``timeout`` bounds the whole iteration from this call;
        ``chunksize`` is accepted for compatibility (tasks are batched anyway).
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        deadline = None if timeout is None else time.monotonic() + timeout
        items = zip(*iterables)
        pending: deque[ServiceTaskFuture] = deque()
        for arguments in items:  # the first window now, as the stock map submits everything now
            pending.append(self.submit(fn, *arguments))
            if len(pending) >= window:
                break
        return self._map_results(fn, items, pending, window, deadline)

    def _map_results(self, fn: Callable[..., Any], items: Iterator[tuple[Any, ...]],
                     pending: deque[ServiceTaskFuture], window: int, deadline: float | None) -> Iterator[Any]:
        try:
            while pending:
                future = pending.popleft()
                for arguments in items:  # keep the window full
                    pending.append(self.submit(fn, *arguments))
                    if len(pending) >= window:
                        break
                yield future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            for future in pending:  # the caller stopped early, or a task failed
                future.cancel()

    def reload_tasks(self, task_group_id: str | None = None) -> list[ServiceTaskFuture]:
        """Re-attach to a task group (default: this executor's) and return a future per task,
        in submission order; finished tasks resolve at once, the rest as results arrive.
        Later submits go to that group."""
        group = task_group_id or self.task_group_id
        task_ids = self.client.get_task_group_tasks(group)
        futures = []
        with self._lock:
            self.task_group_id = group
            self._cursor, self._generation = 0, self._generation + 1
            for task_id in task_ids:
                future = self._futures.get(task_id)
                if future is None:
                    future = self._futures[task_id] = ServiceTaskFuture(task_id)
                    future.set_running_or_notify_cancel()
                futures.append(future)
            self._lock.notify_all()
        self.client.results_watcher().watch(self)
        return futures

    def get_worker_hardware_details(self) -> dict[str, list[dict[str, Any]]]:
        """Per endpoint (the executor's, or each member of its group that you reach), the
        managers' hardware as last reported: ``workers``, ``cores``, ``memory``,
        ``accelerators`` (ids) and ``accelerator_kind``, ``python_version`` (the Globus
        Compute name; here from the endpoints' status reports, no task is run)."""
        if self.endpoint_group is not None:
            endpoint_ids = list(self.client.get_endpoint_group(self.endpoint_group)["endpoint_ids"])
        elif self.endpoint_id is not None:
            endpoint_ids = [self.endpoint_id]
        else:
            raise ValueError("the executor has no endpoint_id (nor endpoint_group)")
        details: dict[str, list[dict[str, Any]]] = {}
        for endpoint_id in endpoint_ids:
            try:
                report = self.client.get_endpoint_status(endpoint_id).get("report") or {}
            except NotFound:
                continue
            details[endpoint_id] = list(report.get("managers", []))
        return details

    # -- lifecycle ---------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking tasks. Queued tasks are still uploaded (unless ``cancel_futures``).
        ``wait``: also wait for every result; otherwise stop watching for results at once
        (the tasks still run; ``reload_tasks`` gets their results later)."""
        with self._lock:
            self._closing = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft().future.cancel()
            self._lock.notify_all()
        if threading.current_thread() is not self._submitter:
            self._submitter.join()
        if wait:
            with self._lock:
                pending = list(self._futures.values())
            concurrent.futures.wait(pending)
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self.client.results_watcher().unwatch(self)
        self.progress.close()
        _live_executors.discard(self)


def wait_for_task_id(future: ServiceTaskFuture, timeout: float = 300.0) -> str:
    """The future's task id, once its upload named it (a task submitted just before)."""
    deadline = time.monotonic() + timeout
    while future.task_id is None:
        if future.done():  # failed (or cancelled) before the service named a task
            raise ValueError(f"{future!r} has no task to depend on: its submission failed")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{future!r} was not uploaded within {timeout} s")
        time.sleep(0.005)
    return future.task_id


def service_spec(resource_specification: dict[str, Any] | None,
                 container: str | None) -> tuple[tuple[str, Any], ...] | None:
    """A task's ``resource_spec`` as the service takes it, checked (``ResourceSpecError``)."""
    spec = dict(resource_specification or {})
    check_resource_specification({k: v for k, v in spec.items() if k in RESOURCE_KEYS})
    if container is not None:
        if not isinstance(container, str) or not container:
            raise ResourceSpecError("container must be a container name (a non-empty string)")
        spec["container"] = container
    return tuple(sorted(spec.items())) if spec else None


def _resolve(future: ServiceTaskFuture, ok: bool, value: Any) -> None:
    try:
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    except concurrent.futures.InvalidStateError:  # e.g. resolved by reload and watcher
        pass


@atexit.register
def _upload_queued_at_exit() -> None:
    """Tasks submitted but not yet uploaded when the interpreter exits are uploaded first."""
    for executor in list(_live_executors):
        executor.shutdown(wait=False)

