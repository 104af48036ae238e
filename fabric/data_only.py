"""The data-only codec: values that cannot run code when decoded.

Arguments sent to an endpoint that is not the submitter's own (or that has an allow-list)
and results coming back from one are decoded by people who must not run the other side's
code. Pickle cannot promise that (``__reduce__`` runs anything on load), so these values
travel as msgpack, with extension types for what msgpack lacks:

=====  ============================  ==================================================
code   type                          body (msgpack)
=====  ============================  ==================================================
1      ``tuple``                     the items, as a list
2      ``numpy.ndarray``             ``[dtype.str, shape, raw bytes (C order)]``
3      numpy scalar (``np.float32``)  ``[dtype.str, raw bytes]``
4      ``complex``                   ``[real, imag]``
5      ``set``                       the items, as a list
6      ``frozenset``                 the items, as a list
7      ``int`` beyond 64 bits        its decimal digits
=====  ============================  ==================================================

Everything else msgpack knows natively: None, bool, int, float, str, bytes, list, dict
(keys of any of these types). Subclasses are refused (an ``OrderedDict`` would come back a
``dict``), and so are numpy arrays of object or structured dtype: their bytes are not data.
Decoding builds nothing but these types; numpy is imported only when an array arrives.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack

from fabric.errors import DataOnlyError

DATA_ONLY_HEADER = b"\x05"
"""The strategy header byte of a data-only buffer (``fabric.serialize.DataOnly``)."""
DATA_ONLY_RESULT = 0x06
"""The envelope byte before an arguments buffer: encode this task's result data-only."""
SERIALIZER_NAMES = {0x80: "pickle", 0x02: "dill", 0x03: "dill (code)", 0x04: "source code", 0x05: "data-only"}

_TUPLE, _NDARRAY, _NPSCALAR, _COMPLEX, _SET, _FROZENSET, _BIGINT = range(1, 8)
_MAX_DTYPE = 32
MAX_DEPTH = 100
"""Extensions (tuples, sets...) nest at most this deep: each level is a nested msgpack call,
and C stack, not Python's recursion limit, would run out first."""


def _pack(obj: Any, what: str, depth: int = 0) -> bytes:
    if depth > MAX_DEPTH:
        raise DataOnlyError(what, type_name=type(obj).__name__, reason=f"nested more than {MAX_DEPTH} deep")
    return msgpack.packb(obj, use_bin_type=True, strict_types=True, default=lambda o: _extension(o, what, depth + 1))


def _extension(obj: Any, what: str, depth: int) -> msgpack.ExtType:
    """The extension for a value msgpack does not know, or ``DataOnlyError``."""
    kind = type(obj)
    if kind is tuple:
        return msgpack.ExtType(_TUPLE, _pack(list(obj), what, depth))
    if kind is complex:
        return msgpack.ExtType(_COMPLEX, _pack([obj.real, obj.imag], what, depth))
    if kind is set or kind is frozenset:
        return msgpack.ExtType(_SET if kind is set else _FROZENSET, _pack(list(obj), what, depth))
    if kind is int:  # only those msgpack cannot hold come here
        return msgpack.ExtType(_BIGINT, str(obj).encode())
    if kind is bytearray or kind is memoryview:
        return bytes(obj)  # type: ignore[return-value]  # msgpack packs what default returns
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if kind is numpy.ndarray:
            _check_dtype(obj.dtype, what, kind)
            return msgpack.ExtType(_NDARRAY, _pack([obj.dtype.str, list(obj.shape),
                                                    numpy.ascontiguousarray(obj).tobytes()], what, depth))
        if isinstance(obj, numpy.generic):
            _check_dtype(obj.dtype, what, kind)
            return msgpack.ExtType(_NPSCALAR, _pack([obj.dtype.str, obj.tobytes()], what, depth))
    raise DataOnlyError(what, type_name=f"{kind.__module__}.{kind.__qualname__}")


def _check_dtype(dtype: Any, what: str, kind: type) -> None:
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise DataOnlyError(what, type_name=f"{kind.__module__}.{kind.__qualname__} of dtype {dtype}")


def dumps_data(obj: Any, what: str = "value") -> bytes:
    """``obj`` as data-only msgpack (without the header byte); ``DataOnlyError`` names the
    first value that is not data (``what``: "arguments", "result"... for the message)."""
    try:
        return _pack(obj, what)
    except DataOnlyError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:  # too deep, too big...
        raise DataOnlyError(what, type_name=type(obj).__name__, reason=str(exc)) from exc


def _unpack(body: bytes | memoryview, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"data nested more than {MAX_DEPTH} deep")
    return msgpack.unpackb(body, raw=False, strict_map_key=False,
                           ext_hook=lambda code, data: _from_extension(code, data, depth + 1))


def _from_extension(code: int, body: bytes, depth: int) -> Any:
    if code == _TUPLE:
        return tuple(_list(body, depth))
    if code == _COMPLEX:
        real, imag = _list(body, depth, 2)
        if not (isinstance(real, (int, float)) and isinstance(imag, (int, float))):
            raise ValueError("complex parts must be numbers")
        return complex(real, imag)
    if code == _SET:
        return set(_list(body, depth))
    if code == _FROZENSET:
        return frozenset(_list(body, depth))
    if code == _BIGINT:
        if len(body) > 4300 or not body.lstrip(b"-").isdigit():
            raise ValueError("malformed integer")
        return int(body)
    if code == _NDARRAY:
        return _array(*_list(body, depth, 3))
    if code == _NPSCALAR:
        dtype_text, raw = _list(body, depth, 2)
        return _array(dtype_text, [], raw)[()]
    raise ValueError(f"unknown data-only extension {code}")


def _list(body: bytes, depth: int, length: int | None = None) -> list[Any]:
    items = _unpack(body, depth)
    if not isinstance(items, list) or (length is not None and len(items) != length):
        raise ValueError("malformed data-only extension")
    return items


def _array(dtype_text: Any, shape: Any, raw: Any) -> Any:
    import numpy

    if not isinstance(dtype_text, str) or len(dtype_text) > _MAX_DTYPE or not isinstance(raw, bytes):
        raise ValueError("malformed numpy array")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError("malformed numpy array shape")
    dtype = numpy.dtype(dtype_text)
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise ValueError(f"numpy dtype {dtype_text!r} is not data")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw):
        raise ValueError("numpy array bytes do not match its dtype and shape")
    return numpy.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def loads_data(body: bytes | memoryview) -> Any:
    """The value of a ``dumps_data`` buffer; malformed input raises ``ValueError``."""
    return _unpack(body)


def serializer_name(header: int | None) -> str:
    """A strategy header byte in words (for messages)."""
    return "nothing" if header is None else SERIALIZER_NAMES.get(header, f"unknown serializer 0x{header:02x}")


def payload_serializer(payload: bytes | memoryview) -> tuple[int | None, bool]:
    """``(strategy header byte, data-only result asked)`` of an arguments buffer, read from
    its first bytes only (brokers check a policy this way without decoding anything)."""
    view = memoryview(payload)
    if not view:
        return None, False
    if view[0] == DATA_ONLY_RESULT:
        return (view[1] if len(view) > 1 else None), True
    return view[0], False


def is_data_only(payload: bytes | memoryview) -> bool:
    """Whether an arguments buffer is data-only (its header byte; nothing is decoded)."""
    return payload_serializer(payload)[0] == DATA_ONLY_HEADER[0]
