"""Functions the end-to-end tests run on workers.

They live in their own small module (stdlib only at import time) so workers import them
by reference quickly; lambdas and closures, which travel by value, are made in the tests.
Every result carries its input, so a test can tell that it landed in the right future.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def affine(x: int, *, scale: int = 1, offset: int = 0) -> tuple[str, int, int]:
    return "affine", x, scale * x + offset


def square(x: int) -> tuple[str, int, int]:
    return "square", x, x * x


def reverse_bytes(data: bytes) -> bytes:
    return data[::-1]


def filled(value: int, size: int) -> bytes:
    """``size`` bytes of ``value``: a big result from a small argument."""
    return bytes([value]) * size


def scale_array(array: Any, factor: float = 2.0) -> tuple[Any, float]:
    """An array out (``array * factor``) and a scalar computed from the array in."""
    return array * factor, float(array.sum())


def raise_value_error(message: str) -> None:
    raise ValueError(message)


class UnpicklableError(Exception):
    """An exception that cannot cross a process boundary as an object (holds a generator)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.pending = (character for character in message)


def raise_unpicklable_error(message: str) -> None:
    raise UnpicklableError(message)


def return_unpicklable() -> Any:
    """A generator: neither pickle nor dill can serialize it."""
    return (n for n in range(3))


def call_sys_exit(code: int) -> None:
    sys.exit(code)


def exit_process(code: int) -> None:
    """Ends the worker process itself, as a crashing extension module would."""
    os._exit(code)


def _write_atomically(path: str, text: str) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def record_pid_then_sleep(path: str, seconds: float) -> int:
    """Tell the test which process runs this task, then take ``seconds``."""
    _write_atomically(path, str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def record_pid_unless_retried(path: str, seconds: float) -> tuple[str, int]:
    """First run: record the pid and take ``seconds``. A retry (the file exists): return."""
    if os.path.exists(path):
        return "retried", os.getpid()
    _write_atomically(path, str(os.getpid()))
    time.sleep(seconds)
    return "first run", os.getpid()


def log_manager_then_sleep(directory: str, index: int, seconds: float) -> tuple[int, int]:
    """Append the manager pid (the worker's parent) to ``directory/index``, then sleep.

    Returns ``(index, manager pid)``. A task run twice leaves two lines.
    """
    manager_pid = os.getppid()
    with open(os.path.join(directory, str(index)), "a") as file:
        file.write(f"{manager_pid}\n")
    time.sleep(seconds)
    return index, manager_pid


def manager_pid_of(x: int) -> tuple[int, int]:
    """``(x, pid of the manager running this worker)``."""
    return x, os.getppid()


def sleep_then_manager_pid(seconds: float, x: int) -> tuple[int, int]:
    time.sleep(seconds)
    return x, os.getppid()


def sleep_then_return(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def write_marker(path: str) -> str:
    """Leave ``path`` behind: proof that this task ran."""
    _write_atomically(path, "ran")
    return path


def write_marker_too(path: str) -> str:
    """``write_marker`` under another function id."""
    _write_atomically(path, "ran")
    return path


def log_manager_then_wait(directory: str, index: int, gate: str) -> tuple[int, int]:
    """``log_manager_then_sleep``, but waiting until the file ``gate`` exists (at most a minute)."""
    manager_pid = os.getppid()
    with open(os.path.join(directory, str(index)), "a") as file:
        file.write(f"{manager_pid}\n")
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return index, manager_pid
