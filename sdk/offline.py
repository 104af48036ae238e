"""Never a silent wait: tell the user once when an executor's endpoint has been offline too long.

An ``Executor`` whose tasks wait on an offline endpoint would otherwise just hang. Its
``OfflineWatch`` is asked by the client's result watcher after each long-poll
(``check``); at most every ``CHECK_EVERY`` seconds, while tasks are unfinished, it asks the
service for the endpoint's status. Once the endpoint has been offline for ``threshold``
seconds (counted from its last heartbeat, or from when the watch first saw it offline if it
never connected, whichever is later), it warns once — a Python warning
(``EndpointOfflineWarning``) and a log line — naming the endpoint and how long. If the
endpoint comes back, a later outage warns again.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import TYPE_CHECKING

from fabric.errors import FabricError

if TYPE_CHECKING:
    from sdk.client import Client

logger = logging.getLogger(__name__)

OFFLINE_WARNING_AFTER = 60.0
"""Seconds an executor's endpoint may be offline, with tasks waiting on it, before it warns."""
CHECK_EVERY = 5.0
"""Seconds between two status requests of one watch (at most)."""


class EndpointOfflineWarning(UserWarning):
    """The endpoint an executor submits to has been offline for a while: its tasks wait."""


class OfflineWatch:
    """Warns once per outage that ``endpoint_id`` is offline (see the module docstring)."""

    def __init__(self, client: Client, endpoint_id: str, threshold: float = OFFLINE_WARNING_AFTER,
                 check_every: float = CHECK_EVERY) -> None:
        self.client, self.endpoint_id = client, endpoint_id
        self.threshold, self.check_every = threshold, min(check_every, max(threshold / 4, 0.05))
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._first_seen_offline: float | None = None
        self._warned = False

    def check(self, waiting: int) -> str | None:
        """With ``waiting`` tasks unfinished: ask the service (if it is time) and warn if due.
        Returns the warning's text when it warned now."""
        now = time.monotonic()
        with self._lock:
            if waiting <= 0 or now < self._next_check:
                return None
            self._next_check = now + self.check_every
        try:
            view = self.client.get_endpoint_status(self.endpoint_id)
        except FabricError as exc:
            logger.debug("cannot ask for endpoint %s's status: %s", self.endpoint_id, exc)
            return None
        return self._judge(view, waiting)

    def _judge(self, view: dict[str, object], waiting: int) -> str | None:
        if view.get("status") == "online":
            self._first_seen_offline, self._warned = None, False
            return None
        wall = time.time()
        if self._first_seen_offline is None:
            self._first_seen_offline = wall
        heard = view.get("last_heartbeat")
        since = max(heard, self._first_seen_offline) if isinstance(heard, (int, float)) else self._first_seen_offline
        offline_for = wall - since
        if self._warned or offline_for < self.threshold:
            return None
        self._warned = True
        name = view.get("name") or self.endpoint_id
        last = (f"last heard {_duration(wall - heard)} ago" if isinstance(heard, (int, float))
                else "never connected")
        text = (f"endpoint {name} ({self.endpoint_id}) has been offline for {_duration(offline_for)} while "
                f"{waiting} task(s) wait for it ({last}). Start it (`fabric endpoint start {name}`) or check it "
                f"(`fabric endpoint status {name}`); the tasks run when it connects.")
        logger.warning("%s", text)
        warnings.warn(text, EndpointOfflineWarning, stacklevel=2)
        return text


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
