"""Hypothesis strategies for fuzzing the fabric's entry points (HTTP bodies, ZeroMQ messages).

``values`` are random msgpack-able values; ``damaged(data)`` is ``data`` with bytes flipped,
cut or inserted. ``messages(templates)`` draws one multipart message (a list of frames):
random frames, a template message as it is, or a template with its msgpack header's fields
removed, replaced by random values (often of the same type) or added, with a frame
damaged, or with frames dropped, repeated, added or swapped. Templates are real protocol messages, so most
mutations get past the first checks and reach the code behind them.

``hostile_values`` add what no parser should pass on to a store or a timer: lone surrogates
(as JSON's ``\\ud800`` escapes make them), integers at and past the 64-bit bounds, NaN and
the infinities, maps and lists nested far too deep, and long text with control characters
(forged log lines). ``deep_json``/``deep_msgpack`` are bodies nested 100,000 deep, as bytes
(no encoder writes them).
"""

from __future__ import annotations

import functools
from typing import Any

import msgpack
from hypothesis import strategies as st

from fabric import protocol

packb = functools.partial(msgpack.packb, use_bin_type=True)

BOUNDARY_INTS = [2**63 - 1, 2**63, 2**64 - 1, -(2**63), 2**62, 2**31, -1]
"""Integers at the 64-bit bounds that msgpack still packs (past them only JSON carries them)."""
long_lines = st.integers(1000, 100_000).map(lambda n: "host\n2026-01-01 00:00:00 ERROR forged " * (n // 36 + 1))
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
           | st.text(max_size=24) | st.binary(max_size=24) | st.sampled_from(BOUNDARY_INTS) | long_lines)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8) | st.integers(-3, 3), inner, max_size=4), max_leaves=10)


surrogate_text = st.builds(lambda before, surrogate, after: before + surrogate + after, st.text(max_size=6),
                           st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800"]),
                           st.text(max_size=6))
hostile_scalars = (surrogate_text | st.sampled_from([*BOUNDARY_INTS, -(2**63) - 1, 2**64, 10**30]) | long_lines
                   | st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308]))


def _nest(depth: int, inner: Any, as_map: bool) -> Any:
    for _ in range(depth):
        inner = {"k": inner} if as_map else [inner]
    return inner


too_deep = st.builds(_nest, st.integers(30, 150), scalars, st.booleans())  # deeper: hypothesis recurses
hostile_values = st.recursive(scalars | hostile_scalars | too_deep,
                              lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=8) | surrogate_text, inner, max_size=4),
                              max_leaves=8)
deep_json = st.integers(1000, 100_000).map(lambda n: b"[" * n + b"]" * n) | st.integers(1000, 100_000).map(
    lambda n: b'{"name": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}")
deep_msgpack = st.integers(1000, 100_000).map(lambda n: b"\x81\xa1a" * n + b"\xc0")


def frames_of(message: protocol.Message) -> list[bytes]:
    return [bytes(frame) for frame in message.to_frames()]


def like(value: Any) -> st.SearchStrategy[Any]:
    """Random values of ``value``'s type: they pass type checks and reach the code behind them."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(BOUNDARY_INTS)
    if isinstance(value, float):
        return st.floats()
    if isinstance(value, str):
        return st.text(max_size=24) | long_lines
    if isinstance(value, bytes):
        return st.binary(max_size=64)
    if isinstance(value, list):  # short, or longer than most limits
        return st.lists(values if not value else like(value[0]) | values, max_size=6) | st.lists(
            st.just(value[0] if value else None), min_size=60, max_size=80)
    if isinstance(value, dict):  # the same keys with random values, or random keys
        return st.fixed_dictionaries({key: values for key in value}) | st.dictionaries(st.text(max_size=8), values,
                                                                                       max_size=4)
    return values


@st.composite
def mutated_map(draw: st.DrawFn, mapping: dict[Any, Any], replacements: st.SearchStrategy[Any] = values, *,
                fewest: int = 1, keep: tuple[str, ...] = ()) -> dict[Any, Any]:
    """``mapping`` with ``fewest`` to 3 changes: a field removed, given a random value (from
    ``replacements``) or one of its type, or a field added; fields in ``keep`` stay if others can change."""
    mapping = dict(mapping)
    for _ in range(draw(st.integers(fewest, 3))):
        keys = sorted((k for k in mapping if k not in keep), key=str) or sorted(mapping, key=str)
        action = draw(st.sampled_from(["remove", "replace", "same type", "same type", "same type", "add"]))
        if action == "add" or not keys:
            mapping[draw(st.text(max_size=8))] = draw(replacements)
            continue
        key = draw(st.sampled_from(keys))
        if action == "remove":
            mapping.pop(key)
        elif action == "replace":
            mapping[key] = draw(replacements)
        else:
            mapping[key] = draw(like(mapping[key]))
    return mapping


@st.composite
def damaged(draw: st.DrawFn, frame: bytes) -> bytes:
    if not frame:
        return draw(st.binary(max_size=16))
    at = draw(st.integers(0, len(frame) - 1))
    action = draw(st.sampled_from(["flip", "cut", "insert"]))
    if action == "flip":
        return frame[:at] + bytes([frame[at] ^ draw(st.integers(1, 255))]) + frame[at + 1:]
    if action == "cut":
        return frame[:at]
    return frame[:at] + draw(st.binary(min_size=1, max_size=8)) + frame[at:]


@st.composite
def reframed(draw: st.DrawFn, frames: list[bytes]) -> list[bytes]:
    action = draw(st.sampled_from(["drop", "repeat", "add", "swap"]))
    at = draw(st.integers(0, len(frames) - 1))
    if action == "drop" and len(frames) > 1:
        return frames[:at] + frames[at + 1:]
    if action == "repeat":
        return frames[:at + 1] + frames[at:]
    if action == "swap" and len(frames) > 1:
        return frames[::-1]
    return frames + [draw(st.binary(max_size=32))]


@st.composite
def messages(draw: st.DrawFn, templates: list[protocol.Message]) -> list[bytes]:
    """One multipart message for a socket that expects ``templates``-like messages."""
    kind = draw(st.sampled_from(["random", "template", "template", "header", "header", "header", "bytes", "frames"]))
    if kind == "random":
        return draw(st.lists(st.binary(max_size=48), min_size=1, max_size=4))
    frames = frames_of(draw(st.sampled_from(templates)))
    if kind == "header":
        header = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
        frames[0] = bytes(packb(draw(mutated_map(header, keep=("v", "t")))))
    elif kind == "bytes":
        at = draw(st.integers(0, len(frames) - 1))
        frames[at] = draw(damaged(frames[at]))
    elif kind == "frames":
        frames = draw(reframed(frames))
    return frames
