"""Data-only arguments and results between users who do not trust each other's code.

alice owns an endpoint and shares it with bob. A pickle runs code when it is loaded
(``__reduce__``), so: bob's arguments to alice's allow-listed endpoint must never be
unpickled there (the allow-list would mean nothing), and results or remote exceptions
alice's endpoint sends back must never be unpickled in bob's SDK. A real service, real
endpoint processes, a fake interchange playing a rogue endpoint.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.sdk_functions import double, echo
from tests.support.service import FakeInterchange, user

from fabric import Executor, Forbidden, RemoteExecutionError
from fabric.data_only import DATA_ONLY_HEADER, DATA_ONLY_RESULT
from fabric.errors import DataOnlyError, SerializerNotAllowed
from fabric.protocol import RESULT_OK, RESULT_REMOTE_ERROR, ResultBatch
from fabric.serialize import serialize, serialize_arguments


class RunsOnLoad:
    """Loading its pickle makes the folder ``path``: proof that the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (self.path,)


def test_an_argument_that_runs_code_when_unpickled_never_runs_on_an_allow_listed_endpoint(
        cluster: Any, tmp_path: Path) -> None:
    service = cluster.service()
    alice, bob = user(service, "alice"), user(service, "bob")
    allowed = alice.register_function(double)
    alice.share_function(allowed, users=[bob.whoami()["name"]])
    endpoint = alice.register_endpoint("lab", allowed_functions=[allowed])
    assert endpoint["data_only"] is True  # the default with an allow-list
    cluster.endpoint(endpoint, allowed_functions=[allowed])
    endpoint_id = endpoint["endpoint_id"]
    alice.share_endpoint(endpoint_id, users=[bob.whoami()["name"]])
    assert bob.get_endpoint_status(endpoint_id)["data_only"] is True
    assert [e["data_only"] for e in bob.list_endpoints()] == [True]
    marker = tmp_path / "ran"

    with Executor(endpoint_id, client=bob) as executor:
        assert executor.submit_to_registered_function(allowed, (21,)).result(TIMEOUT) == 42  # data still runs
        with pytest.raises(DataOnlyError) as refused:  # at submit, in bob's own process
            executor.submit_to_registered_function(allowed, (RunsOnLoad(marker),))
    assert refused.value.what == "arguments" and "RunsOnLoad" in str(refused.value)

    # bypassing the SDK: the service reads the payload's header byte and refuses it
    with pytest.raises(Forbidden) as forbidden:
        bob.submit_batch(endpoint_id, allowed, [pickle.dumps(((RunsOnLoad(marker),), {}))])
    assert forbidden.value.status == 403 and forbidden.value.error_type == "serializer_not_allowed"

    # a pickle the service took (the owner said data_only=False, the endpoint was not yet
    # connected to say otherwise): the endpoint's own configuration refuses it
    lax = alice.register_endpoint("lax", allowed_functions=[allowed], data_only=False)
    assert lax["data_only"] is False
    alice.share_endpoint(lax["endpoint_id"], users=[bob.whoami()["name"]])
    batch = bob.submit_batch(lax["endpoint_id"], allowed, [pickle.dumps(((RunsOnLoad(marker),), {}))])
    cluster.endpoint(lax, allowed_functions=[allowed])
    poll_until(lambda: bob.get_endpoint_status(lax["endpoint_id"])["data_only"], "the endpoint's policy reported")
    with pytest.raises(SerializerNotAllowed) as caught:
        poll_until(lambda: bob.get_task(batch.task_ids[0])["state"] == "failed", "the task refused")
        bob.get_result(batch.task_ids[0])
    assert caught.value.serializer == "pickle"
    assert not marker.exists()


