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


def _log_step(path: str, step: str) -> None:
    with open(path, "a") as log:
        log.write(f"{step}\n")


def extract(path: str, name: str, n: int, gate: str | None = None) -> list[int]:
    """A pipeline's first step: ``range(n)`` (once ``gate`` exists, if given); logs ``extract-<name>``."""
    if gate is not None:
        wait_for(gate)
    _log_step(path, f"extract-{name}")
    return list(range(n))


def infer(path: str, name: str, data: list[int]) -> list[int]:
    """A pipeline's middle step: doubles each value; logs ``infer-<name>``."""
    _log_step(path, f"infer-{name}")
    return [2 * x for x in data]


def aggregate(path: str, parts: dict[str, list[list[int]]]) -> int:
    """A pipeline's last step: the sum of every value in ``parts``; logs ``aggregate``."""
    _log_step(path, "aggregate")
    return sum(sum(values) for part in parts.values() for values in part)


def size_of(value: bytes) -> int:
    """How many bytes a (referenced) argument has once it arrived."""
    return len(value)


def reversed_bytes(value: bytes) -> bytes:
    """The argument's bytes reversed: a large result made from a large argument."""
    return value[::-1]


def record_file(path: str) -> int:
    """A trigger's function: appends ``<name> <size>`` to ``runs.log`` beside the watched directory."""
    import os

    size = os.path.getsize(path)
    with open(os.path.join(os.path.dirname(os.path.dirname(path)), "runs.log"), "a") as log:
        log.write(f"{os.path.basename(path)} {size}\n")
    return size
