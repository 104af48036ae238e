"""Protocol encode/decode of a 1,000-task ``TaskBatch`` and a 1,000-result ``ResultBatch``."""

from __future__ import annotations

from typing import Any

import pytest

from fabric import protocol
from fabric.protocol import RESULT_OK, ResultBatch, Task, TaskBatch
from fabric.serialize import EMPTY_ARGUMENTS, serialize, serialize_arguments

TASKS = 1000
FUNCTION_ID = "f" * 32


def _task_batch() -> TaskBatch:
    return TaskBatch([Task(i, FUNCTION_ID, serialize_arguments((i,), {}) if i % 2 else EMPTY_ARGUMENTS)
                      for i in range(TASKS)])


def _result_batch() -> ResultBatch:
    return ResultBatch.build([(i, RESULT_OK, serialize(i)) for i in range(TASKS)])


@pytest.mark.benchmark(group="protocol 1,000 tasks")
def test_encode_task_batch(benchmark: Any) -> None:
    batch = _task_batch()
    benchmark.extra_info["items"] = TASKS
    frames = benchmark(batch.to_frames)
    assert len(frames) == 2


@pytest.mark.benchmark(group="protocol 1,000 tasks")
def test_decode_task_batch(benchmark: Any) -> None:
    frames = _task_batch().to_frames()
    benchmark.extra_info["items"] = TASKS
    message = benchmark(protocol.decode, frames)
    assert isinstance(message, TaskBatch) and len(message.tasks) == TASKS


@pytest.mark.benchmark(group="protocol 1,000 results")
def test_encode_result_batch(benchmark: Any) -> None:
    results = [(i, RESULT_OK, serialize(i)) for i in range(TASKS)]
    benchmark.extra_info["items"] = TASKS
    frames = benchmark(lambda: ResultBatch.build(results).to_frames())
    assert len(frames) == 2


@pytest.mark.benchmark(group="protocol 1,000 results")
def test_decode_result_batch(benchmark: Any) -> None:
    frames = _result_batch().to_frames()
    benchmark.extra_info["items"] = TASKS

    def decode_and_split() -> list[Any]:
        message = protocol.decode(frames)
        assert isinstance(message, ResultBatch)
        return message.payloads()

    payloads = benchmark(decode_and_split)
    assert len(payloads) == TASKS
