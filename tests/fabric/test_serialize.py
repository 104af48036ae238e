"""Unit tests for fabric.serialize: strategy headers, fallbacks, function ids, failures."""

from __future__ import annotations

import functools
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric import serialize as serialize_module
from fabric.errors import SerializationError
from fabric.serialize import (EMPTY_ARGUMENTS, DillCode, DillData, PickleData, SourceCode, Strategy, deserialize,
                              function_id, serialize, serialize_arguments, serialize_function)

PROPERTY = settings(max_examples=60, deadline=None)


def add(a: int, b: int) -> int:
    return a + b


def multiply(a: int, b: int) -> int:
    return a * b


def uses_a_module(values: list[float]) -> float:
    import statistics

    return statistics.mean(values)


def make_adder(n: int) -> Any:
    def adder(x: int) -> int:
        return x + n

    return adder


class Point:
    """An importable class: pickles by reference."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


def main_like_class() -> type:
    """A class that claims to live in ``__main__`` (as in a notebook or a script)."""
    return type("Interactive", (), {"__module__": "__main__", "value": 42, "double": lambda self: 2 * self.value})


# --- data ----------------------------------------------------------------------------------------

data_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
    | st.complex_numbers(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=5) | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=5)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=5)
    ),
    max_leaves=20,
)


@PROPERTY
@given(data_values)
def test_data_round_trips(value: Any) -> None:
    assert deserialize(serialize(value)) == value


@PROPERTY
@given(data_values.filter(lambda v: "__main__" not in repr(v)))
def test_plain_data_takes_the_pickle_fast_path(value: Any) -> None:
    buffer = serialize(value)
    assert buffer[:1] == PickleData.header  # pickle's own PROTO opcode: no copy to prepend a header
    assert pickle.loads(buffer) == value


@pytest.mark.parametrize(
    "value",
    [None, 0, -1, 2**100, 1.5, "text", b"bytes", [1, "a"], (1, 2), {"k": [1, 2]}, {1, 2}, Point(1, 2),
     ValueError("boom"), range(3), bytearray(b"xy")],
    ids=repr,
)
def test_examples_round_trip_on_the_fast_path(value: Any) -> None:
    buffer = serialize(value)
    assert buffer[:1] == PickleData.header
    result = deserialize(buffer)
    if isinstance(value, BaseException):
        assert type(result) is type(value) and result.args == value.args
    else:
        assert result == value


def test_text_mentioning_main_still_round_trips() -> None:
    value = {"module": "__main__", "data": b"__main__"}
    assert deserialize(serialize(value)) == value


def test_lambda_falls_back_to_dill() -> None:
    buffer = serialize(lambda x: x * 3)
    assert buffer[:1] == DillData.header
    assert deserialize(buffer)(5) == 15


def test_main_class_instance_falls_back_to_dill() -> None:
    cls = main_like_class()
    buffer = serialize(cls())
    assert buffer[:1] == DillData.header
    rebuilt = deserialize(buffer)
    assert rebuilt.value == 42
    assert rebuilt.double() == 84


def test_data_holding_a_closure_falls_back_to_dill() -> None:
    buffer = serialize({"callback": make_adder(10), "values": [1, 2]})
    assert buffer[:1] == DillData.header
    rebuilt = deserialize(buffer)
    assert rebuilt["callback"](1) == 11
    assert rebuilt["values"] == [1, 2]


def test_unserializable_data_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match="generator"):
        serialize(x for x in range(3))


def test_deserialize_accepts_memoryviews_and_bytearrays() -> None:
    buffer = serialize([1, 2, 3])
    assert deserialize(memoryview(buffer)) == [1, 2, 3]
    assert deserialize(bytearray(buffer)) == [1, 2, 3]
    framed = b"junk" + buffer + b"junk"
    assert deserialize(memoryview(framed)[4:-4]) == [1, 2, 3]


# --- arguments ---------------------------------------------------------------------------------


def test_no_arguments_share_one_constant_buffer() -> None:
    assert serialize_arguments((), {}) is EMPTY_ARGUMENTS
    assert deserialize(EMPTY_ARGUMENTS) == ((), {})


@PROPERTY
@given(st.lists(data_values, max_size=4).map(tuple), st.dictionaries(st.text(max_size=5), data_values, max_size=3))
def test_arguments_round_trip(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert deserialize(serialize_arguments(args, kwargs)) == (args, kwargs)


def test_arguments_with_a_lambda_round_trip() -> None:
    args, kwargs = deserialize(serialize_arguments((lambda: 7,), {"n": 1}))
    assert args[0]() == 7
    assert kwargs == {"n": 1}


# --- functions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (add, (2, 3), 5),
        (uses_a_module, ([1.0, 2.0, 3.0],), 2.0),
        (lambda x: x ** 2, (7,), 49),
        (make_adder(5), (1,), 6),
        (functools.partial(multiply, 4), (3,), 12),
        (len, ("abc",), 3),
    ],
    ids=["module-function", "imports-inside", "lambda", "closure", "partial", "builtin"],
)
def test_functions_round_trip(fn: Any, args: tuple[Any, ...], expected: Any) -> None:
    fid, body = serialize_function(fn)
    assert body[:1] == DillCode.header
    assert fid == function_id(body)
    assert deserialize(body)(*args) == expected


def test_function_id_is_a_blake2b_128_hex_digest() -> None:
    fid, _ = serialize_function(add)
    assert len(fid) == 32
    int(fid, 16)


@pytest.mark.parametrize("fn", [add, lambda x: x + 1, make_adder(3)], ids=["module-function", "lambda", "closure"])
def test_function_id_is_stable_for_the_same_function(fn: Any) -> None:
    assert serialize_function(fn) == serialize_function(fn)


def test_function_ids_differ_for_different_functions() -> None:
    ids = {
        serialize_function(fn)[0]
        for fn in (add, multiply, lambda x: x + 1, lambda x: x + 2, make_adder(1), make_adder(2))
    }
    assert len(ids) == 6


def test_function_id_is_the_hash_of_the_body() -> None:
    assert function_id(b"abc") == function_id(b"abc")
    assert function_id(b"abc") != function_id(b"abd")


def test_non_callable_is_refused() -> None:
    with pytest.raises(SerializationError):
        serialize_function(42)  # type: ignore[arg-type]


@pytest.fixture
def dill_code_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(obj: Any) -> bytes:
        raise RuntimeError("dill cannot do this one")

    monkeypatch.setattr(DillCode, "dumps", staticmethod(refuse))


@pytest.mark.usefixtures("dill_code_fails")
def test_function_falls_back_to_source_code() -> None:
    fid, body = serialize_function(add)
    assert body[:1] == SourceCode.header
    assert fid == function_id(body)
    rebuilt = deserialize(body)
    assert rebuilt is not add
    assert rebuilt(20, 22) == 42


@pytest.mark.usefixtures("dill_code_fails")
def test_source_code_fallback_handles_nested_definitions() -> None:
    """Indented source (a function defined inside another) is dedented before it runs."""
    def local_square(x: int) -> int:
        return x * x

    rebuilt = deserialize(serialize_function(local_square)[1])
    assert rebuilt(9) == 81


@pytest.mark.usefixtures("dill_code_fails")
def test_source_code_fallback_function_id_is_stable() -> None:
    assert serialize_function(add)[0] == serialize_function(add)[0]
    assert serialize_function(add)[0] != serialize_function(multiply)[0]


@pytest.mark.usefixtures("dill_code_fails")
def test_source_code_fallback_for_a_lambda_is_loadable_or_refused() -> None:
    """A body that serialize_function hands out must deserialize; otherwise it must refuse.

    ``SourceCode`` looks the function up by ``__name__``, which for a lambda is ``<lambda>``:
    no such name exists in the executed source, so the body is unloadable on every worker.
    """
    square = lambda x: x * x  # noqa: E731 - the lambda is the point
    try:
        _, body = serialize_function(square)
    except SerializationError:
        return
    assert deserialize(body)(4) == 16


@pytest.mark.usefixtures("dill_code_fails")
def test_function_without_source_raises_serialization_error() -> None:
    namespace: dict[str, Any] = {}
    exec("def generated(x):\n    return x\n", namespace)  # noqa: S102 - no source file on purpose
    with pytest.raises(SerializationError) as excinfo:
        serialize_function(namespace["generated"])
    assert "DillCode" in str(excinfo.value)
    assert "SourceCode" in str(excinfo.value)


# --- buffers that cannot be deserialized --------------------------------------------------------------


@pytest.mark.parametrize("buffer", [b"", memoryview(b""), bytearray()], ids=["bytes", "memoryview", "bytearray"])
def test_empty_buffer_raises(buffer: Any) -> None:
    with pytest.raises(SerializationError, match="empty"):
        deserialize(buffer)


@pytest.mark.parametrize("header", [0x00, 0x05, 0x7F, 0x81, 0xFF])
def test_unknown_strategy_raises(header: int) -> None:
    with pytest.raises(SerializationError, match="strategy"):
        deserialize(bytes([header]) + pickle.dumps(1))


def test_strategy_registry_holds_exactly_the_documented_headers() -> None:
    import fabric.dependencies  # noqa: F401 - registers WithInputs, as the worker does

    assert {h: s.__name__ for h, s in Strategy.registry.items()} == {
        0x80: "PickleData", 0x02: "DillData", 0x03: "DillCode", 0x04: "SourceCode", 0x10: "WithInputs"}


@pytest.mark.parametrize(
    "buffer",
    [
        b"\x80", b"\x80not a pickle", b"\x02", b"\x02\x80\x05garbage", b"\x03", b"\x03\x00\x01\x02",
        b"\x04", b"\x04\xff\xfe\xfd", b"\x04name\ndef name(:\n", b"\x04missing\nx = 1\n", b"\x04\n",
        b"\x04f\nraise ValueError('at import')\n",
    ],
    ids=repr,
)
def test_corrupt_buffer_raises_serialization_error(buffer: bytes) -> None:
    with pytest.raises(SerializationError):
        deserialize(buffer)


def test_pickle_of_a_missing_class_raises_serialization_error() -> None:
    buffer = PickleData.header + pickle.dumps(Point(1, 2)).replace(b"Point", b"Pnint")
    with pytest.raises(SerializationError):
        deserialize(buffer)


VALID_BUFFERS = [
    lambda: serialize([1, "two", 3.0]), lambda: serialize({"a": (1, 2)}), lambda: serialize(lambda: 1),
    lambda: serialize_function(add)[1], lambda: serialize_function(make_adder(2))[1],
]


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(VALID_BUFFERS), st.data())
def test_truncated_buffers_raise_only_serialization_error(make_buffer: Any, data: st.DataObject) -> None:
    buffer = make_buffer()
    cut = data.draw(st.integers(1, len(buffer) - 1), label="cut")
    try:
        deserialize(buffer[:cut])
    except SerializationError:
        pass


def test_serialize_module_exports_strategies_by_header() -> None:
    for strategy in (PickleData, DillData, DillCode, SourceCode):
        assert Strategy.registry[strategy.header[0]] is strategy
        assert getattr(serialize_module, strategy.__name__) is strategy


def test_plain_data_skips_the_main_scan_and_anything_else_does_not() -> None:
    from fabric.serialize import _plain

    assert _plain(((b"x" * 100_000, 1, "s", None), {"k": 2.5}))
    assert not _plain(((Point(1, 2),), {}))
    assert not _plain({Point: 1})  # keys count too
    assert not _plain([[[[1]]]])  # deeper than it looks: scanned instead
    assert not _plain(list(range(17)))  # large containers are scanned instead
