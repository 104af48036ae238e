"""Fixtures shared by the tests (registered in ``tests/conftest.py``): real service processes and
endpoints, always stopped; a ZeroMQ context for raw sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from tests.support.service import CLUSTER_SETTINGS, EndpointProcess, FakeInterchange, ServiceProcess, user

from fabric import Client

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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``cluster.service(**settings)`` and ``cluster.endpoint(registration, **interchange settings)``:
    started, always stopped (an endpoint started again keeps its result spool)."""
    services: list[ServiceProcess] = []
    endpoints: list[EndpointProcess] = []

    class Cluster:
        @staticmethod
        def service(**settings: Any) -> ServiceProcess:
            service = ServiceProcess(tmp_path / "service", **{**CLUSTER_SETTINGS, **settings})
            services.append(service)
            return service

        @staticmethod
        def endpoint(registration: dict[str, Any], **settings: Any) -> EndpointProcess:
            endpoint = EndpointProcess(registration, tmp_path / f"spool-{registration['endpoint_id']}", **settings)
            endpoints.append(endpoint)
            return endpoint

        @classmethod
        def running(cls, *, start_endpoint: bool = True) -> tuple[ServiceProcess, Client, dict[str, Any]]:
            """A service, a user's client, and the user's endpoint (started unless told otherwise)."""
            service = cls.service()
            client = user(service)
            registration = client.register_endpoint("laptop")
            if start_endpoint:
                cls.endpoint(registration)
            return service, client, registration

    yield Cluster  # type: ignore[misc]
    for endpoint in endpoints:
        endpoint.stop()
    for service in services:
        if service.process.poll() is None:
            service.stop()


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    """A ZeroMQ context for raw sockets in a test, destroyed after it."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)
