"""The functions benchmarks run on workers.

They live in an importable module (not ``__main__``) so they are serialized by reference:
workers import this module once instead of unpickling a function body per benchmark. The
peers (Parsl, Dask, Ray, ``ProcessPoolExecutor``) run these same functions.
"""

from __future__ import annotations

import time
from typing import Any

SLEEP_SECONDS = 0.01
PAYLOAD_BYTES = 100_000
LARGE_PAYLOAD_BYTES = 10_000_000


def noop() -> None:
    """Do nothing: measures the fabric's own per-task cost."""
    return None


def noop_of(value: Any) -> None:
    """Do nothing with one argument (for ``map``)."""
    return None


def sleep10ms(value: int) -> int:
    """Sleep 10 ms, then return ``value`` (so results can be matched to their tasks)."""
    time.sleep(SLEEP_SECONDS)
    return value


def echo(payload: bytes) -> bytes:
    """Return ``payload`` unchanged: measures moving data both ways."""
    return payload


def add_one(array: Any) -> Any:
    """Return ``array + 1`` (a new numpy array): an array in, an array out."""
    return array + 1


def sleep_where(seconds: float) -> str:
    """Sleep ``seconds`` plus the endpoint's ``FABRIC_BENCH_DELAY``, then name the endpoint
    (``FABRIC_BENCH_ENDPOINT``): the routing benchmark counts where tasks ran from these."""
    import os

    time.sleep(seconds + float(os.environ.get("FABRIC_BENCH_DELAY", "0")))
    return os.environ.get("FABRIC_BENCH_ENDPOINT", "?")


def increment(value: int) -> int:
    """``value + 1``: one step of a pipeline (the benchmark of dependencies)."""
    return value + 1


def length(payload: bytes) -> int:
    """The size of a (referenced) argument: the benchmark of data by reference."""
    return len(payload)
