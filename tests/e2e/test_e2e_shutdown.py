"""End to end: shutting an endpoint down, in every form, leaves no process behind."""

from __future__ import annotations

import contextlib
import os

import e2e_functions as fns
import psutil
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.processes import descendants, living

from fabric import Endpoint
from fabric.errors import EndpointError, EndpointShutdown

OPTIONS = {"workers": 2, "heartbeat_period": 0.2, "heartbeat_threshold": 2.0}


def test_shutdown_waits_for_submitted_tasks_and_leaves_no_processes() -> None:
    endpoint = Endpoint(**OPTIONS)
    try:
        futures = [endpoint.submit(fns.sleep_then_return, 0.05, x) for x in range(10)]
        endpoint.wait_for_workers(timeout=TIMEOUT)
        processes = descendants()
        assert len(processes) == 4  # interchange, manager, two workers
    finally:
        endpoint.shutdown()
    assert [f.result(0) for f in futures] == list(range(10))
    assert not living(processes)
    assert not psutil.Process().children(recursive=True)
    with pytest.raises(EndpointShutdown):
        endpoint.submit(fns.square, 1)
    with pytest.raises(EndpointShutdown):
        endpoint.map(fns.square, range(3))
    endpoint.shutdown()  # a second shutdown is harmless


def test_context_manager_shuts_down_on_exit_and_on_error() -> None:
    with Endpoint(**OPTIONS) as endpoint:
        assert endpoint.submit(fns.square, 6).result(TIMEOUT) == ("square", 6, 36)
        processes = descendants()
    assert not living(processes)
    assert not psutil.Process().children(recursive=True)
    with pytest.raises(EndpointShutdown):
        endpoint.submit(fns.square, 1)

    with pytest.raises(KeyError), Endpoint(**OPTIONS) as endpoint:
        endpoint.wait_for_workers(timeout=TIMEOUT)
        processes = descendants()
        raise KeyError("user code failed inside the block")
    assert not living(processes)
    assert not psutil.Process().children(recursive=True)


def test_shutdown_without_waiting_fails_running_tasks_with_endpoint_shutdown(tmp_path) -> None:
    endpoint = Endpoint(**OPTIONS)
    marker = tmp_path / "pid"
    running = endpoint.submit(fns.record_pid_then_sleep, str(marker), TIMEOUT)
    poll_until(lambda: marker.exists(), "the task to start")
    processes = descendants()

    endpoint.shutdown(wait=False)

    with pytest.raises(EndpointShutdown):
        running.result(0)
    assert not living(processes)
    assert not psutil.Process().children(recursive=True)


def test_shutdown_cancelling_futures_cancels_queued_tasks(tmp_path) -> None:
    endpoint = Endpoint(**{**OPTIONS, "workers": 1})
    marker = tmp_path / "pid"
    running = endpoint.submit(fns.record_pid_then_sleep, str(marker), TIMEOUT)
    poll_until(lambda: marker.exists(), "the task to start")
    queued = [endpoint.submit(fns.square, x) for x in range(5)]

    endpoint.shutdown(wait=False, cancel_futures=True)

    assert all(f.cancelled() for f in queued)
    assert running.done()
    assert not psutil.Process().children(recursive=True)


def test_calls_after_shutdown_fail_without_writing_to_reused_descriptors(tmp_path) -> None:
    endpoint = Endpoint(**OPTIONS)
    assert endpoint.submit(fns.square, 2).result(TIMEOUT) == ("square", 2, 4)
    wake_fd = endpoint._wake_w
    endpoint.shutdown()

    # The endpoint closed its wake-up pipe. Open files (each takes the lowest free
    # descriptor) until one reuses the number of the pipe's write end, as any file or
    # socket the application opens later would.
    opened: list[int] = []
    try:
        while wake_fd not in opened and len(opened) < 256:
            opened.append(os.open(tmp_path / f"file-{len(opened)}", os.O_WRONLY | os.O_CREAT))
        assert wake_fd in opened
        with contextlib.suppress(EndpointError):
            endpoint.cancel_queued()
        with pytest.raises(EndpointShutdown):
            endpoint.submit(fns.square, 1)
        # Nothing may land in whatever now owns the endpoint's old descriptor.
        assert [os.fstat(fd).st_size for fd in opened] == [0] * len(opened)
        with pytest.raises(EndpointShutdown):
            endpoint.status(timeout=TIMEOUT)
        with pytest.raises(EndpointShutdown):
            endpoint.hold_manager("any", timeout=TIMEOUT)
        assert [os.fstat(fd).st_size for fd in opened] == [0] * len(opened)
    finally:
        for fd in opened:
            os.close(fd)
