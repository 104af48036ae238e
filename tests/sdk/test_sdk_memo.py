"""Memoization end to end: a real service, a real endpoint, an execution log. Memoized calls
repeated with the same arguments do not run; unmemoized ones, failures, another user's calls,
forgotten and expired results do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.service import user

from tests.support.sdk_functions import record, unless_missing

from fabric import Executor, RemoteExecutionError
from sdk.memo import memoize


def executions(path: Path) -> list[int]:
    return sorted(int(line) for line in path.read_text().split()) if path.exists() else []


def test_memoized_calls_do_not_run_again_and_hits_are_reported(cluster: Any, tmp_path: Path) -> None:
    service, alice, registration = cluster.running()
    log = tmp_path / "ran"
    endpoint = registration["endpoint_id"]
    with Executor(endpoint, client=alice, memoize=True) as memoized:
        assert [f.result(TIMEOUT) for f in [memoized.submit(record, str(log), i, 0) for i in range(5)]] == list(
            range(5))
        again = [memoized.submit(record, str(log), i, 0) for i in range(5)]
        assert [f.result(TIMEOUT) for f in again] == list(range(5))
        assert executions(log) == list(range(5))  # the repeats did not run
        record_of_hit = alice.get_task(again[0].task_id)
        assert record_of_hit["state"] == "success" and record_of_hit["memoized"] is True
        counts = alice.get_task_group(memoized.task_group_id)
        assert (counts["tasks"], counts["success"], counts["memo_hits"]) == (10, 10, 5)
    with Executor(endpoint, client=alice) as plain:  # not memoized: runs again
        assert [plain.submit(record, str(log), i, 0).result(TIMEOUT) for i in (0, 1)] == [0, 1]
        assert alice.get_task_group(plain.task_group_id)["memo_hits"] == 0
    assert executions(log) == [0, 0, 1, 1, 2, 3, 4]
    bob = user(service, "bob")
    bobs = bob.register_endpoint("bobs")
    cluster.endpoint(bobs)
    with Executor(bobs["endpoint_id"], client=bob, memoize=True) as theirs:  # another user: no hit
        assert theirs.submit(record, str(log), 3, 0).result(TIMEOUT) == 3
    assert executions(log).count(3) == 2


def test_failures_are_never_memoized_and_forget_drops_results(cluster: Any, tmp_path: Path) -> None:
    _, client, registration = cluster.running()
    log, gate = tmp_path / "ran", tmp_path / "gate"

    @memoize(ttl=3600)
    def checked(path: str, value: int) -> int:
        return unless_missing(path, value)

    with Executor(registration["endpoint_id"], client=client) as executor:
        with pytest.raises(RemoteExecutionError):
            executor.submit(checked, str(gate), 7).result(TIMEOUT)
        gate.touch()
        second = executor.submit(checked, str(gate), 7)
        assert second.result(TIMEOUT) == 7 and client.get_task(second.task_id)["memoized"] is False
        third = executor.submit(checked, str(gate), 7)
        assert third.result(TIMEOUT) == 7 and client.get_task(third.task_id)["memoized"] is True
        assert client.forget(checked) == 1
        fourth = executor.submit(checked, str(gate), 7)
        assert fourth.result(TIMEOUT) == 7 and client.get_task(fourth.task_id)["memoized"] is False
        short = Executor(registration["endpoint_id"], client=client, memoize=0.5)
        try:
            assert short.submit(record, str(log), 1, 0).result(TIMEOUT) == 1
            passed = time.monotonic() + 0.6
            poll_until(lambda: time.monotonic() > passed, "the ttl of 0.5 s to pass")
            assert short.submit(record, str(log), 1, 0).result(TIMEOUT) == 1
        finally:
            short.shutdown()
    assert executions(log) == [1, 1]
