"""The purger: one thread of the service process that runs the store's purge step on a timer.

Every ``purge_interval`` seconds it calls ``Store.purge`` (results the clients fetched,
results past ``result_ttl``, empty idle task groups; see ``service.store.purge``). A step
that ran out of its time budget with work left is followed by the next one almost at once,
so a backlog drains without any single transaction holding the store for long.
"""

from __future__ import annotations

import logging
import threading
import time

from service.config import ServiceConfig
from service.errors import StoreError
from service.records import PurgeOutcome
from service.store import Store

logger = logging.getLogger(__name__)

STEP_BUDGET = 1.0
"""Seconds one purge step may take (each of its transactions is far shorter)."""
BACKLOG_PAUSE = 0.05
"""Seconds between steps while a backlog drains."""


class Purger:
    def __init__(self, store: Store, config: ServiceConfig) -> None:
        self.store = store
        self.interval = config.purge_interval
        self.result_ttl = config.result_ttl
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fabric-purger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def step(self) -> PurgeOutcome | None:
        """One purge step now; None if the store failed (the next step tries again)."""
        try:
            outcome = self.store.purge(time.time(), self.result_ttl, budget=STEP_BUDGET)
        except StoreError as exc:
            logger.error("purge failed: %s", exc)
            return None
        if outcome.acknowledged or outcome.expired or outcome.task_groups:
            logger.debug("purged %d fetched and %d expired tasks, %d task groups", outcome.acknowledged,
                         outcome.expired, outcome.task_groups)
        return outcome

    def _serve(self) -> None:
        reason = "stopped"
        try:
            pause = self.interval
            while not self._stopping.wait(pause):
                try:
                    outcome = self.step()
                except Exception:  # noqa: BLE001 - a bug in one step must not end purging for good
                    logger.exception("unexpected failure in a purge step")
                    outcome = None
                pause = BACKLOG_PAUSE if outcome is not None and outcome.more else self.interval
        except BaseException as exc:
            reason = f"failed: {exc!r}"
            raise
        finally:
            logger.info("purger thread ended: %s", reason)
