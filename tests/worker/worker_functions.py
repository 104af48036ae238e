"""Task functions for the worker tests.

They live in a module of their own so ``serialize_function`` sends them by reference and
the worker processes (which get this directory on ``PYTHONPATH``) import the same code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


class TaskFailed(Exception):
    """What ``fail`` raises: a user exception class the test process can rebuild."""


class UnprintableError(Exception):
    """A user exception whose ``str()`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise TaskFailed(message)


def fail_unprintably() -> None:
    raise UnprintableError()


def blob(size: int) -> bytes:
    return b"x" * size


def unserializable_result() -> Iterator[int]:
    """A generator: neither pickle nor dill can serialize it."""
    yield 1


def nap(seconds: float, value: int) -> int:
    """A task that takes ``seconds`` (its work, not synchronisation)."""
    time.sleep(seconds)
    return value


def affinity() -> set[int]:
    return os.sched_getaffinity(0)


def log_then_wait(log: str, gate: str, value: int) -> int:
    """Append ``value`` to ``log`` (one line per run), then wait until ``gate`` exists."""
    with open(log, "a") as file:
        file.write(f"{value}\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value