def test_numpy_arrays_and_nested_containers_travel_data_only(cluster: Any) -> None:
    service = cluster.service()
    alice, bob = user(service, "alice"), user(service, "bob")
    allowed = alice.register_function(echo)
    alice.share_function(allowed, users=[bob.whoami()["name"]])
    endpoint = alice.register_endpoint("lab", allowed_functions=[allowed])
    cluster.endpoint(endpoint, allowed_functions=[allowed])
    alice.share_endpoint(endpoint["endpoint_id"], users=[bob.whoami()["name"]])
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    value = {"image": image, "labels": np.array(["cat", "dog"]), "nested": [(1, 2.5, None), {"k": b"\x00"}],
             (1, "key"): {frozenset({1}), 3 + 4j}, "big": 2**100, "scalar": np.int16(-3)}
    with Executor(endpoint["endpoint_id"], client=bob) as executor:
        args, kwargs = executor.submit_to_registered_function(allowed, (value, image[0]), {"mask": image > 5}
                                                              ).result(TIMEOUT)
    assert type(args) is tuple and set(kwargs) == {"mask"}
    back, row = args
    np.testing.assert_array_equal(row, image[0])
    assert back["image"].dtype == np.float32 and back["image"].shape == (2, 3, 4)
    np.testing.assert_array_equal(back["image"], image)
    assert back["labels"].tolist() == ["cat", "dog"] and kwargs["mask"].dtype == np.bool_
    assert back["nested"] == [(1, 2.5, None), {"k": b"\x00"}]
    assert back[(1, "key")] == {frozenset({1}), 3 + 4j} and back["big"] == 2**100
    assert back["scalar"] == -3 and back["scalar"].dtype == np.int16


def rogue_endpoint(cluster: Any, interchanges: list[FakeInterchange]) -> tuple[Any, Any, FakeInterchange, str]:
    """alice's endpoint, shared with bob, played by a fake interchange under alice's control."""
    service = cluster.service()
    alice, bob = user(service, "alice"), user(service, "bob")
    endpoint = alice.register_endpoint("rogue")
    alice.share_endpoint(endpoint["endpoint_id"], users=[bob.whoami()["name"]])
    fake = FakeInterchange(service.forwarder_address, endpoint)
    interchanges.append(fake)
    fake.register()
    poll_until(lambda: fake.pump() is not None and alice.get_endpoint_status(endpoint["endpoint_id"])[
        "status"] == "online", "the rogue endpoint online")
    return alice, bob, fake, endpoint["endpoint_id"]


def test_a_forged_pickled_result_from_an_endpoint_you_do_not_own_is_never_unpickled(
        cluster: Any, interchanges: list[FakeInterchange], tmp_path: Path) -> None:
    alice, bob, fake, endpoint_id = rogue_endpoint(cluster, interchanges)
    marker = tmp_path / "ran"
    with Executor(endpoint_id, client=bob) as executor:
        futures = [executor.submit(double, 1), executor.submit(double, 2), executor.submit(double, 3)]
        tasks = fake.wait_for_tasks(3)
        assert all(bytes(t.payload[:1]) == bytes((DATA_ONLY_RESULT,)) for t in tasks)  # asks for data back
        forged_error = msgpack.packb({"remote_type": "builtins.ValueError", "message": "boom", "traceback": "tb",
                                      "task_id": tasks[1].task_id, "exception": pickle.dumps(RunsOnLoad(marker))})
        fake.send(ResultBatch.build([(tasks[0].task_id, RESULT_OK, pickle.dumps(RunsOnLoad(marker))),
                                     (tasks[1].task_id, RESULT_REMOTE_ERROR, forged_error),
                                     (tasks[2].task_id, RESULT_OK, DATA_ONLY_HEADER + msgpack.packb(6))]))
        with pytest.raises(DataOnlyError) as refused:
            futures[0].result(TIMEOUT)
        with pytest.raises(RemoteExecutionError) as remote:
            futures[1].result(TIMEOUT)
        assert futures[2].result(TIMEOUT) == 6
    assert refused.value.serializer == "pickle"
    assert (remote.value.remote_type, remote.value.message, remote.value.exception) == ("builtins.ValueError",
                                                                                        "boom", None)
    with pytest.raises(DataOnlyError):  # the Client's own look-up decodes it data-only too
        bob.get_result(str(futures[0].task_id))
    assert not marker.exists()

    # the owner's own results stay pickles; a submitter who trusts the owner may opt in
    with Executor(endpoint_id, client=alice) as own, \
            Executor(endpoint_id, client=bob, allow_pickled_results=True) as trusting:
        mine, theirs = own.submit(double, 4), trusting.submit(double, 5)
        tasks = fake.wait_for_tasks(5)[3:]
        assert sorted(bytes(t.payload[:1]) for t in tasks) == [serialize_arguments((0,), {})[:1]] * 2
        fake.send(ResultBatch.build([(t.task_id, RESULT_OK, serialize({"pickled": [1]})) for t in tasks]))
        assert mine.result(TIMEOUT) == theirs.result(TIMEOUT) == {"pickled": [1]}
