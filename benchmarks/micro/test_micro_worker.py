"""The worker's hot path: a task whose function is already cached (the hit path), and a miss."""

from __future__ import annotations

import os
from typing import Any

import pytest

from benchmarks import tasks
from fabric.protocol import RESULT_OK, Task
from fabric.serialize import EMPTY_ARGUMENTS, deserialize, serialize_arguments, serialize_function
from worker.worker import Worker


def _worker() -> tuple[Worker, str, bytes]:
    # no stream: run() and function() never touch it
    worker = Worker("micro-benchmark", None, os.getpid(), 2**27)  # type: ignore[arg-type]
    function_id, body = serialize_function(tasks.sleep10ms)
    noop_id, noop_body = serialize_function(tasks.noop)
    worker.bodies.update({function_id: body, noop_id: noop_body})
    return worker, noop_id, noop_body


@pytest.mark.benchmark(group="worker")
def test_run_cached_noop(benchmark: Any) -> None:
    worker, noop_id, _ = _worker()
    task = Task(1, noop_id, EMPTY_ARGUMENTS)
    worker.run(task)  # the first run deserializes and caches the function
    task_id, kind, _ = benchmark(worker.run, task)
    assert (task_id, kind) == (1, RESULT_OK)


@pytest.mark.benchmark(group="worker")
def test_cache_hit_lookup(benchmark: Any) -> None:
    worker, noop_id, _ = _worker()
    worker.function(noop_id)
    assert benchmark(worker.function, noop_id) is tasks.noop


@pytest.mark.benchmark(group="worker")
def test_cache_miss_deserialize_function(benchmark: Any) -> None:
    _, _, body = _worker()
    assert benchmark(deserialize, body) is tasks.noop


@pytest.mark.benchmark(group="worker")
def test_run_cached_with_small_argument(benchmark: Any) -> None:
    worker, _, _ = _worker()
    function_id, body = serialize_function(tasks.echo)
    worker.bodies[function_id] = body
    task = Task(2, function_id, serialize_arguments((b"x" * 64,), {}))
    worker.run(task)
    task_id, kind, _ = benchmark(worker.run, task)
    assert (task_id, kind) == (2, RESULT_OK)
