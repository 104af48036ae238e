"""Text and numbers another process reported, made safe to log and to store.

An endpoint (or a manager, a worker) may report anything in a string field: newlines that
forge log lines, terminal escapes, a megabyte of hostname. ``printable`` is what may be
written to a log line or a store column: at most ``limit`` characters of it, every
character that is not printable (newlines, tabs, escapes, line separators, surrogates)
written as its Python escape (``\\n``, ``\\x1b``, ``\\u2028``), and how much was cut.
``fabric.protocol`` refuses messages whose fields are out of bounds (``check_field``:
``MAX_TEXT`` characters, 64-bit integers, or a message's own limits) before anything reads
them. (Task ids are only checked to be scalars there, which is all the hot path needs; the
service takes results only for task ids of its own form.)
"""

from __future__ import annotations

from typing import Any

from fabric.errors import ProtocolError

MAX_TEXT = 4096
"""The most characters any string field of a protocol message may have."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The integers a protocol message may carry (what a store column or a C long holds)."""
LOGGED = 200
"""Characters of a reported string written to a log line (``printable``'s default)."""


def printable(value: object, limit: int = LOGGED) -> str:
    """``value`` as one bounded, printable line (see the module docstring)."""
    text = value if isinstance(value, str) else str(value)
    shown = text[:limit]
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in shown)
    if len(text) > limit:
        shown += f"...({len(text) - limit} more characters)"
    return shown


def check_field(tag: str, name: str, value: Any, limit: int | tuple[int, int] | None = None) -> None:
    """``ProtocolError`` unless a header field is within ``MAX_TEXT`` characters or 64 bits,
    and within its own ``limit`` (a string's most characters, an integer's (low, high))."""
    kind = type(value)
    if kind is str:
        most = limit if isinstance(limit, int) else MAX_TEXT
        if len(value) > most:
            raise ProtocolError(f"{tag}: field {name!r} has {len(value)} characters, more than {most}")
    elif kind is int:
        low, high = limit if isinstance(limit, tuple) else (INT64_MIN, INT64_MAX)
        if not low <= value <= high:
            raise ProtocolError(f"{tag}: field {name!r} is out of range ({low} to {high})")
