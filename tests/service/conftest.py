"""Fixtures for the service tests: real service processes, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import FakeInterchange, ServiceProcess

FAST = {"heartbeat_period": 0.2, "heartbeat_threshold": 2.0}
"""Short heartbeats keep expiry quick; 2 s tolerates a busy 2-core machine."""


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """``start_service(data_dir=None, **settings)``: a running service, stopped after the test."""
    started: list[ServiceProcess] = []

    def start(data_dir: Path | None = None, **settings: Any) -> ServiceProcess:
        service = ServiceProcess(data_dir or tmp_path / "service", **{**FAST, **settings})
        started.append(service)
        return service

    yield start
    for service in started:
        if service.process.poll() is None:
            service.stop()


@pytest.fixture
def interchanges() -> Iterator[list[FakeInterchange]]:
    """A list to put ``FakeInterchange`` s in; each is closed after the test."""
    made: list[FakeInterchange] = []
    yield made
    for fake in made:
        fake.close()
