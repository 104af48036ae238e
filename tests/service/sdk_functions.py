"""Functions the SDK tests run on workers, in a small module (stdlib only) that workers import
by reference (the endpoint processes get the tests' ``sys.path``)."""

from __future__ import annotations

import time


def double(x: int) -> int:
    return 2 * x


def fail(message: str) -> None:
    raise ValueError(message)


def record(path: str, value: int, seconds: float) -> int:
    """Sleep, then append ``value`` to ``path`` (one line per execution), and return it."""
    time.sleep(seconds)
    with open(path, "a") as log:
        log.write(f"{value}\n")
    return value
