"""Helpers shared by the tests: one time constant and one way to wait.

Tests never sleep to synchronise: they ``poll_until`` a condition holds and give up after
``TIMEOUT``, the one time constant (it bounds waits, it never asserts how fast anything is).

    tests.support.processes       process trees: descendants, wait_gone, worker processes
    tests.support.service         a real service process, its HTTP API, a fake interchange, a real endpoint process
    tests.support.fixtures        pytest fixtures over those (start_service, interchanges, cluster)
    tests.support.interchange     a real interchange process and raw manager sockets
    tests.support.fuzz_strategies hypothesis strategies for wire messages
    tests.support.sdk_functions   functions the SDK tests run on endpoints (imported there by reference)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["TIMEOUT", "poll_until"]

TIMEOUT = 30.0
"""Seconds any wait in a test may take before the test fails."""

T = TypeVar("T")


def poll_until(condition: Callable[[], T], what: str, timeout: float = TIMEOUT) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Fails the test with ``what`` in the message once ``timeout`` seconds have passed.
    The pause between calls grows from a tiny one to ``timeout / 300``, derived from
    the one time constant.
    """
    deadline = time.monotonic() + timeout
    pause = timeout / 30000
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, timeout / 300)
