"""``ResultWatcher``: one long-poll per ``Client`` for the results of all its ``Executor``\\ s.

A model-serving process may run many executors; a long-poll each would hold as many of
the service's threads (the service caps them: ``service.polls``). Instead every executor
of a client registers with the client's watcher, and one thread long-polls
``POST /v1/results`` with the task groups of all executors that wait for results, then
hands each executor its group's page (``Executor._deliver``), deserialized once.

When an executor starts waiting on a group the poll in flight does not cover, a new poll
with every group starts at once in another thread; it carries the watcher's id, so the
service ends the old poll (which still delivers what it got) and the client keeps one poll
in flight. A loop thread with nothing to watch for ``IDLE_EXIT`` seconds ends; the next
executor that waits starts another.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from fabric.errors import AuthError, NotFound, ServiceError
from sdk import results

if TYPE_CHECKING:
    from sdk.client import Client

logger = logging.getLogger(__name__)

RESULT_WAIT = 10.0
"""Seconds one long poll for results may wait on the service."""
IDLE_EXIT = 30.0
"""Seconds a watcher thread with nothing to watch waits before it ends."""


class Watched(Protocol):
    """What the watcher needs of an executor."""

    def _watch_state(self) -> tuple[str, int, int] | None:
        """(task group, cursor, generation) while it waits for results, else None."""

    def _deliver(self, outcomes: list[tuple[str, bool, Any]], cursor: int, generation: int) -> None: ...

    def _results_data_only(self) -> bool:
        """Whether its results must be decoded data-only (an endpoint it does not own)."""

    def _fail_all(self, exc: Exception) -> None: ...

    def _check_endpoint(self) -> None:
        """After a poll: warn if its endpoint has been offline too long (``sdk.offline``)."""


class ResultWatcher:
    """The result-watching thread(s) of one client (see the module docstring)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.watcher_id = uuid.uuid4().hex
        self._lock = threading.Condition()
        self._watched: list[Watched] = []
        self._current = 0  # number of the loop that polls next; older loops finish their poll and end
        self._polled: frozenset[str] | None = None  # groups of the current loop's poll in flight; None: idle
        self._alive = False  # the current loop's thread runs

    def watch(self, executor: Watched) -> None:
        """``executor`` waits for results (again, or of another group, or from another cursor)."""
        group = executor._watch_state()
        with self._lock:
            if executor not in self._watched:
                self._watched.append(executor)
            uncovered = self._polled is not None and group is not None and group[0] not in self._polled
            if group is not None and (not self._alive or uncovered):
                self._start_loop()
            self._lock.notify_all()

    def unwatch(self, executor: Watched) -> None:
        with self._lock:
            if executor in self._watched:
                self._watched.remove(executor)
            self._lock.notify_all()

    def _start_loop(self) -> None:
        self._current += 1
        self._alive, self._polled = True, None
        threading.Thread(target=self._loop, args=(self._current,), name="fabric-client-results", daemon=True).start()

    def _wanted(self) -> dict[str, list[tuple[Watched, int, int]]]:
        """Per group: the executors waiting on it, with their cursor and generation (lock held)."""
        wanted: dict[str, list[tuple[Watched, int, int]]] = {}
        for executor in self._watched:
            state = executor._watch_state()
            if state is not None:
                wanted.setdefault(state[0], []).append((executor, state[1], state[2]))
        return wanted

    def _loop(self, number: int) -> None:
        reason = "idle"
        pause = 0.0
        try:
            while True:
                with self._lock:
                    wanted = self._next(number)
                    if wanted is None:
                        return
                if pause:
                    time.sleep(pause)
                pause = self._poll_once(wanted, pause)
                for polled in wanted.values():
                    for executor, _, _ in polled:
                        executor._check_endpoint()
                with self._lock:
                    if number != self._current:
                        reason = "replaced"
                        return
        except BaseException as exc:
            reason = f"failed: {exc!r}"
            logger.exception("the client's result watcher failed")
            with self._lock:
                executors = list(self._watched)
            for executor in executors:
                executor._fail_all(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            raise
        finally:
            logger.debug("client result watcher ended: %s", reason)

    def _next(self, number: int) -> dict[str, list[tuple[Watched, int, int]]] | None:
        """What the loop ``number`` polls next, None when it ends (lock held)."""
        self._polled = None
        deadline = time.monotonic() + IDLE_EXIT
        while number == self._current:
            wanted = self._wanted()
            if wanted:
                self._polled = frozenset(wanted)
                return wanted
            if time.monotonic() >= deadline:
                self._alive = False
                return None
            self._lock.wait(max(0.0, deadline - time.monotonic()))
        return None

    def _poll_once(self, wanted: dict[str, list[tuple[Watched, int, int]]], pause: float) -> float:
        """One long-poll and its delivery; returns the pause before the next one."""
        cursors = {group: min(cursor for _, cursor, _ in executors) for group, executors in wanted.items()}
        try:
            answer = self._client.poll_results(cursors, wait=RESULT_WAIT, watcher=self.watcher_id)
        except AuthError as exc:
            for executors in wanted.values():
                for executor, _, _ in executors:
                    executor._fail_all(exc)
            return 0.0
        except (NotFound, ServiceError) as exc:
            logger.warning("cannot fetch results (retrying): %s", exc)
            return min(5.0, max(0.1, pause * 2))
        delivered = False
        for group, page in answer.pages.items():
            executors = wanted.get(group, [])
            outcomes = results.outcomes(page, any(executor._results_data_only() for executor, _, _ in executors))
            delivered = delivered or bool(outcomes)
            for executor, _, generation in executors:
                executor._deliver(outcomes, page.cursor, generation)
        if delivered:
            return 0.0
        if answer.missing:  # a group whose first batch is not in yet
            return max(answer.poll_after, 0.05)
        return answer.poll_after
