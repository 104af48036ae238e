"""Compressed request bodies through a real service process: gzip and deflate are decoded,
with the output capped (a zip bomb is 413, never a memory blow-up); anything else is refused."""

from __future__ import annotations

import gzip
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from tests.support.service import Api, ServiceProcess

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path_factory.mktemp("compression"), max_request_bytes=LIMIT,
                             max_task_bytes=LIMIT, rate_limit=0)
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def api(service: ServiceProcess) -> Api:
    return Api(service.url, service.add_user(f"user-{uuid.uuid4().hex[:6]}"))


@pytest.fixture(scope="module")
def batch(api: Api) -> bytes:
    endpoint = api.register_endpoint("laptop")
    function_id = api.register_function(b"body")
    return msgpack.packb({"endpoint_id": endpoint["endpoint_id"], "function_id": function_id,
                          "args": [b"x" * 1000] * 100}, use_bin_type=True)  # 100 KB, compresses well


def post(api: Api, body: bytes, encoding: str | None) -> Any:
    headers = {"Content-Encoding": encoding} if encoding is not None else {}
    return api.post("/v1/batches", body=body, content_type="application/msgpack", headers=headers)


@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress), ("GZip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress),
    ("identity", lambda body: body), (None, lambda body: body)])
def test_compressed_batches_are_accepted(api: Api, batch: bytes, encoding: str | None, compress: Any) -> None:
    body = compress(batch)
    reply = post(api, body, encoding)
    assert reply.status == 201, reply
    assert len(reply.json()["task_ids"]) == 100
    assert encoding in (None, "identity") or len(body) < len(batch) // 10


def test_a_zip_bomb_is_refused_without_inflating_it(api: Api) -> None:
    bomb = gzip.compress(bytes(200 * 1024 * 1024), compresslevel=9)  # 200 MB of zeros in ~200 KB
    assert len(bomb) < LIMIT
    reply = post(api, bomb, "gzip")
    assert reply.status == 413 and reply.error_type() == "payload_too_large", reply
    assert reply.json()["error"]["limit"] == LIMIT
    deflated = zlib.compress(msgpack.packb({"args": [bytes(LIMIT)]}))  # just past the limit once decoded
    assert post(api, deflated, "deflate").status == 413


@pytest.mark.parametrize("body, encoding", [
    (b"definitely not gzip", "gzip"),
    (gzip.compress(b"\x80" * 1000)[:-30], "gzip"),  # truncated
    (gzip.compress(b"\x80") + b"trailing", "gzip"),
    (zlib.compress(b"\x80")[:-1], "deflate"),
    (gzip.compress(b"\x80"), "deflate"),  # gzip data labelled as zlib
    (zlib.compress(b"not msgpack \xc1"), "deflate"),  # decodes, then is not a batch
])
def test_corrupt_compressed_bodies_are_bad_requests(api: Api, body: bytes, encoding: str) -> None:
    reply = post(api, body, encoding)
    assert reply.status == 400 and reply.error_type() == "bad_request", reply


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_unknown_encodings_are_unsupported_media(api: Api, batch: bytes, encoding: str) -> None:
    reply = post(api, batch, encoding)
    assert reply.status == 415 and reply.error_type() == "unsupported_media_type", reply
    paths = api.get("/v1/openapi.json").json()["paths"]
    assert "415" in paths["/v1/batches"]["post"]["responses"]


def test_json_bodies_may_be_compressed_too(api: Api) -> None:
    body = gzip.compress(b'{"name": "compressed"}')
    reply = api.post("/v1/endpoints", body=body, content_type="application/json", headers={"Content-Encoding": "gzip"})
    assert reply.status == 201 and reply.json()["name"] == "compressed", reply
