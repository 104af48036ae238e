"""Data by reference end to end: a real service (its blob store on disk), a real endpoint
whose workers fetch into a per-node cache (a real directory), a client that uploads once."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support import TIMEOUT
from tests.support.service import user

from tests.support.sdk_functions import reversed_bytes, size_of

from fabric import Executor, PayloadTooLarge, RemoteExecutionError
from fabric import data
from fabric.serialize import serialize


@pytest.fixture
def node_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-node cache of the endpoint's workers (they inherit the environment)."""
    cache = tmp_path / "node-cache"
    monkeypatch.setenv("FABRIC_DATA_CACHE", str(cache))
    return cache


class PeakRss:
    """The largest resident size of a process, sampled in a thread while it lives."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_a_50mb_argument_for_200_tasks_is_uploaded_once_and_fetched_once_per_node(cluster: Any,
                                                                                   node_cache: Path) -> None:
    service = cluster.service(max_request_bytes=128 * 1024 * 1024)
    rss = PeakRss(service.process.pid)
    client = user(service)
    registration = client.register_endpoint("cluster")
    cluster.endpoint(registration)
    value = os.urandom(50 * 1024 * 1024)
    ref = data.put(value, client)
    assert data.put(value, client) == ref  # held already: not sent again
    with Executor(registration["endpoint_id"], client=client) as executor:
        futures = [executor.submit(size_of, ref) for _ in range(200)]
        assert [f.result(TIMEOUT) for f in futures] == [len(value)] * 200
    info = client.blob_info(ref.digest)
    assert info is not None and info["size"] == len(serialize(value)) and info["downloads"] == 1  # one node
    assert (node_cache / ref.digest).stat().st_size == info["size"]
    assert rss.stop() < 200 * 1024 * 1024, "the service held the blob in memory"


def test_large_arguments_go_by_reference_and_a_corrupt_cache_is_fetched_again(cluster: Any, node_cache: Path) -> None:
    _, client, registration = cluster.running()  # tasks' arguments are limited to 256 KiB here
    big = b"x" * (2 * 1024 * 1024)
    with Executor(registration["endpoint_id"], client=client) as executor:
        assert [executor.submit(size_of, big).result(TIMEOUT) for _ in range(3)] == [len(big)] * 3
        [digest] = [p.name for p in node_cache.iterdir() if not p.name.endswith(".lock")]
        info = client.blob_info(digest)
        assert info is not None and info["downloads"] == 1
        corrupt = node_cache / "corrupt"
        corrupt.write_bytes(b"y" * info["size"])
        os.replace(corrupt, node_cache / digest)  # a damaged cache file: never used, fetched again
        assert executor.submit(size_of, big).result(TIMEOUT) == len(big)
        assert client.blob_info(digest)["downloads"] == 2  # type: ignore[index]


def test_a_missing_blob_fails_only_the_task_that_uses_it(cluster: Any, node_cache: Path) -> None:
    _, client, registration = cluster.running()
    good = data.put(b"fine", client)
    missing = data.Ref("0" * 64, 10, client.service_url, good.capability)  # never stored, capability of another blob
    with Executor(registration["endpoint_id"], client=client) as executor:
        bad, fine = executor.submit(size_of, missing), executor.submit(size_of, good)
        error = bad.exception(TIMEOUT)
        assert isinstance(error, RemoteExecutionError) and "DataUnavailable" in str(error)
        assert fine.result(TIMEOUT) == 4


def test_an_oversized_upload_is_refused_with_the_limit_and_nothing_is_kept(cluster: Any) -> None:
    service = cluster.service(max_request_bytes=1024 * 1024)
    client = user(service)
    with pytest.raises(PayloadTooLarge) as caught:
        data.put(b"z" * (1536 * 1024), client)
    assert caught.value.limit == 1024 * 1024
    assert client.blob_info(data.digest_of(serialize(b"z" * (1536 * 1024)))) is None
    assert not [p for p in (service.data_dir / "blobs").iterdir() if p.name.startswith(".upload-")]


def test_a_large_result_of_a_task_given_a_reference_comes_back_by_reference(cluster: Any, node_cache: Path) -> None:
    _, client, registration = cluster.running()
    big = os.urandom(4 * 1024 * 1024)
    with Executor(registration["endpoint_id"], client=client) as executor:
        result = executor.submit(reversed_bytes, big).result(TIMEOUT)
    assert result == big[::-1]
    stored = client.blob_info(data.digest_of(serialize(big[::-1])))
    assert stored is not None and stored["downloads"] == 1  # uploaded by the worker, fetched by the client
