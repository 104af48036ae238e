"""The trigger watcher: new, fully written files in a watched directory each start a function once.

``TriggerWatcher.scan`` reads the endpoint's triggers from the service, lists each directory,
and submits one task per new file (the function gets the file's absolute path):

- *fully written*: a file is taken once its size and modification time have not changed for
  ``settle`` seconds (seen unchanged by two scans that far apart, and last modified that long
  ago), so a file written slowly, in pieces, is taken only when complete. Names starting with
  ``.`` are left alone (write to ``.name`` and rename, for files that may pause longer).
- *at most once*: each file's task is its own batch, whose ``batch_id`` is derived from the
  trigger and the path, so a submit repeated after a crash adds nothing at the service; the
  files submitted are appended to a state file (``<state_dir>/<trigger id>.done``), read at
  start, so a restarted watcher does not submit old files again.
- *rate*: at most ``max_per_minute`` submissions per trigger (a token bucket); the rest wait
  for later scans.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fabric.errors import BatchGone, InvalidRequest, NotFound
from fabric.serialize import serialize_arguments

logger = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f3a8f0e-1c2b-4f6e-9a57-3c1d2e4b5a60")


@dataclass
class _Trigger:
    record: dict[str, Any]
    done: set[str]
    tokens: float
    refilled: float
    seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # path -> size, mtime_ns, since


class TriggerWatcher:
    """Watches the directories of ``endpoint_id``'s triggers and submits a task per new file."""

    def __init__(self, client: Any, endpoint_id: str, state_dir: str, *, settle: float = 1.0) -> None:
        self.client, self.endpoint_id, self.state_dir, self.settle = client, endpoint_id, state_dir, settle
        os.makedirs(state_dir, exist_ok=True)
        self._triggers: dict[str, _Trigger] = {}

    def _trigger(self, record: dict[str, Any]) -> _Trigger:
        known = self._triggers.get(record["trigger_id"])
        if known is None:
            path = self._state_path(record["trigger_id"])
            done: set[str] = set()
            if os.path.exists(path):
                with open(path) as state:
                    done = set(state.read().split("\0")) - {""}
            known = self._triggers[record["trigger_id"]] = _Trigger(record, done, record["max_per_minute"],
                                                                    time.monotonic())
        return known

    def _state_path(self, trigger_id: str) -> str:
        return os.path.join(self.state_dir, f"{trigger_id}.done")

    def scan(self) -> int:
        """One pass over every trigger; returns how many tasks it submitted."""
        submitted = 0
        for record in self.client.list_triggers(self.endpoint_id):
            submitted += self._scan_trigger(self._trigger(record))
        return submitted

    def _scan_trigger(self, trigger: _Trigger) -> int:
        record, now = trigger.record, time.monotonic()
        rate = record["max_per_minute"]
        trigger.tokens = min(rate, trigger.tokens + (now - trigger.refilled) * rate / 60.0)
        trigger.refilled = now
        submitted = 0
        for path in self._complete_files(trigger, now):
            if trigger.tokens < 1:
                break
            self._submit(trigger, path)
            trigger.tokens -= 1
            submitted += 1
        return submitted

    def _complete_files(self, trigger: _Trigger, now: float) -> list[str]:
        record, ready = trigger.record, []
        try:
            entries = list(os.scandir(record["directory"]))
        except OSError as exc:
            logger.warning("trigger %s: cannot list %s: %s", record["trigger_id"], record["directory"], exc)
            return []
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or not fnmatch.fnmatchcase(entry.name, record["pattern"]):
                continue
            path = os.path.abspath(entry.path)
            if path in trigger.done or not entry.is_file():
                continue
            stat = entry.stat()
            before = trigger.seen.get(path)
            if before is None or before[:2] != (stat.st_size, stat.st_mtime_ns):
                trigger.seen[path] = (stat.st_size, stat.st_mtime_ns, now)
                continue
            if now - before[2] >= self.settle and time.time() - stat.st_mtime >= self.settle:
                ready.append(path)
        return ready

    def _submit(self, trigger: _Trigger, path: str) -> None:
        record = trigger.record
        batch_id = str(uuid.uuid5(_NAMESPACE, f"{record['trigger_id']}\0{path}"))
        try:
            self.client.submit_batch(self.endpoint_id, record["function_id"], [serialize_arguments((path,), {})],
                                     batch_id=batch_id)
        except (BatchGone, InvalidRequest) as exc:  # submitted before (and purged, or conflicting): done
            logger.info("trigger %s: %s was submitted before (%s)", record["trigger_id"], path, exc)
        with open(self._state_path(record["trigger_id"]), "a") as state:
            state.write(path + "\0")
        trigger.done.add(path)
        trigger.seen.pop(path, None)

    def run(self, stop: threading.Event, poll: float = 0.5) -> None:
        """Scan every ``poll`` seconds until ``stop`` is set; a failed scan is logged and retried."""
        logger.info("watching the triggers of endpoint %s", self.endpoint_id)
        while not stop.is_set():
            try:
                self.scan()
            except NotFound:
                raise
            except Exception:  # noqa: BLE001 - the service may be away: try again next poll
                logger.exception("a trigger scan failed")
            stop.wait(poll)
        logger.info("stopped watching the triggers of endpoint %s", self.endpoint_id)
