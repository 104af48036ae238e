"""End to end: tasks through a real endpoint (interchange, manager, worker processes).

Correct values in the right futures for thousands of tasks, every kind of argument and
function, large payloads, and remote exceptions as typed errors.
"""

from __future__ import annotations

import os

import e2e_functions as fns
import numpy as np
import pytest
from tests.support import TIMEOUT

from fabric.errors import RemoteExecutionError, WorkerLost


def test_first_result_arrives_without_waiting_for_workers(make_endpoint) -> None:
    endpoint = make_endpoint()
    assert endpoint.submit(pow, 2, 10).result(TIMEOUT) == 1024
    status = endpoint.wait_for_workers(timeout=TIMEOUT)
    assert status.workers == 1
    assert len(status.managers) == 1


def test_thousands_of_mixed_submit_and_map_tasks_land_in_their_own_futures(make_endpoint) -> None:
    endpoint = make_endpoint(workers=2)
    submitted: dict[int, object] = {}
    mapped: list[tuple[range, object]] = []
    for start in range(0, 5000, 500):  # interleave: 250 submits, then a map of 250
        for x in range(start, start + 250):
            submitted[x] = endpoint.submit(fns.affine, x, scale=3, offset=x % 7)
        inputs = range(start + 250, start + 500)
        mapped.append((inputs, endpoint.map(fns.square, inputs, timeout=TIMEOUT)))

    for x, future in submitted.items():
        assert future.result(TIMEOUT) == ("affine", x, 3 * x + x % 7)
    for inputs, results in mapped:
        assert list(results) == [("square", x, x * x) for x in inputs]
    assert len(submitted) + sum(len(inputs) for inputs, _ in mapped) == 5000
    assert endpoint.status().pending_futures == 0


def test_positional_keyword_and_default_arguments(make_endpoint) -> None:
    endpoint = make_endpoint()
    assert endpoint.submit(fns.affine, 5).result(TIMEOUT) == ("affine", 5, 5)
    assert endpoint.submit(fns.affine, 5, offset=2).result(TIMEOUT) == ("affine", 5, 7)
    assert endpoint.submit_task(fns.affine, (5,), {"scale": -1}).result(TIMEOUT) == ("affine", 5, -5)
    assert endpoint.submit(divmod, 17, 5).result(TIMEOUT) == (3, 2)
    assert endpoint.submit(sorted, [3, 1, 2], reverse=True).result(TIMEOUT) == [3, 2, 1]
    assert endpoint.submit(dict, a=None, b=(1, {"c": b"d"})).result(TIMEOUT) == {"a": None, "b": (1, {"c": b"d"})}


def test_numpy_arrays_in_and_out(make_endpoint) -> None:
    endpoint = make_endpoint()
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4)
    counts = np.arange(1000, dtype=np.int32)

    scaled, total = endpoint.submit(fns.scale_array, matrix, factor=0.5).result(TIMEOUT)
    assert scaled.dtype == np.float64 and scaled.shape == (3, 4)
    np.testing.assert_array_equal(scaled, matrix * 0.5)
    assert total == matrix.sum()

    doubled, total = endpoint.submit(fns.scale_array, counts, 2).result(TIMEOUT)
    assert doubled.dtype == np.int32
    np.testing.assert_array_equal(doubled, counts * 2)
    assert total == counts.sum()


def test_lambdas_and_closures_travel_by_value(make_endpoint) -> None:
    endpoint = make_endpoint()
    assert endpoint.submit(lambda x, y=1: x * 10 + y, 4, y=2).result(TIMEOUT) == 42

    def make_adder(amount: int):
        def add(x: int) -> int:
            return x + amount
        return add

    # Same code, different captured values: each closure must run with its own value.
    adders = [make_adder(amount) for amount in range(5)]
    futures = [endpoint.submit(add, 100) for add in adders]
    assert [f.result(TIMEOUT) for f in futures] == [100, 101, 102, 103, 104]

    suffix = "-tail"
    assert endpoint.submit(lambda s: s + suffix, "head").result(TIMEOUT) == "head-tail"


def test_one_megabyte_payload_round_trip(make_endpoint) -> None:
    endpoint = make_endpoint()
    data = os.urandom(1 << 20)
    assert endpoint.submit(fns.reverse_bytes, data).result(TIMEOUT) == data[::-1]
    assert endpoint.submit(bytes, 1 << 20).result(TIMEOUT) == bytes(1 << 20)


def test_remote_exception_arrives_typed_with_type_message_traceback_and_object(make_endpoint) -> None:
    endpoint = make_endpoint()
    future = endpoint.submit(fns.raise_value_error, "bad input 7")
    with pytest.raises(RemoteExecutionError) as raised:
        future.result(TIMEOUT)
    error = raised.value
    assert error.remote_type == "builtins.ValueError"
    assert error.message == "bad input 7"
    assert "raise_value_error" in error.traceback
    assert "ValueError: bad input 7" in error.traceback
    assert isinstance(error.exception, ValueError)
    assert error.exception.args == ("bad input 7",)
    assert "builtins.ValueError: bad input 7" in str(error)
    # the worker survives its task's exception
    assert endpoint.submit(fns.square, 3).result(TIMEOUT) == ("square", 3, 9)


def test_remote_exception_that_cannot_be_pickled_still_arrives_described(make_endpoint) -> None:
    endpoint = make_endpoint()
    with pytest.raises(RemoteExecutionError) as raised:
        endpoint.submit(fns.raise_unpicklable_error, "holds a generator").result(TIMEOUT)
    assert raised.value.remote_type == "e2e_functions.UnpicklableError"
    assert raised.value.message == "holds a generator"
    assert "raise_unpicklable_error" in raised.value.traceback
    assert raised.value.exception is None


def test_result_that_cannot_be_serialized_fails_the_task_not_the_worker(make_endpoint) -> None:
    endpoint = make_endpoint()
    with pytest.raises(RemoteExecutionError) as raised:
        endpoint.submit(fns.return_unpicklable).result(TIMEOUT)
    assert raised.value.remote_type == "fabric.errors.SerializationError"
    assert endpoint.submit(fns.square, 4).result(TIMEOUT) == ("square", 4, 16)


def test_sys_exit_in_a_task_is_a_remote_error_and_os_exit_loses_the_worker(make_endpoint) -> None:
    endpoint = make_endpoint()
    with pytest.raises(RemoteExecutionError) as raised:
        endpoint.submit(fns.call_sys_exit, 5).result(TIMEOUT)
    assert raised.value.remote_type == "builtins.SystemExit"
    assert isinstance(raised.value.exception, SystemExit)

    with pytest.raises(WorkerLost) as lost:
        endpoint.submit(fns.exit_process, 3).result(TIMEOUT)
    assert lost.value.exit_code == 3
    assert endpoint.submit(fns.square, 5).result(TIMEOUT) == ("square", 5, 25)

