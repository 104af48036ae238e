"""End to end: an endpoint with a small ``max_message_bytes``.

Nothing the endpoint itself sends may break the limit its interchange enforces: one
payload over the limit fails that one task with ``PayloadTooLarge``; many payloads that
fit one by one must travel in several messages, never one oversized one.
"""

from __future__ import annotations

import os

import e2e_functions as fns
import pytest
from tests.support import TIMEOUT

from fabric import Endpoint
from fabric.errors import FabricError, PayloadTooLarge, RemoteExecutionError

LIMIT = 64 * 1024
"""The endpoint's max_message_bytes; a task's arguments or result may use half of it."""


@pytest.fixture
def small_endpoint(make_endpoint) -> Endpoint:
    endpoint = make_endpoint(max_message_bytes=LIMIT)
    assert endpoint.submit(fns.square, 1).result(TIMEOUT) == ("square", 1, 1)
    return endpoint


def assert_serving(endpoint: Endpoint) -> None:
    futures = [endpoint.submit(fns.square, x) for x in range(10)]
    assert [f.result(TIMEOUT) for f in futures] == [("square", x, x * x) for x in range(10)]


def test_arguments_over_the_limit_are_refused_at_submit(small_endpoint) -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        small_endpoint.submit(fns.reverse_bytes, bytes(LIMIT))
    assert refused.value.limit <= LIMIT
    assert refused.value.size > refused.value.limit
    assert_serving(small_endpoint)


def test_result_over_the_limit_fails_its_task(small_endpoint) -> None:
    with pytest.raises(RemoteExecutionError) as failed:
        small_endpoint.submit(bytes, LIMIT).result(TIMEOUT)
    assert failed.value.remote_type == "fabric.errors.PayloadTooLarge"
    assert isinstance(failed.value.exception, PayloadTooLarge)
    assert_serving(small_endpoint)


def test_many_tasks_whose_arguments_together_exceed_the_limit_all_run(small_endpoint) -> None:
    blobs = [os.urandom(1000) for _ in range(200)]  # 200 kB in all, 1 kB each
    futures = [small_endpoint.submit(fns.reverse_bytes, blob) for blob in blobs]
    assert [f.result(TIMEOUT) for f in futures] == [blob[::-1] for blob in blobs]
    assert_serving(small_endpoint)


def test_many_tasks_whose_results_together_exceed_the_limit_all_return(small_endpoint) -> None:
    # 20 kB results (each within the limit): a worker's chunk of them is far over it.
    futures = [small_endpoint.submit(fns.filled, x % 256, 20_000) for x in range(300)]
    assert [f.result(TIMEOUT) for f in futures] == [bytes([x % 256]) * 20_000 for x in range(300)]
    assert_serving(small_endpoint)


def test_function_over_the_limit_fails_alone(small_endpoint) -> None:
    captured = os.urandom(4 * LIMIT)

    def uses_captured_data() -> int:
        return len(captured)

    try:
        future = small_endpoint.submit(uses_captured_data)
    except PayloadTooLarge:
        pass
    else:
        with pytest.raises(FabricError):
            future.result(TIMEOUT)
    assert_serving(small_endpoint)
