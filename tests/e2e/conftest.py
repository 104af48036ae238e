"""Fixtures for end-to-end tests: real endpoints (interchange, managers, workers as
processes on this machine), always shut down, never leaving a process behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.support.processes import descendants, wait_gone

from fabric import Endpoint

FAST_HEARTBEATS = {"heartbeat_period": 0.2, "heartbeat_threshold": 2.0}
"""Short heartbeats keep loss detection and timers quick; 2 s tolerates a busy 2-core CI."""


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every e2e test starts and ends without child processes of the test runner."""
    assert not descendants(), "a previous test left processes behind"
    yield
    wait_gone(descendants(), "processes left by this test")


@pytest.fixture
def make_endpoint() -> Iterator[Callable[..., Endpoint]]:
    """``make_endpoint(**options)``: a started ``Endpoint`` (1 worker, fast heartbeats by
    default) that is shut down after the test, with all its processes gone."""
    endpoints: list[Endpoint] = []

    def make(**options: Any) -> Endpoint:
        endpoint = Endpoint(**{"workers": 1, **FAST_HEARTBEATS, **options})
        endpoints.append(endpoint)
        return endpoint

    yield make
    processes = descendants()
    for endpoint in endpoints:
        endpoint.shutdown(wait=False, cancel_futures=True)
    wait_gone(processes, "endpoint processes after shutdown")
