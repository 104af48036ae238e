"""The forwarder: the service's one ZeroMQ ROUTER, which endpoints' interchanges connect to.

Security. The ROUTER is a CurveZMQ server (keys from ``service.keys``). A ZAP handler
(``service.endpoint_auth.EndpointAuthenticator``) admits only public keys of registered endpoints and names each
connection after the endpoint that holds its key (ZAP ``User-Id``). A message is taken to
come from that endpoint, whatever routing id its connection has (the ROUTER assigns them;
interchanges do not pick one, so a reconnect never collides with a connection the ROUTER
still holds); tasks go to the connection that registered last. So one endpoint can never
speak, or be sent tasks, as another. Registering the endpoint again (REST) rotates its key
pair: the old key is refused at connect, and every message of a connection made with it is
dropped and answered ``Shutdown`` (its session closes at once when the app rotated the keys
in this process, within a ``tick`` when another process did).

Sessions. The first message of an authenticated endpoint opens a session (an
``InterchangeRegistration`` always opens a new one: a new interchange process). Opening
a session re-sends every dispatched-but-unfinished task of the endpoint (the previous
connection may have lost them) and then whatever waits. A session closes when the
endpoint is silent for ``heartbeat_threshold`` or unreachable; its tasks stay
``dispatched`` in the store until the next session re-sends them.

Dispatch. While a session has nothing waiting in the store, a submit stores its batch
``dispatched`` and hands the tasks over in memory (``reserve``, ``hand_over``; see
``service.events``), within ``max_outstanding``. Otherwise tasks wait in the store and
the loop takes them, oldest first, as room frees (``take_waiting``) until none are left;
then submits dispatch again.

Routing. A batch submitted to an endpoint group is placed at submit as far as its members
have room (``reserve_routed``: the ``service.router.Router`` decides by the route's policy,
from the members' live reports and the service's measurements; the tasks are stored
``dispatched`` on their endpoints and handed over, like dispatch at submit); the rest wait
in the store under their route, and each turn ``dispatch_routed`` places them as room frees,
in the store's transaction that sends them (``take_routed``).

The loop is a list of named steps: poll, ``receive_from_endpoints``, ``send_handed_over``,
``dispatch_woken``, ``dispatch_routed``, ``send_cancellations`` (``CancelTasks`` the app asked for when a task
group was cancelled; held in memory while the endpoint is offline, sent once it connects,
after the re-sent tasks, and after tasks handed over meanwhile), ``tick`` (heartbeats,
status requests, expiry, a sweep for waiting tasks, on a timer).
Results are committed to the store before they are acknowledged (``ResultsAck``, which
lets the interchange forget them); a result for a task that is already finished is
ignored (task-id dedup) but acknowledged too, so a re-send never yields two results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from fabric import protocol
from fabric.errors import ProtocolError
from fabric.untrusted import printable
from fabric.protocol import (MAX_BATCH_TASKS, PROTOCOL_VERSION, CancelTasks, CommandReply, FunctionDefinitions,
                             Heartbeat, InterchangeRegistration, ResultBatch, ResultsAck, Shutdown, StatusReport,
                             StatusRequest, Task, TaskBatch, batches_of)
from service.config import ServiceConfig
from service.endpoint_auth import ZAP_DOMAIN, CurrentKeys, EndpointAuthenticator
from service.errors import ServiceError, StoreError
from service.events import ResultSignal
from service.keys import KeyPair
from service.results import MAX_COUNT as _MAX_COUNT
from service.results import error_text, is_count as _is_count
from service.router import Router
from service.routing import Placement, RoutingSpec
from service.store import Store

logger = logging.getLogger(__name__)

MAX_MESSAGES_PER_TURN = 256
MAX_TASKS_PER_TURN = 4 * MAX_BATCH_TASKS
@dataclasses.dataclass(slots=True)
class Session:
    """One connected interchange, as the forwarder sees it."""

    endpoint_id: str
    identity: bytes
    public_key: str  # the CurveZMQ key the connection was made with
    last_heard: float
    heard_at: float  # wall-clock time of last_heard, for the store
    last_sent: float = 0.0
    last_status: float = 0.0
    outstanding: int = 0
    functions: set[str] = dataclasses.field(default_factory=set)
    backlog: bool = True  # tasks may wait in the store: none go out at submit until it is drained
    sweep: bool = False  # look in the store once (tasks another service process added)
    added: int = 0  # bumped when tasks were stored to wait for the endpoint (guards clearing backlog)


class Forwarder:
    """Binds the ROUTER and moves tasks out and results in, on its own thread."""

    def __init__(self, store: Store, config: ServiceConfig, signal: ResultSignal, keys: KeyPair,
                 on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.store = store
        self.on_failure = on_failure
        self.config = config
        self.signal = signal
        self.context: zmq.Context[Any] = zmq.Context()
        self.authenticator = EndpointAuthenticator(self.context, store)
        self.authenticator.start()
        self.authenticator.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self.authenticator)
        try:
            self.socket = self._bind(keys)
        except zmq.ZMQError as exc:
            self.authenticator.stop()
            self.context.term()
            raise ServiceError(f"cannot listen for endpoints on {config.forwarder_host}:{config.forwarder_port}: "
                               f"{exc}") from exc
        self.address = config.forwarder_public_address or self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sessions: dict[str, Session] = {}
        self.rogue_messages = 0
        self.malformed_messages = 0
        self._request_ids = itertools.count()
        self._woken: set[str] = set()
        self._reserved: dict[str, int] = {}  # endpoint id -> tasks reserved for dispatch at submit, not yet sent
        self._handed_over: dict[str, list[tuple[int, list[Task]]]] = {}  # endpoint id -> (reserved, tasks)
        self._cancels: dict[str, list[str]] = {}  # endpoint id -> task ids to cancel there
        self._routes_added: dict[str, int] = {}  # route id -> tasks the app stored under it
        self.keys = CurrentKeys(store)
        self._rotated: set[str] = set()  # endpoints whose keys the app rotated
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="fabric-forwarder", daemon=True)
        self.tick_interval = min(1.0, config.heartbeat_period / 2)
        self.next_tick = 0.0
        store.disconnect_all()
        self.router = Router(store, self._in_flight, failover_grace=config.failover_grace_seconds,
                             drain_seconds=config.drain_seconds, now=time.monotonic())

    def _bind(self, keys: KeyPair) -> zmq.Socket[Any]:
        socket: zmq.Socket[Any] = self.context.socket(zmq.ROUTER)
        try:
            self._configure(socket, keys)
        except zmq.ZMQError:
            socket.close()
            raise
        return socket

    def _configure(self, socket: zmq.Socket[Any], keys: KeyPair) -> None:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode("ascii"))
        socket.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode("ascii"))
        socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.SNDHWM, 0)  # tasks marked dispatched must never be dropped for a full queue
        socket.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        socket.setsockopt(zmq.HEARTBEAT_IVL, int(self.config.heartbeat_period * 1000))
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.config.heartbeat_threshold * 1000))
        port = self.config.forwarder_port or "*"
        socket.bind(f"tcp://{self.config.forwarder_host}:{port}")

    # -- what the app calls (any thread) ---------------------------------------------
    def is_online(self, endpoint_id: str) -> bool:
        return endpoint_id in self.sessions

    def route_added(self, route_id: str, count: int) -> None:
        with self._lock:
            self._routes_added[route_id] = self._routes_added.get(route_id, 0) + count
        self._wake()

    def reserve_routed(self, route_id: str, spec: RoutingSpec, members: Sequence[str],
                       count: int) -> list[Placement]:
        """Where the first of ``count`` new tasks of a route go now (dispatch at submit), room
        reserved for them like ``reserve``; each placement must be answered by a ``hand_over``."""
        with self._lock:
            if route_id in self._routes_added:
                return []
            placed = self.router.plan_now(route_id, spec, members, count, time.monotonic())
            for placement in placed:
                self._reserved[placement.endpoint_id] = self._reserved.get(placement.endpoint_id, 0) + placement.count
        return placed

    def _in_flight(self, endpoint_id: str) -> int | None:
        session = self.sessions.get(endpoint_id)
        return None if session is None else session.outstanding + self._reserved.get(endpoint_id, 0)

    def tasks_added(self, endpoint_id: str) -> None:
        if endpoint_id in self.sessions:
            with self._lock:
                self._stored_waiting(endpoint_id)
                self._woken.add(endpoint_id)
            self._wake()

    def reserve(self, endpoint_id: str, count: int) -> bool:
        """Room to send ``count`` tasks the moment they are stored (dispatch at submit)?

        Only while the endpoint is connected, nothing of it waits in the store (so these never
        overtake older tasks) and ``max_outstanding`` leaves room for them beside what is sent
        and reserved; otherwise (False) they are stored to wait, and the loop sends them."""
        with self._lock:
            session = self.sessions.get(endpoint_id)
            if session is None or session.backlog:
                return False
            reserved = self._reserved.get(endpoint_id, 0)
            if session.outstanding + reserved + count > self.config.max_outstanding:
                self._stored_waiting(endpoint_id)  # they will wait: later ones must queue behind them
                return False
            self._reserved[endpoint_id] = reserved + count
            return True

    def hand_over(self, endpoint_id: str, reserved: int, tasks: list[Task]) -> None:
        """Send ``tasks`` (stored ``dispatched``) and end a reservation of ``reserved`` tasks
        (``tasks`` empty: nothing to send, the request failed or repeated an earlier batch)."""
        with self._lock:
            self._handed_over.setdefault(endpoint_id, []).append((reserved, tasks))
        self._wake()

    def _stored_waiting(self, endpoint_id: str) -> None:
        """Tasks of the endpoint are (about to be) stored to wait (caller holds ``_lock``)."""
        session = self.sessions.get(endpoint_id)
        if session is not None:
            session.backlog = True
            session.added += 1

    def cancel_tasks(self, endpoint_id: str, task_ids: list[str]) -> None:
        if task_ids:
            with self._lock:
                self._cancels.setdefault(endpoint_id, []).extend(task_ids)
            self._wake()

    def keys_rotated(self, endpoint_id: str) -> None:
        with self._lock:
            self._rotated.add(endpoint_id)
        self._wake()

    def _wake(self) -> None:
        with self._lock:  # never write to the descriptor once it is closed (and maybe reused)
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        logger.info("forwarder listening on %s", self.address)

    def stop(self) -> None:
        """Stop the loop, mark connected endpoints offline, close every socket."""
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join()
        for session in list(self.sessions.values()):
            with contextlib.suppress(StoreError):
                self.close_session(session, "service stopping")
        self.socket.close()
        self.authenticator.stop()
        self.context.term()
        with self._lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _serve(self) -> None:
        reason = "stopped"
        try:
            self.run()
        except BaseException as exc:
            reason = f"failed: {exc!r}"
            logger.exception("forwarder failed")
            if self.on_failure is not None:
                self.on_failure(exc)
        finally:
            logger.info("forwarder thread ended: %s", reason)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while not self._stopping:
            timeout = 0.0 if self._woken else max(0.0, self.next_tick - time.monotonic())
            events = dict(poller.poll(math.ceil(timeout * 1000)))
            if self._wake_r in events:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 65536)
            if self.socket in events:
                self.receive_from_endpoints()
            try:
                self.end_rotated_sessions()
                self.send_handed_over()
                self.dispatch_woken()
                self.dispatch_routed()
                self.send_cancellations()
                now = time.monotonic()
                if now >= self.next_tick:
                    self.tick(now)
            except StoreError as exc:  # e.g. the file briefly unwritable: the next turn tries again
                logger.error("store failed in the forwarder loop: %s", exc)

    def receive_from_endpoints(self) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self.on_frames(frames)
            except StoreError as exc:  # nothing acknowledged: the endpoint will send it again
                logger.error("store failed while handling a message: %s", exc)
            except Exception:  # noqa: BLE001 - one bad message must not stop the forwarder
                logger.exception("unexpected failure handling a message; dropped")

    def on_frames(self, frames: list[zmq.Frame]) -> None:
        """One message: the sender is the endpoint its CurveZMQ key belongs to (ZAP ``User-Id``),
        whatever routing id its connection has; replies go to the connection that registered last."""
        identity = frames[0].bytes
        user_id = frames[1].get("User-Id") if len(frames) > 1 else None
        endpoint_id, _, key = user_id.partition(" ") if isinstance(user_id, str) else ("", "", "")
        if not endpoint_id or not key:  # cannot happen behind ZAP; never trust it
            self.rogue_messages += 1
            logger.warning("dropping a message from an unauthenticated connection")
            return
        if not self.keys.is_current(endpoint_id, key):
            self.refuse_stale_key(endpoint_id, identity)
            return
        session = self.sessions.get(endpoint_id)
        try:
            message = protocol.decode(frames[1:])
        except ProtocolError as exc:
            self.malformed_messages += 1
            logger.warning("dropping malformed message from endpoint %s: %s", endpoint_id, printable(exc, 300))
            return
        if isinstance(message, InterchangeRegistration):
            self.on_registration(endpoint_id, identity, message, key)
            return
        if session is None or session.identity != identity:
            # A connection that has not registered: an older one of this endpoint still draining
            # (its process may be gone), or one that registers next. Only a registration opens a
            # session (an interchange registers first on every connection); results still count.
            if isinstance(message, ResultBatch):
                self.on_results(endpoint_id, session, message, reply_to=identity)
            return
        session.last_heard, session.heard_at = time.monotonic(), time.time()
        self.on_message(session, message)

    def on_registration(self, endpoint_id: str, identity: bytes, registration: InterchangeRegistration,
                        public_key: str) -> None:
        if registration.endpoint_id != endpoint_id:
            self.rogue_messages += 1
            logger.warning("endpoint %s registered as %r: refused", endpoint_id, registration.endpoint_id[:64])
            self.send(identity, Shutdown(reason="endpoint_id does not match the key it connected with"))
            return
        if registration.protocol_version != PROTOCOL_VERSION:
            logger.warning("endpoint %s speaks protocol %s, not %s: refused", endpoint_id,
                           registration.protocol_version, PROTOCOL_VERSION)
            self.send(identity, Shutdown(reason=f"protocol version {PROTOCOL_VERSION} required"))
            return
        self.open_session(endpoint_id, identity, registration, public_key)

    def on_message(self, session: Session, message: protocol.Message) -> None:
        match message:
            case ResultBatch():
                self.on_results(session.endpoint_id, session, message)
            case StatusReport(_, managers, queued_tasks, outstanding_tasks):
                workers = [m.get("workers", 0) if isinstance(m, dict) else None for m in managers]
                numbers = [*workers, queued_tasks, outstanding_tasks]
                if not all(_is_count(n) for n in numbers):
                    self.malformed_messages += 1
                    logger.warning("dropping a status report with malformed numbers from endpoint %s",
                                   session.endpoint_id)
                    return
                self.store.record_status(session.endpoint_id, len(managers), min(sum(workers), _MAX_COUNT),
                                         queued_tasks, outstanding_tasks)
                self.router.on_report(session.endpoint_id, message, time.monotonic())
            case Heartbeat():
                pass
            case CommandReply(request_id, ok, text):
                logger.debug("endpoint %s command %s: %s %s", session.endpoint_id, request_id, ok, printable(text))
            case _:
                logger.warning("ignoring %s from endpoint %s", type(message).__name__, session.endpoint_id)

    def on_results(self, endpoint_id: str, session: Session | None, batch: ResultBatch,
                   reply_to: bytes | None = None) -> None:
        """Commit, then acknowledge to the connection that sent them."""
        now = time.time()
        if batch.started:
            self.store.mark_running(endpoint_id, batch.started, now)
        if not len(batch):
            return
        results = [(task_id, kind, bytes(payload), error_text(kind, payload))
                   for task_id, kind, payload in batch.results()]
        outcome = self.store.commit_results(endpoint_id, results, now)  # committed before the ack
        self.router.on_results(endpoint_id, results, outcome, time.monotonic())
        if outcome.committed:
            self.signal.ring()  # first: a client waits for these
        if outcome.ignored:
            logger.info("endpoint %s: ignored %d results of finished or unknown tasks", endpoint_id, outcome.ignored)
        ack = ResultsAck(task_ids=list(batch.task_ids))
        if reply_to is None and session is not None:
            self.send_to(session, ack)
        elif reply_to is not None:
            self.send(reply_to, ack)
        if outcome.committed and session is not None:
            session.outstanding = max(0, session.outstanding - len(outcome.committed))
            with self._lock:
                self._woken.add(endpoint_id)
        for released in outcome.released:  # dependents of these results now wait for their endpoints
            self.tasks_added(released)

    # -- sessions and dispatch ---------------------------------------------------------
    def open_session(self, endpoint_id: str, identity: bytes, registration: InterchangeRegistration | None,
                     public_key: str) -> Session:
        wall, now = time.time(), time.monotonic()
        session = Session(endpoint_id=endpoint_id, identity=identity, public_key=public_key, last_heard=now,
                          heard_at=wall)
        self.sessions[endpoint_id] = session
        self.router.online(endpoint_id)
        # What the endpoint reports is bounded by the protocol and escaped here, for the log and the store.
        hostname, pid = (printable(registration.hostname, 255), registration.pid) if registration else (None, None)
        self.store.set_connection(endpoint_id, True, wall, hostname, pid)
        unfinished = self.store.take_unfinished(endpoint_id, wall)
        logger.info("endpoint %s connected (%s); re-sending %d unfinished tasks", endpoint_id,
                    f"interchange {hostname}:{pid}" if registration else "already running", len(unfinished))
        if unfinished:
            self.send_tasks(session, unfinished)
        with self._lock:
            self._woken.add(endpoint_id)
        return session

    # -- keys --------------------------------------------------------------------------
    def refuse_stale_key(self, endpoint_id: str, identity: bytes) -> None:
        """A connection made with a key the endpoint no longer holds: told to stop, never heard."""
        self.rogue_messages += 1
        session = self.sessions.get(endpoint_id)
        if session is not None and session.identity == identity:
            self.close_session(session, "its keys were rotated")
        logger.warning("endpoint %s: refused a connection made with a rotated key", endpoint_id)
        self.send(identity, Shutdown(reason="this endpoint registered again with new keys; this key is revoked"))

    def end_rotated_sessions(self) -> None:
        """Close sessions whose connection was made with keys the app just rotated."""
        if not self._rotated:
            return
        with self._lock:
            rotated, self._rotated = self._rotated, set()
        for endpoint_id in rotated:
            self.keys.forget(endpoint_id)
            session = self.sessions.get(endpoint_id)
            if session is not None and not self.keys.is_current(endpoint_id, session.public_key):
                self.refuse_stale_key(endpoint_id, session.identity)

    def close_session(self, session: Session, reason: str) -> None:
        if self.sessions.get(session.endpoint_id) is session:
            del self.sessions[session.endpoint_id]
            self.router.offline(session.endpoint_id, time.monotonic())
        logger.info("endpoint %s offline: %s", session.endpoint_id, reason)
        self.store.set_connection(session.endpoint_id, False, session.heard_at)

    def dispatch_woken(self) -> None:
        with self._lock:
            woken, self._woken = self._woken, set()
        for endpoint_id in woken:
            session = self.sessions.get(endpoint_id)
            if session is None:
                continue
            try:
                if self.dispatch(session) >= MAX_TASKS_PER_TURN:  # more may wait: come back next turn
                    with self._lock:
                        self._woken.add(endpoint_id)
            except StoreError as exc:
                logger.error("cannot dispatch to endpoint %s: %s", endpoint_id, exc)

    def send_handed_over(self) -> None:
        """Tasks stored ``dispatched`` at submit go to the endpoint's current session. With
        none (it closed meanwhile) they stay ``dispatched`` and the next session re-sends them."""
        if not self._handed_over:
            return
        with self._lock:
            handed_over, self._handed_over = self._handed_over, {}
        for endpoint_id, parts in handed_over.items():
            session = self.sessions.get(endpoint_id)
            tasks = [task for _, part in parts for task in part]
            if session is not None and tasks:
                self.send_tasks(session, tasks)
            with self._lock:
                left = self._reserved.get(endpoint_id, 0) - sum(reserved for reserved, _ in parts)
                if left > 0:
                    self._reserved[endpoint_id] = left
                else:
                    self._reserved.pop(endpoint_id, None)

    def dispatch(self, session: Session) -> int:
        """Send the endpoint's waiting tasks, up to its room; returns how many were sent.

        Only while some may wait in the store (``backlog``, or a ``sweep`` of the tick): once
        a take finds fewer than asked and nothing was stored meanwhile, the backlog is
        drained and new tasks go out at submit (``reserve``)."""
        sent = 0
        while sent < MAX_TASKS_PER_TURN and session.endpoint_id in self.sessions:
            with self._lock:
                room = min(self.config.max_outstanding - session.outstanding
                           - self._reserved.get(session.endpoint_id, 0), MAX_BATCH_TASKS)
                if room <= 0 or not (session.backlog or session.sweep):
                    break
                session.sweep = False
                added = session.added
            tasks = self.store.take_waiting(session.endpoint_id, room, time.time())
            if tasks:
                self.send_tasks(session, tasks)
                sent += len(tasks)
            if len(tasks) < room:
                with self._lock:
                    if session.added == added:
                        session.backlog = False
                break
            with self._lock:
                session.backlog = True  # a full take (of a sweep, maybe): look again
        return sent

    def dispatch_routed(self) -> None:
        """Place waiting tasks of endpoint groups where their routes' policies say, as room allows."""
        if self._routes_added:
            with self._lock:
                added, self._routes_added = self._routes_added, {}
            for route_id, count in added.items():
                self.router.route_added(route_id, count)
        for route_id, placement in self.router.placements(MAX_TASKS_PER_TURN, time.monotonic()):
            session = self.sessions.get(placement.endpoint_id)
            if session is None:
                continue
            tasks = self.store.take_routed(route_id, placement.endpoint_id, placement.count, placement.reason,
                                           time.time())
            self.router.placed(route_id, placement.count, len(tasks))
            if tasks:
                self.send_tasks(session, tasks)

    def send_cancellations(self) -> None:
        """``CancelTasks`` to connected endpoints; those for an offline one wait until it connects."""
        if not self._cancels:
            return
        with self._lock:  # not while tasks reserved at submit may still be on their way: they go first
            ready = {e: self._cancels.pop(e) for e in list(self._cancels)
                     if e in self.sessions and e not in self._reserved}
        for endpoint_id, task_ids in ready.items():
            session = self.sessions[endpoint_id]
            for start in range(0, len(task_ids), MAX_BATCH_TASKS):
                self.send_to(session, CancelTasks(task_ids=task_ids[start:start + MAX_BATCH_TASKS]))
            logger.info("endpoint %s: asked to cancel %d dispatched tasks", endpoint_id, len(task_ids))

    def send_tasks(self, session: Session, tasks: list[Task]) -> None:
        """Function bodies the endpoint lacks first, then the tasks, in batches."""
        needed = {t.function_id for t in tasks} - session.functions
        if needed:
            bodies = self.store.function_bodies(needed)
            for function_id, body in bodies.items():  # one per message: each within the size limit
                self.send_to(session, FunctionDefinitions([function_id], [body]))
                session.functions.add(function_id)
            if len(bodies) < len(needed):
                logger.error("endpoint %s: no body for functions %s", session.endpoint_id, sorted(needed - set(bodies)))
        session.outstanding += len(tasks)
        for batch in batches_of(tasks):
            self.send_to(session, TaskBatch(batch))

    def send_to(self, session: Session, message: protocol.Message) -> None:
        if self.sessions.get(session.endpoint_id) is not session:
            return
        if not self.send(session.identity, message):
            self.close_session(session, "unreachable")
        session.last_sent = time.monotonic()

    def send(self, identity: bytes, message: protocol.Message) -> bool:
        try:
            self.socket.send_multipart([identity, *message.to_frames()], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: no connection with this routing id
            logger.debug("cannot send to %r: %s", identity[:64], exc)
            return False
        return True

    # -- timer -------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Heartbeats and status requests, expiry of silent endpoints, a sweep for waiting tasks."""
        self.next_tick = now + self.tick_interval
        period = self.config.heartbeat_period
        self.keys.forget_all()  # keys rotated by another service process are seen within a tick
        for session in list(self.sessions.values()):
            if not self.keys.is_current(session.endpoint_id, session.public_key):
                self.refuse_stale_key(session.endpoint_id, session.identity)
                continue
            silent = now - session.last_heard
            if silent > self.config.heartbeat_threshold:
                self.close_session(session, f"silent for {silent:.1f} s")
                continue
            if now - session.last_status >= period:
                session.last_status = now
                request_id = next(self._request_ids)
                self.router.status_sent(session.endpoint_id, request_id, now)
                self.send_to(session, StatusRequest(request_id=request_id))
            elif now - session.last_sent >= period:
                self.send_to(session, Heartbeat())
        try:
            self.store.record_heartbeats({s.endpoint_id: s.heard_at for s in self.sessions.values()})
        except StoreError as exc:
            logger.error("cannot record heartbeats: %s", exc)
        self.router.tick(now)
        with self._lock:  # tasks added by another service process, or a wake-up that was missed
            for session in self.sessions.values():
                session.sweep = True
            self._woken.update(self.sessions)
