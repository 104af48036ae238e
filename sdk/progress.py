"""A progress bar (tqdm) of tasks finished out of tasks submitted, for long submissions and waits.

On by default when someone is watching: standard error is a terminal, or the code runs in
a Jupyter kernel (then ``tqdm.auto`` draws a notebook widget). Off when output goes to a
file or a pipe, and switchable either way with ``progress=True/False``. The bar appears
only once the work has taken ``delay`` seconds, so quick calls print nothing.

Updates come from the SDK's background threads in bulk (one per uploaded batch, one per
page of results), never per task.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

DELAY = 1.0


def watched() -> bool:
    """Whether a person is probably watching: a terminal on stderr, or a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


class Progress:
    """Tasks done / tasks submitted; ``enabled`` None: ``watched()``."""

    def __init__(self, enabled: bool | None = None, description: str = "tasks", delay: float = DELAY) -> None:
        self.enabled = watched() if enabled is None else enabled
        self.description = description
        self.delay = delay
        self.total = 0
        self.done = 0
        self._bar: Any = None
        self._lock = threading.Lock()

    def add_submitted(self, count: int) -> None:
        if not self.enabled or not count:
            return
        with self._lock:
            self.total += count
            bar = self._ensure_bar()
            bar.total = self.total
            bar.refresh()

    def add_done(self, count: int) -> None:
        if not self.enabled or not count:
            return
        with self._lock:
            self.done += count
            self._ensure_bar().update(count)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _ensure_bar(self) -> Any:
        if self._bar is None:
            from tqdm.auto import tqdm  # noqa: PLC0415 - only when a bar is wanted

            self._bar = tqdm(total=self.total, initial=self.done, desc=self.description, unit="task",
                             delay=self.delay, dynamic_ncols=True, file=sys.stderr)
        return self._bar
