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


def wait_for(path: str, timeout: float = 60.0) -> str:
    """Return once ``path`` exists (a gate the test opens), or after ``timeout`` seconds."""
    import os

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return path


def unless_missing(path: str, value: int) -> int:
    """``value`` once ``path`` exists; until then the task fails (a retry can then succeed)."""
    import os

    if not os.path.exists(path):
        raise FileNotFoundError(path)
    return value


def where(path: str, value: int, seconds: float) -> tuple[int, str]:
    """Sleep ``seconds`` plus the endpoint's ``FABRIC_TEST_DELAY``, log ``value`` and the
    endpoint's ``FABRIC_TEST_NAME`` to ``path`` (one line per execution), return both."""
    import os

    time.sleep(seconds + float(os.environ.get("FABRIC_TEST_DELAY", "0")))
    name = os.environ.get("FABRIC_TEST_NAME", "?")
    with open(path, "a") as log:
        log.write(f"{value} {name}\n")
    return value, name
