"""The data-only codec (``fabric.data_only``): what round-trips, what is refused on either
side, and that decoding never runs anything (a pickle is refused unread)."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from fabric.data_only import DATA_ONLY_HEADER, DATA_ONLY_RESULT, is_data_only, payload_serializer
from fabric.errors import DataOnlyError, SerializationError
from fabric.serialize import (deserialize, deserialize_arguments, deserialize_data, serialize, serialize_arguments,
                              serialize_data)


class RunsOnLoad:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (self.path,)


VALUES = [
    None, True, 0, -1, 2**64 - 1, -(2**63), 2**200, -(3**90), 1.5, float("inf"), "text", "", b"\x00\xff", 3 - 4j,
    [1, [2, [3]]], (1, (2, (3,))), (), {"a": {"b": [1, (2,)]}}, {1: "int key", (1, 2): "tuple key", None: 0},
    {1, 2, "x"}, frozenset({(1, 2)}), [{"deep": ({1}, frozenset(), (b"", 0j))}],
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_values_round_trip_with_their_types(value: Any) -> None:
    back = deserialize_data(serialize_data(value))
    assert back == value and type(back) is type(value)
    assert deserialize(serialize_data(value)) == value  # the general decoder knows the header too


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.zeros((0, 5)), np.array(3.5), np.array([True, False]),
    np.array(["unicode", "ü"]), np.array([b"ab", b"c"]), np.arange(6, dtype=">i8"), np.array([1 + 2j], np.complex64),
    np.array(["2020-01-01"], dtype="datetime64[ns]"), np.asfortranarray(np.arange(6).reshape(2, 3)),
    np.arange(10)[::3],
], ids=lambda a: f"{a.dtype}{a.shape}")
def test_numpy_arrays_round_trip_by_dtype_and_shape(array: np.ndarray) -> None:
    back = deserialize_data(serialize_data({"x": [array]}))["x"][0]
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back.flat[:1] = back.flat[:1]  # writable, like an unpickled array


def test_numpy_scalars_keep_their_dtype() -> None:
    for scalar in (np.float32(1.25), np.int8(-3), np.uint64(2**64 - 1), np.bool_(True)):
        back = deserialize_data(serialize_data(scalar))
        assert back == scalar and back.dtype == scalar.dtype


@pytest.mark.parametrize("value", [
    RunsOnLoad(Path("never")), np.array([1, None], dtype=object), np.zeros(2, dtype=[("a", "i4")]), print,
    collections.OrderedDict(a=1), [1, {"nested": object()}], type, Path("/"),
], ids=lambda v: type(v).__name__)
def test_what_is_not_data_is_refused_by_name(value: Any) -> None:
    with pytest.raises(DataOnlyError) as refused:
        serialize_data(value, "arguments")
    assert refused.value.what == "arguments" and refused.value.type_name
    with pytest.raises(DataOnlyError):
        serialize_arguments((value,), {}, data_only=True)


def test_a_pickle_is_refused_without_being_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for buffer in (pickle.dumps(RunsOnLoad(marker)), serialize(RunsOnLoad(marker)), b"\x02" + pickle.dumps(1),
                   bytes((DATA_ONLY_RESULT,)) + pickle.dumps(RunsOnLoad(marker))):
        with pytest.raises(DataOnlyError):
            deserialize_data(buffer)
        with pytest.raises(DataOnlyError):
            deserialize_arguments(buffer, data_only=True)
    assert not marker.exists()


def mark(code: int) -> msgpack.ExtType:
    return msgpack.ExtType(code, b"")


@pytest.mark.parametrize("value", [
    [mark(2), "|O", [1], b"\x00" * 8],  # object dtype
    [mark(2), "<f8", [2], b"\x00" * 8],  # bytes do not match the shape
    [mark(2), "[('a', 'O')]", [1], b"\x00" * 8],
    [mark(2), "<f8", [-1], b""],
    [mark(2), "<f8", [1]],  # too short
    [mark(3), "|O", b"\x00" * 8],
    [mark(4), "1", 2],  # complex of a string
    [mark(7), "12x"],  # not an integer
    [mark(5), [1]],  # a set of lists
    mark(1),  # a mark alone
    msgpack.ExtType(1, b"x"),  # a mark with a body
    [mark(99)],  # unknown mark
], ids=["object", "size", "structured", "shape", "short", "scalar", "complex", "bigint", "unhashable", "alone",
        "body", "unknown"])
def test_forged_data_only_buffers_are_refused(value: Any) -> None:
    with pytest.raises(SerializationError):
        deserialize_data(DATA_ONLY_HEADER + msgpack.packb(value))


def test_garbage_is_refused() -> None:
    with pytest.raises(SerializationError):
        deserialize_data(DATA_ONLY_HEADER + b"\xc1")


def test_deep_nesting_is_refused_not_a_crash() -> None:
    body = b"\x91" * 100_000 + b"\xc0"  # a list in a list ... 100,000 deep
    with pytest.raises(SerializationError):
        deserialize_data(DATA_ONLY_HEADER + body)


def test_arguments_carry_the_serializer_and_the_result_request_in_their_first_bytes() -> None:
    plain, data, asking = (serialize_arguments((1,), {"k": 2}, data_only=d, data_only_result=r)
                           for d, r in ((False, False), (True, False), (True, True)))
    assert payload_serializer(plain) == (0x80, False) and not is_data_only(plain)
    assert payload_serializer(data) == (DATA_ONLY_HEADER[0], False) and is_data_only(data)
    assert payload_serializer(asking) == (DATA_ONLY_HEADER[0], True) and is_data_only(asking)
    for payload in (plain, data, asking):
        assert deserialize_arguments(payload)[:2] == ((1,), {"k": 2})
    assert serialize_arguments((), {}, data_only=True) == serialize_arguments((), {}, data_only=True)  # a constant
    assert payload_serializer(b"") == (None, False)


def test_deep_nesting_is_refused_when_encoding_too() -> None:
    value: Any = ()
    for _ in range(5000):
        value = (value,)
    with pytest.raises(DataOnlyError, match="recursion limit"):
        serialize_data(value, "arguments")
