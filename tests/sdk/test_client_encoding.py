"""How the client encodes batch bodies: large compressible ones go deflated."""

from __future__ import annotations

import os
import zlib

from sdk.client import COMPRESS_FROM, compress


def test_small_bodies_go_as_they_are() -> None:
    body = b"x" * (COMPRESS_FROM - 1)
    assert compress(body) == (body, {})


def test_large_compressible_bodies_go_deflated() -> None:
    body = b"\x80\x05N." * COMPRESS_FROM
    packed, headers = compress(body)
    assert headers == {"Content-Encoding": "deflate"} and len(packed) < len(body) // 10
    assert zlib.decompress(packed) == body


def test_incompressible_bodies_go_as_they_are() -> None:
    body = os.urandom(2 * COMPRESS_FROM)
    assert compress(body) == (body, {})
