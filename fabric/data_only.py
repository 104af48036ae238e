"""The data-only codec: values that cannot run code when decoded.

Arguments sent to an endpoint that is not the submitter's own (or that has an allow-list)
and results coming back from one are decoded by people who must not run the other side's
code. Pickle cannot promise that (``__reduce__`` runs anything on load), so these values
travel as msgpack. What msgpack lacks travels as a *marked list*: a msgpack array whose
first item is an empty extension value naming the type (one msgpack document, no nested
encoding, so a large array is copied no more than with pickle):

=====  ============================  ==================================================
mark   type                          the rest of the list
=====  ============================  ==================================================
1      ``tuple``                     the items
2      ``numpy.ndarray``             ``dtype.str``, the shape (a list), the raw bytes (C order)
3      numpy scalar (``np.float32``)  ``dtype.str``, the raw bytes
4      ``complex``                   real, imag
5      ``set``                       the items
6      ``frozenset``                 the items
7      ``int`` beyond 64 bits        its decimal digits (a string)
=====  ============================  ==================================================

Everything else msgpack knows natively: None, bool, int, float, str, bytes, list, dict
(keys of any of these types). Subclasses are refused (an ``OrderedDict`` would come back a
``dict``), and so are numpy arrays of object or structured dtype: their bytes are not data.
Decoding builds nothing but these types; numpy is imported only when an array arrives.
Nesting is bounded by msgpack's own limits (``DataOnlyError`` / ``ValueError`` past them).
A mark a forged buffer puts anywhere but first in a list decodes to an inert marker object
(checking every item of every list would cost more than it protects).
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
_MARKS = [msgpack.ExtType(code, b"") for code in range(8)]
_MAX_DTYPE = 32


def _marked(obj: Any, what: str) -> list[Any]:
    """The marked list for a value msgpack does not know, or ``DataOnlyError``."""
    kind = type(obj)
    if kind is tuple:
        return [_MARKS[_TUPLE], *obj]
    if kind is complex:
        return [_MARKS[_COMPLEX], obj.real, obj.imag]
    if kind is set or kind is frozenset:
        return [_MARKS[_SET if kind is set else _FROZENSET], *obj]
    if kind is int:  # only those msgpack cannot hold come here
        return [_MARKS[_BIGINT], str(obj)]
    if kind is bytearray or kind is memoryview:
        return bytes(obj)  # type: ignore[return-value]  # msgpack packs what default returns
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if kind is numpy.ndarray:
            _check_dtype(obj.dtype, what, kind)
            contiguous = numpy.ascontiguousarray(obj)
            raw = contiguous.reshape(-1).view(numpy.uint8).data if contiguous.size else b""  # no copy
            return [_MARKS[_NDARRAY], obj.dtype.str, list(obj.shape), raw]
        if isinstance(obj, numpy.generic):
            _check_dtype(obj.dtype, what, kind)
            return [_MARKS[_NPSCALAR], obj.dtype.str, obj.tobytes()]
    raise DataOnlyError(what, type_name=f"{kind.__module__}.{kind.__qualname__}")


def _check_dtype(dtype: Any, what: str, kind: type) -> None:
    if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
        raise DataOnlyError(what, type_name=f"{kind.__module__}.{kind.__qualname__} of dtype {dtype}")


def dumps_data(obj: Any, what: str = "value") -> bytes:
    """``obj`` as data-only msgpack (without the header byte); ``DataOnlyError`` names the
    first value that is not data (``what``: "arguments", "result"... for the message)."""
    try:
        return msgpack.packb(obj, use_bin_type=True, strict_types=True, default=lambda o: _marked(o, what))
    except DataOnlyError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:  # nested too deep, too big...
        raise DataOnlyError(what, type_name=type(obj).__name__, reason=str(exc)) from exc


class _Mark:
    """A decoded mark: only ever the first item of a marked list, turned into its value."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_DECODED_MARKS = {code: _Mark(code) for code in range(1, 8)}


def _mark(code: int, body: bytes) -> _Mark:
    mark = _DECODED_MARKS.get(code)
    if mark is None or body:
        raise ValueError(f"unknown data-only extension {code}")
    return mark


def _from_list(items: list[Any]) -> Any:
    """A marked list's value; a plain list as it is."""
    if not items or type(items[0]) is not _Mark:
        return items
    code = items[0].code
    if code == _TUPLE:
        return tuple(items[1:])
    if code == _SET:
        return set(items[1:])
    if code == _FROZENSET:
        return frozenset(items[1:])
    if code == _COMPLEX:
        _, real, imag = _exactly(items, 3)
        if not (type(real) in (int, float) and type(imag) in (int, float)):
            raise ValueError("complex parts must be numbers")
        return complex(real, imag)
    if code == _BIGINT:
        _, digits = _exactly(items, 2)
        if not isinstance(digits, str) or len(digits) > 4300 or not digits.lstrip("-").isdigit():
            raise ValueError("malformed integer")
        return int(digits)
    if code == _NDARRAY:
        _, dtype_text, shape, raw = _exactly(items, 4)
        return _array(dtype_text, shape, raw)
    _, dtype_text, raw = _exactly(items, 3)  # _NPSCALAR
    return _array(dtype_text, [], raw)[()]


def _exactly(items: list[Any], length: int) -> list[Any]:
    if len(items) != length:
        raise ValueError("malformed data-only value")
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
    value = msgpack.unpackb(body, raw=False, strict_map_key=False, ext_hook=_mark, list_hook=_from_list)
    if type(value) is _Mark:
        raise ValueError("a mark outside a marked list")
    return value


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
