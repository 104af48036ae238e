"""An Executor whose batch reply is lost, and whose retry reaches the service only after the
batch's tasks were purged: its futures fail with ``BatchGone`` instead of waiting forever.

A real TCP proxy between the SDK and a real service process loses the reply to the first
``POST /v1/batches`` (the service stored the batch; the connection closes) and holds the
SDK's retry of it until the test has let the task finish and be purged. A FakeInterchange
holding the endpoint's real keys plays the endpoint.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.service import Api, FakeInterchange, ServiceProcess

from fabric import BatchGone, Client, Executor
from fabric.protocol import RESULT_OK, ResultBatch


def triple(x: int) -> int:
    return 3 * x


def read_message(stream: BinaryIO) -> bytes | None:
    """One HTTP/1.1 request or response (head and ``Content-Length`` body) as bytes; None at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + stream.read(length)


class LossyProxy:
    """Forwards HTTP to ``upstream``, one request at a time per connection; loses the reply to
    the first ``POST /v1/batches`` and holds later ones until ``release`` is set."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.release = threading.Event()
        self.batch_posts = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _serve(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError), client.makefile("rb") as stream:
            while (request := read_message(stream)) is not None:
                batch_post = request.startswith(b"POST /v1/batches")
                if batch_post:
                    with self._lock:
                        self.batch_posts += 1
                        first = self.batch_posts == 1
                    if not first:
                        self.release.wait(TIMEOUT)
                with socket.create_connection(self.upstream) as upstream, upstream.makefile("rb") as replies:
                    upstream.sendall(request)
                    reply = read_message(replies)
                if reply is None or (batch_post and first):
                    return  # the reply is lost: the client sees its connection close
                client.sendall(reply)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.fixture
def proxy_to(start_service: Callable[..., ServiceProcess]) -> Iterator[Callable[[ServiceProcess], LossyProxy]]:
    made: list[LossyProxy] = []

    def make(service: ServiceProcess) -> LossyProxy:
        host, port = service.url.removeprefix("http://").rsplit(":", 1)
        made.append(LossyProxy((host, int(port))))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def test_futures_of_a_batch_replayed_after_its_tasks_were_purged_fail_with_batch_gone(
        start_service: Callable[..., ServiceProcess], interchanges: list[FakeInterchange],
        proxy_to: Callable[[ServiceProcess], LossyProxy]) -> None:
    service = start_service(purge_interval=0.1, rate_limit=0)
    token = service.add_user("lossy")
    api = Api(service.url, token)
    endpoint = api.register_endpoint("cluster")
    fake = FakeInterchange(service.forwarder_address, endpoint)
    interchanges.append(fake)
    fake.register()
    poll_until(lambda: fake.pump() is not None and api.get(f"/v1/endpoints/{endpoint['endpoint_id']}").json()[
        "status"] == "online", "the endpoint online")
    proxy = proxy_to(service)
    executor = Executor(endpoint["endpoint_id"], client=Client(proxy.url, token, retry_for=2 * TIMEOUT))
    try:
        future = executor.submit(triple, 14)
        task = fake.wait_for_tasks(1)[0]  # stored and sent; its reply to the SDK is lost
        fake.send(ResultBatch.build([(task.task_id, RESULT_OK, b"42")]))
        group = executor.task_group_id
        page: Any = poll_until(lambda: (lambda p: p if p["task_ids"] else None)(api.results(group, wait=1)),
                               "the result")
        api.results(group, after=page["cursor"])  # fetched: the purger deletes the task
        poll_until(lambda: api.get(f"/v1/tasks/{task.task_id}").status == 404, "the task to be purged")
        assert not future.done()
        proxy.release.set()  # the SDK's retry of the batch reaches the service now
        error = future.exception(timeout=TIMEOUT)  # was: never resolved (201 with no task ids)
        assert isinstance(error, BatchGone) and group in str(error), error
        assert proxy.batch_posts == 2
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
