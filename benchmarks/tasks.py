"""The functions benchmarks run on workers.

They live in an importable module (not ``__main__``) so they are serialized by reference:
workers import this module once instead of unpickling a function body per benchmark.
"""

from __future__ import annotations

import time

SLEEP_SECONDS = 0.01
PAYLOAD_BYTES = 100_000


def noop() -> None:
    """Do nothing: measures the fabric's own per-task cost."""
    return None


def sleep10ms(value: int) -> int:
    """Sleep 10 ms, then return ``value`` (so results can be matched to their tasks)."""
    time.sleep(SLEEP_SECONDS)
    return value


def echo(payload: bytes) -> bytes:
    """Return ``payload`` unchanged: measures moving data both ways."""
    return payload
