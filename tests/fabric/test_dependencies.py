"""``fabric.dependencies`` without sockets: references pickle at any depth and are collected,
the service's wrapping resolves them on the worker's side, stray futures are refused."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import pytest

from fabric.dependencies import NotAFabricFuture, TaskRef, collect_inputs, wrap
from fabric.serialize import deserialize, serialize, serialize_arguments


@dataclasses.dataclass
class Holder:
    inside: object


def test_references_at_any_depth_are_collected_once_in_order_and_resolved() -> None:
    with collect_inputs() as inputs:
        payload = serialize_arguments((TaskRef("t1"), [{"k": (TaskRef("t2"),)}]), {"h": Holder(TaskRef("t1"))})
    assert inputs == ["t1", "t2"]
    args, kwargs = deserialize(wrap(payload, [("t1", serialize(10)), ("t2", serialize("two"))]))
    assert args == (10, [{"k": ("two",)}]) and kwargs == {"h": Holder(10)}
    assert deserialize(payload) == ((TaskRef("t1"), [{"k": (TaskRef("t2"),)}]), {"h": Holder(TaskRef("t1"))})


def test_a_plain_future_is_refused_with_a_clear_error() -> None:
    with collect_inputs(), pytest.raises(Exception) as caught:
        serialize_arguments(([concurrent.futures.Future()],), {})
    assert isinstance(caught.value.__cause__ or caught.value, NotAFabricFuture)


def test_a_reference_outside_a_submission_does_not_pickle() -> None:
    with pytest.raises(Exception, match="argument of a task"):
        serialize(TaskRef("t1"))
