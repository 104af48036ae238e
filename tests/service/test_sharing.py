"""Sharing and allow-lists end to end: a real service, a real endpoint process, the SDK.

alice owns an endpoint and functions; bob reaches them through a group or by name, carol
through nothing (later: a public endpoint). Allow-lists are checked by the service at
submit and again by the endpoint before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support import TIMEOUT
from tests.support.service import user

from tests.support.sdk_functions import double, fail, record

from fabric import Executor, Forbidden, FunctionNotAllowed, InvalidRequest, NotFound
from fabric.serialize import serialize_function


def test_a_shared_endpoint_and_function_run_other_users_tasks(cluster: Any) -> None:
    service, alice, registration = cluster.running()
    endpoint_id = registration["endpoint_id"]
    bob, carol = user(service, "bob"), user(service, "carol")
    alice_name, bob_name = alice.whoami()["name"], bob.whoami()["name"]
    function_id = alice.register_function(double)
    team = alice.create_group("team", [bob_name])
    assert sorted(team["members"]) == sorted([alice_name, bob_name]) and team["role"] == "owner"
    assert alice.share_endpoint(endpoint_id, groups=[team["group_id"]])["groups"] == [team["group_id"]]
    assert alice.share_function(function_id, users=[bob_name]) == {"public": False, "users": [bob_name],
                                                                   "groups": []}
    assert [(e["endpoint_id"], e["access"], e["owner"]) for e in bob.list_endpoints()] == [
        (endpoint_id, "shared", alice_name)]
    assert [(f["function_id"], f["access"]) for f in bob.list_functions()] == [(function_id, "shared")]
    assert bob.list_groups()[0]["role"] == "member"
    status = bob.get_endpoint_status(endpoint_id)
    assert status["access"] == "shared" and status["hostname"] is None  # the host is the owner's business
    assert carol.list_endpoints() == [] and carol.list_functions() == []

    with Executor(endpoint_id, client=bob) as executor:
        shared = executor.submit_to_registered_function(function_id, (21,))
        own = executor.submit(lambda x: x + 1, 1)  # bob's own function on alice's endpoint
        assert (shared.result(TIMEOUT), own.result(TIMEOUT)) == (42, 2)
    assert shared.task_id is not None
    assert bob.get_task(shared.task_id)["state"] == "success"
    with pytest.raises(NotFound):  # bob's tasks are bob's, whoever owns the endpoint
        alice.get_task(shared.task_id)

    with Executor(endpoint_id, client=carol) as executor:
        with pytest.raises(NotFound):
            executor.submit(double, 1).result(TIMEOUT)
        with pytest.raises(NotFound):
            executor.submit_to_registered_function(function_id, (1,)).result(TIMEOUT)

    for change in (lambda: bob.share_endpoint(endpoint_id, public=True), lambda: bob.delete_function(function_id),
                   lambda: bob.set_allowed_functions(endpoint_id, None), lambda: bob.delete_group(team["group_id"])):
        with pytest.raises(Forbidden):  # only an owner changes what it owns
            change()

    bob.remove_group_member(team["group_id"], bob_name)  # bob leaves: the endpoint is gone for him
    with pytest.raises(NotFound):
        bob.get_endpoint_status(endpoint_id)
    assert alice.get_group(team["group_id"])["members"] == [alice_name]

    alice.share_endpoint(endpoint_id, public=True)
    with Executor(endpoint_id, client=carol) as executor:
        assert executor.submit(double, 4).result(TIMEOUT) == 8
    assert carol.get_endpoint_status(endpoint_id)["access"] == "public"
    assert carol.list_endpoints() == []  # public endpoints are reached by id, not listed

    alice.share_endpoint(endpoint_id)  # private again
    with pytest.raises(NotFound):
        carol.get_endpoint_status(endpoint_id)
    assert alice.get_endpoint_sharing(endpoint_id) == {"public": False, "users": [], "groups": []}


def test_groups_and_bad_sharing_requests(cluster: Any) -> None:
    service, alice, registration = cluster.running(start_endpoint=False)
    endpoint_id = registration["endpoint_id"]
    bob = user(service, "bob")
    bob_name = bob.whoami()["name"]
    team = alice.create_group("team", [bob_name])
    with pytest.raises(InvalidRequest) as taken:
        alice.create_group("team")
    assert taken.value.status == 409
    with pytest.raises(InvalidRequest, match="no user"):
        alice.share_endpoint(endpoint_id, users=["nobody-at-all"])
    bobs_group = bob.create_group("bob's")
    with pytest.raises(InvalidRequest, match="no group"):  # a group alice is not in
        alice.share_endpoint(endpoint_id, groups=[bobs_group["group_id"]])
    with pytest.raises(TypeError):
        alice.share_endpoint(endpoint_id, users=bob_name)  # type: ignore[arg-type]
    alice.share_endpoint(endpoint_id, groups=[team["group_id"]])
    assert bob.get_endpoint_status(endpoint_id)["access"] == "shared"
    alice.delete_group(team["group_id"])  # what was shared with it is shared with nobody now
    with pytest.raises(NotFound):
        bob.get_endpoint_status(endpoint_id)
    assert alice.get_endpoint_sharing(endpoint_id)["groups"] == []
    with pytest.raises(NotFound):
        bob.get_group(team["group_id"])


def test_the_service_refuses_functions_the_endpoint_does_not_allow(cluster: Any) -> None:
    service, alice, registration = cluster.running()
    endpoint_id = registration["endpoint_id"]
    allowed = alice.register_function(double)
    assert alice.set_allowed_functions(endpoint_id, [allowed]) == [allowed]
    assert alice.get_endpoint_status(endpoint_id)["allowed_functions"] == [allowed]
    with Executor(endpoint_id, client=alice) as executor:
        futures = [executor.submit(double, 2), executor.submit(fail, "never"), executor.submit(double, 3)]
        assert futures[0].result(TIMEOUT) == 4 and futures[2].result(TIMEOUT) == 6  # the others still run
        with pytest.raises(Forbidden) as caught:
            futures[1].result(TIMEOUT)
    assert caught.value.status == 403 and caught.value.error_type == "function_not_allowed"
    assert futures[1].task_id is None  # never stored
    alice.set_allowed_functions(endpoint_id, None)
    with Executor(endpoint_id, client=alice) as executor:
        assert executor.submit(double, 5).result(TIMEOUT) == 10


def test_the_endpoint_refuses_functions_its_own_list_does_not_allow(cluster: Any, tmp_path: Path) -> None:
    """The service's list is empty (any function) but the endpoint's configuration names one:
    the endpoint's policy holds whatever the service sends."""
    service, alice, registration = cluster.running(start_endpoint=False)
    allowed_id, _ = serialize_function(double)
    cluster.endpoint(registration, allowed_functions=[allowed_id])
    ran = tmp_path / "ran"
    with Executor(registration["endpoint_id"], client=alice) as executor:
        refused = executor.submit(record, str(ran), 1, 0.0)
        assert executor.submit(double, 21).result(TIMEOUT) == 42
        with pytest.raises(FunctionNotAllowed) as caught:
            refused.result(TIMEOUT)
    assert caught.value.function_id == serialize_function(record)[0]
    assert not ran.exists()  # it never ran
    assert alice.get_task(str(refused.task_id))["state"] == "failed"
