"""Long-polls for results: how many may wait at once, and who gives way to whom.

The WSGI server runs each request on one of ``threads`` threads, and a long-poll that waits
holds its thread. So waiting is admitted, not granted: ``PollSlots`` lets at most
``max_polls`` polls wait at once in all (the other threads stay free for ordinary
requests) and at most ``max_polls_per_user`` per user.

- A poll that gets no slot is answered at once, like ``wait=0``, with ``poll_after`` > 0:
  the seconds the client should let pass before it polls again (``POLL_AFTER``).
- When every slot is taken, a poll of a user holding fewer slots than the user holding most
  takes that user's oldest slot: the poll in it returns at once (with ``poll_after``). So one
  user's open polls never keep another user from waiting for results.
- A poll that names a ``watcher`` (one per SDK ``Client``) supersedes the same user's poll
  of the same watcher, which returns at once (``poll_after`` 0: its successor is already
  waiting). A client that starts watching another task group re-polls with the groups it
  watches, and so holds one slot, however many ``Executor``\\ s it serves.

``long_poll`` is the waiting loop the result routes share: it asks for a slot only when
the first read found nothing, then re-reads the store when the ``ResultSignal`` rings (a
result was committed), at least every second, until there is something to answer, the
wait is over, the slot is taken back, or the service stops.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from service.events import ResultSignal

POLL_AFTER = 0.5
"""Seconds a client whose poll could not wait (or was taken back) should pause before the next."""
REREAD_PERIOD = 1.0
"""A waiting poll re-reads the store at least this often, whatever the signal says."""


@dataclasses.dataclass(eq=False, slots=True)
class PollSlot:
    """One waiting poll; ``released`` once it was taken back (it must answer now)."""

    user_id: str
    watcher: str | None
    started: float
    released: bool = False
    poll_after: float = 0.0


class PollSlots:
    """Admission of waiting long-polls (see the module docstring)."""

    def __init__(self, signal: ResultSignal, max_polls: int, max_polls_per_user: int) -> None:
        self.signal = signal
        self.max_polls = max_polls
        self.max_polls_per_user = max_polls_per_user
        self._lock = threading.Lock()
        self._slots: list[PollSlot] = []  # oldest first; released ones are removed at once

    def waiting(self) -> int:
        with self._lock:
            return len(self._slots)

    def acquire(self, user_id: str, watcher: str | None) -> PollSlot | None:
        """A slot to wait in, or None: answer at once and ask the client to pause ``POLL_AFTER``."""
        taken_back: list[PollSlot] = []
        with self._lock:
            if watcher is not None:
                for slot in self._slots:
                    if slot.user_id == user_id and slot.watcher == watcher:
                        taken_back.append(self._take_back(slot, 0.0))
            mine = sum(1 for slot in self._slots if slot.user_id == user_id)
            admitted = mine < self.max_polls_per_user
            if admitted and len(self._slots) >= self.max_polls:
                victim = self._largest_holders_oldest(mine)
                admitted = victim is not None
                if victim is not None:
                    taken_back.append(self._take_back(victim, POLL_AFTER))
            admitted_slot = PollSlot(user_id, watcher, time.monotonic()) if admitted else None
            if admitted_slot is not None:
                self._slots.append(admitted_slot)
        if taken_back:
            self.signal.nudge()  # the polls taken back see ``released`` and answer
        return admitted_slot

    def release(self, slot: PollSlot) -> None:
        with self._lock:
            if not slot.released:
                self._slots.remove(slot)
                slot.released = True

    def _take_back(self, slot: PollSlot, poll_after: float) -> PollSlot:
        self._slots.remove(slot)
        slot.poll_after = poll_after
        slot.released = True
        return slot

    def _largest_holders_oldest(self, mine: int) -> PollSlot | None:
        """The oldest slot of the user holding most slots, if they hold at least two more than ``mine``."""
        counts: dict[str, int] = {}
        for slot in self._slots:
            counts[slot.user_id] = counts.get(slot.user_id, 0) + 1
        largest = max(counts, key=counts.__getitem__, default=None)
        if largest is None or counts[largest] < mine + 2:
            return None
        return next(slot for slot in self._slots if slot.user_id == largest)


@dataclasses.dataclass(frozen=True, slots=True)
class PollOutcome:
    """How a long-poll ended: whether it waited (then it costs no rate-limit token) and the
    ``poll_after`` its answer carries."""

    waited: bool
    poll_after: float


def long_poll(slots: PollSlots, user_id: str, watcher: str | None, wait: float,
              read: Callable[[], bool]) -> PollOutcome:
    """Call ``read`` (True: there is something to answer) until it says so, ``wait`` seconds
    have passed, the poll's slot is taken back or the service stops. A slot is asked for
    only once the first read found nothing."""
    signal = slots.signal
    deadline = time.monotonic() + wait
    generation = signal.generation  # before the read: a result committed after it rings a new generation
    if read() or wait <= 0 or signal.closed:
        return PollOutcome(False, 0.0)
    slot = slots.acquire(user_id, watcher)
    if slot is None:
        return PollOutcome(False, POLL_AFTER)
    try:
        while True:
            signal.wait(generation, min(deadline - time.monotonic(), REREAD_PERIOD), lambda: slot.released)
            generation = signal.generation
            if read() or slot.released or time.monotonic() >= deadline or signal.closed:
                return PollOutcome(True, slot.poll_after)
    finally:
        slots.release(slot)
