"""How the HTTP side and the forwarder tell each other about new work in one process.

``ResultSignal``: long-polling requests wait on it; the forwarder rings it after it has
committed results (and the app after it cancelled tasks). ``Dispatcher``: what the app asks
of the forwarder (is an endpoint connected, here are new tasks for it, drop these tasks,
its keys changed). Both only shorten waits: the store stays the source of truth, so a
missed signal costs latency, never a task (and a connection with rotated keys is found by
the forwarder's own check of keys too).

Dispatch at submit: while an endpoint is connected and nothing of it waits in the store, a
submit reserves room for its batch, stores the tasks ``dispatched`` and hands them over
(``hand_over``), so they go out without another transaction. Tasks handed over are sent by
the forwarder's thread; if the service stops first, or the session closes, they are
``dispatched`` in the store and the endpoint's next session re-sends them, like any
dispatched task. Refused (offline, a backlog, ``max_outstanding`` reached), the tasks are
stored to wait and ``tasks_added`` wakes the forwarder as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from collections.abc import Sequence

from fabric.protocol import Task
from service.routing import Placement, RoutingSpec


class ResultSignal:
    """A generation counter that waiters watch for a change."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._closed = False

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def closed(self) -> bool:
        return self._closed

    def ring(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def nudge(self) -> None:
        """Wake every waiter to re-check its own ``stop`` condition (the generation stays)."""
        with self._condition:
            self._condition.notify_all()

    def wait(self, generation: int, timeout: float, stop: Callable[[], bool] | None = None) -> None:
        """Return once the generation differs from ``generation``, on close, when ``stop()``
        is true after a ``nudge``, or after ``timeout``."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != generation or self._closed
                                     or (stop is not None and stop()), timeout)

    def close(self) -> None:
        """Wake every waiter for good (the service is stopping)."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class Dispatcher(Protocol):
    def is_online(self, endpoint_id: str) -> bool:
        """True while the endpoint's interchange is connected to this service."""

    def tasks_added(self, endpoint_id: str) -> None:
        """New tasks for the endpoint are in the store (send them if it is connected)."""

    def reserve(self, endpoint_id: str, count: int) -> bool:
        """May ``count`` tasks be stored ``dispatched`` and handed over (True), or must they
        wait in the store (False)? Every True must be answered by one ``hand_over``."""

    def hand_over(self, endpoint_id: str, reserved: int, tasks: list[Task]) -> None:
        """Send ``tasks``, now ``dispatched`` in the store, and end a reservation of ``reserved``
        (``tasks`` empty when nothing was stored, or the batch was a repeat)."""

    def cancel_tasks(self, endpoint_id: str, task_ids: list[str]) -> None:
        """Ask the endpoint to drop these dispatched tasks if they have not started
        (``CancelTasks``; it answers with ``TaskCancelled`` results for those it dropped)."""

    def keys_rotated(self, endpoint_id: str) -> None:
        """The endpoint registered again with a new key pair: close a connection made with the old one."""

    def route_added(self, route_id: str, count: int) -> None:
        """``count`` tasks of an endpoint group wait under this route: place them (``service.router``)."""

    def reserve_routed(self, route_id: str, spec: RoutingSpec, members: Sequence[str],
                       count: int) -> list[Placement]:
        """Where the first tasks of a new batch of the route go at once (room reserved); every
        placement must be answered by a ``hand_over`` of its endpoint and count."""


class NoDispatcher:
    """For an app without a forwarder in its process: tasks wait in the store."""

    def is_online(self, endpoint_id: str) -> bool:
        return False

    def tasks_added(self, endpoint_id: str) -> None:
        pass

    def reserve(self, endpoint_id: str, count: int) -> bool:
        return False

    def hand_over(self, endpoint_id: str, reserved: int, tasks: list[Task]) -> None:
        pass

    def cancel_tasks(self, endpoint_id: str, task_ids: list[str]) -> None:
        pass

    def keys_rotated(self, endpoint_id: str) -> None:
        pass

    def route_added(self, route_id: str, count: int) -> None:
        pass

    def reserve_routed(self, route_id: str, spec: RoutingSpec, members: Sequence[str],
                       count: int) -> list[Placement]:
        return []
