"""Serialization of typical call payloads: what a client pays per task, and a worker per task."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import tasks, workloads
from fabric.serialize import deserialize, serialize, serialize_arguments, serialize_function


def _arguments(name: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if name == "no-arg call":
        return (), {}
    if name == "small args":
        return (42, 2.5, "sample-0042"), {"retries": 3, "verbose": True}
    if name == "100 kB bytes":
        return (workloads.payload(7),), {}
    pytest.importorskip("numpy")
    return (workloads.numpy_argument(7),), {}


PAYLOADS = ["no-arg call", "small args", "100 kB bytes", "numpy array"]


@pytest.mark.benchmark(group="serialize arguments")
@pytest.mark.parametrize("payload", PAYLOADS)
def test_serialize_arguments(benchmark: Any, payload: str) -> None:
    args, kwargs = _arguments(payload)
    buffer = benchmark(serialize_arguments, args, kwargs)
    assert deserialize(buffer)[0] is not None


@pytest.mark.benchmark(group="deserialize arguments")
@pytest.mark.parametrize("payload", PAYLOADS)
def test_deserialize_arguments(benchmark: Any, payload: str) -> None:
    args, kwargs = _arguments(payload)
    buffer = serialize_arguments(args, kwargs)
    restored_args, restored_kwargs = benchmark(deserialize, buffer)
    assert len(restored_args) == len(args) and restored_kwargs == kwargs


@pytest.mark.benchmark(group="serialize result")
@pytest.mark.parametrize("payload", ["None", "100 kB bytes"])
def test_serialize_result(benchmark: Any, payload: str) -> None:
    value = None if payload == "None" else workloads.payload(7)
    buffer = benchmark(serialize, value)
    assert deserialize(buffer) == value


@pytest.mark.benchmark(group="serialize function")
def test_serialize_function_by_reference(benchmark: Any) -> None:
    function_id, body = benchmark(serialize_function, tasks.sleep10ms)
    assert deserialize(body) is tasks.sleep10ms and len(function_id) == 32
