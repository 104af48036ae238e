"""Shared set-up of the micro benchmarks."""

from __future__ import annotations

import os

import pytest

QUICK = os.environ.get("FABRIC_BENCH_QUICK") == "1"
"""Set by ``fabric bench micro --quick``: fewer rounds in the benchmarks that fix their own."""


@pytest.fixture
def rounds() -> int:
    """Rounds for ``benchmark.pedantic`` runs (each round needs fresh, untimed set-up)."""
    return 5 if QUICK else 300
