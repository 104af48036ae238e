"""Serialization of functions, arguments and results.

Every serialized buffer starts with a one-byte *strategy header* naming how the rest was
made, so a reader never guesses and new strategies can be added without breaking old
buffers:

==========  ==================  ===================================================
header      strategy            used for
==========  ==================  ===================================================
``0x80``    ``PickleData``      data that the standard library pickles (fast path);
                                the header is pickle's own PROTO opcode, so a large
                                argument or result is never copied to prepend one
``0x02``    ``DillData``        data that needs dill (lambdas, ``__main__`` classes)
``0x03``    ``DillCode``        functions (dill: by reference if importable, else by value)
``0x04``    ``SourceCode``      functions dill cannot handle: their source text, re-executed
``0x10``    ``WithInputs``      arguments with their inputs' results, made by the service for a
                                task with dependencies (``fabric.dependencies``, registered
                                when that module is imported, as the worker does)
==========  ==================  ===================================================

A function's id is the BLAKE2b-128 hash of its serialized body, so registering the same
function twice is free and every hop caches bodies by id.

Only workers (and the SDK, for results) call ``deserialize``; the interchange, manager
and service treat these buffers as opaque bytes.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import pickle
import textwrap
from collections.abc import Callable
from typing import Any, ClassVar

import dill

from fabric.errors import SerializationError

logger = logging.getLogger(__name__)

_MAIN_MARKER = b"__main__"


class Strategy:
    """One way of turning objects into bytes; subclasses register by their header byte."""

    header: ClassVar[bytes]
    registry: ClassVar[dict[int, type[Strategy]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Strategy.registry[cls.header[0]] = cls

    @staticmethod
    def dumps(obj: Any) -> bytes:
        raise NotImplementedError

    @staticmethod
    def loads(body: memoryview) -> Any:
        raise NotImplementedError


class PickleData(Strategy):
    """Plain pickle; its first byte (the PROTO opcode, 0x80) doubles as the header."""

    header = b"\x80"

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=5)

    @staticmethod
    def loads(body: memoryview) -> Any:
        return pickle.loads(body)


class DillData(Strategy):
    header = b"\x02"

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return dill.dumps(obj, protocol=5)

    @staticmethod
    def loads(body: memoryview) -> Any:
        return dill.loads(body)


class DillCode(Strategy):
    header = b"\x03"

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return dill.dumps(obj, protocol=5, recurse=True)

    @staticmethod
    def loads(body: memoryview) -> Any:
        return dill.loads(body)


class SourceCode(Strategy):
    """The function's source text; the worker executes it and takes the function by name."""

    header = b"\x04"

    @staticmethod
    def dumps(obj: Any) -> bytes:
        name = getattr(obj, "__name__", "")
        if not name.isidentifier():
            raise SerializationError(f"{obj!r} has no name to find it by in its source")
        source = textwrap.dedent(inspect.getsource(obj))
        return f"{name}\n{source}".encode()

    @staticmethod
    def loads(body: memoryview) -> Any:
        name, _, source = bytes(body).decode().partition("\n")
        namespace: dict[str, Any] = {"__name__": "__fabric_source__"}
        exec(compile(source, f"<fabric source of {name}>", "exec"), namespace)  # noqa: S102
        return namespace[name]


_ATOMS = frozenset((bytes, bytearray, str, int, float, complex, bool, type(None)))


def _plain(obj: Any, depth: int = 3) -> bool:
    """True for built-in data that cannot refer to ``__main__`` (small containers only),
    so a large argument or result need not be scanned for the marker."""
    kind = type(obj)
    if kind in _ATOMS:
        return True
    if depth == 0 or kind not in (tuple, list, dict) or len(obj) > 16:
        return False
    items = [*obj.keys(), *obj.values()] if kind is dict else obj
    return all(_plain(item, depth - 1) for item in items)


def serialize(obj: Any) -> bytes:
    """Serialize data (arguments or a result): stdlib pickle when it can, else dill."""
    try:
        body = pickle.dumps(obj, protocol=5)
    except Exception:  # noqa: BLE001 - any pickling failure means "try dill"
        body = b""
    if body and (_plain(obj) or _MAIN_MARKER not in body):
        return body  # starts with PickleData.header
    try:
        return DillData.header + DillData.dumps(obj)
    except Exception as exc:
        raise SerializationError(f"cannot serialize {type(obj).__name__}: {exc}") from exc


def deserialize(buffer: bytes | memoryview) -> Any:
    """Rebuild an object from ``serialize`` or ``serialize_function`` output."""
    view = memoryview(buffer)
    if not view:
        raise SerializationError("empty buffer")
    strategy = Strategy.registry.get(view[0])
    if strategy is None:
        raise SerializationError(f"unknown serialization strategy 0x{view[0]:02x}")
    try:
        return strategy.loads(view if strategy is PickleData else view[1:])
    except Exception as exc:
        raise SerializationError(f"cannot deserialize ({strategy.__name__}): {exc}") from exc


def function_id(body: bytes) -> str:
    """The id of a serialized function: the hex BLAKE2b-128 of its body."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def serialize_function(fn: Callable[..., Any]) -> tuple[str, bytes]:
    """Serialize a function with the first strategy that works; returns ``(id, body)``."""
    if not callable(fn):
        raise SerializationError(f"{fn!r} is not callable")
    errors = []
    for strategy in (DillCode, SourceCode):
        try:
            body = strategy.header + strategy.dumps(fn)
        except Exception as exc:  # noqa: BLE001 - fall through to the next strategy
            errors.append(f"{strategy.__name__}: {exc}")
            continue
        return function_id(body), body
    raise SerializationError(f"cannot serialize function {fn!r}: " + "; ".join(errors))


EMPTY_ARGUMENTS = serialize(((), {}))
"""The serialized ``(args, kwargs)`` of a call without arguments, made once."""


def serialize_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Serialize a call's arguments; calls without arguments share one constant buffer."""
    if not args and not kwargs:
        return EMPTY_ARGUMENTS
    return serialize((args, kwargs))
