"""Pipelines: tasks that take other tasks' futures as arguments, released by the service.

A real service, two real endpoints (interchanges with managers and workers over CurveZMQ), a
client in its own process that submits a three-step pipeline (extract -> infer ->
aggregate, across both endpoints) and exits; an execution log shows what ran, and how often."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support import TIMEOUT, poll_until
from tests.support.service import ServiceProcess

from fabric import Client

EXPECTED = 2 * sum(range(30)) + 2 * sum(range(40))  # aggregate over infer(extract) of 30 and 40 values


def steps(path: Path) -> list[str]:
    return sorted(path.read_text().split()) if path.exists() else []


def two_endpoints(cluster: Any, service: ServiceProcess, token: str) -> tuple[Client, str, str]:
    client = Client(service.url, token)
    near, gpu = client.register_endpoint("near-instrument"), client.register_endpoint("gpu-cluster")
    cluster.endpoint(near)
    cluster.endpoint(gpu)
    return client, near["endpoint_id"], gpu["endpoint_id"]


def submit_and_exit(service: ServiceProcess, token: str, near: str, gpu: str, log: Path,
                    gate: Path | None = None) -> str:
    """Run a client process that submits the pipeline and exits at once; the last step's task id."""
    script = textwrap.dedent(f"""
        from fabric import Client, Executor
        from sdk.executor import wait_for_task_id
        from tests.support.sdk_functions import aggregate, extract, infer
        client = Client({service.url!r}, {token!r})
        at_instrument, at_gpus = Executor({near!r}, client=client), Executor({gpu!r}, client=client)
        gate = {str(gate) if gate else None!r}
        a = at_instrument.submit(extract, {str(log)!r}, "a", 30, gate)
        b = at_instrument.submit(extract, {str(log)!r}, "b", 40, gate)
        inferred_a = at_gpus.submit(infer, {str(log)!r}, "a", a)
        inferred_b = at_gpus.submit(infer, {str(log)!r}, "b", data=b)
        total = at_instrument.submit(aggregate, {str(log)!r}, {{"a": [inferred_a], "b": [inferred_b]}})
        print(wait_for_task_id(total))
        at_gpus.shutdown(wait=False)
        at_instrument.shutdown(wait=False)
    """)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT,
                          env=environment)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def finished(client: Client, task_id: str) -> dict[str, Any] | None:
    record = client.get_task(task_id)
    return record if record["state"] in ("success", "failed") else None


def test_a_pipeline_over_two_endpoints_finishes_after_its_client_exited(cluster: Any, tmp_path: Path) -> None:
    service = cluster.service()
    token = service.add_user("pipeline")
    client, near, gpu = two_endpoints(cluster, service, token)
    log = tmp_path / "steps"
    last = submit_and_exit(service, token, near, gpu, log)
    poll_until(lambda: finished(client, last), "the pipeline's last step to finish")
    assert client.get_result(last) == EXPECTED
    assert steps(log) == ["aggregate", "extract-a", "extract-b", "infer-a", "infer-b"]  # each step once


def test_killing_the_service_mid_pipeline_loses_no_step_and_runs_none_twice(cluster: Any, tmp_path: Path) -> None:
    service = cluster.service()
    port = int(service.url.rsplit(":", 1)[1])
    forwarder_port = int(service.forwarder_address.rsplit(":", 1)[1])
    token = service.add_user("pipeline")
    client, near, gpu = two_endpoints(cluster, service, token)
    log, gate = tmp_path / "steps", tmp_path / "gate"
    last = submit_and_exit(service, token, near, gpu, log, gate)
    assert client.get_task(last)["state"] == "waiting-for-dependencies"
    service.kill()  # the extract steps run (held at the gate); the other three wait in the store
    gate.touch()
    poll_until(lambda: len(steps(log)) == 2, "the extract steps to run while the service is down")
    service = cluster.service(port=port, forwarder_port=forwarder_port)
    poll_until(lambda: finished(client, last), "the pipeline's last step to finish")
    assert client.get_result(last) == EXPECTED
    assert steps(log) == ["aggregate", "extract-a", "extract-b", "infer-a", "infer-b"]


def test_a_failed_step_fails_its_dependents_naming_it(cluster: Any) -> None:
    from fabric import DependencyFailed, Executor, NotAFabricFuture, NotFound
    from tests.support.sdk_functions import double, fail

    service = cluster.service()
    token = service.add_user("pipeline")
    client, near, gpu = two_endpoints(cluster, service, token)
    with Executor(near, client=client) as first, Executor(gpu, client=client) as second:
        broken = first.submit(fail, "no data")
        dependent = second.submit(double, broken)
        last = first.submit(double, [dependent])
        for future in (dependent, last):
            error = future.exception(TIMEOUT)
            assert isinstance(error, DependencyFailed)
        assert dependent.exception().input_id == broken.task_id
        assert last.exception().input_id == dependent.task_id
        assert client.get_task(dependent.task_id)["state"] == "failed"
        assert first.submit(double, first.submit(double, 4)).result(TIMEOUT) == 16
        with pytest.raises(NotAFabricFuture):  # it would pickle into a future nobody ever resolves
            first.submit(double, concurrent.futures.Future())
        mine = first.submit(double, 1)
        mine.result(TIMEOUT)
    bob = Client(service.url, service.add_user("bob"))
    with Executor(bob.register_endpoint("bobs")["endpoint_id"], client=bob) as theirs:
        with pytest.raises(NotFound, match=str(mine.task_id)):  # another user's task: refused, as if unknown
            theirs.submit(double, mine).result(TIMEOUT)
