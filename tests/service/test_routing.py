"""Routing end to end: a real service and three real endpoint processes of unequal speed.

alice owns ``small`` (1 worker, slowed by 20 ms a task), ``medium`` (2 workers) and
``large`` (4 workers, two fake accelerator ids, ``site=aps``, the cheapest), in one
endpoint group. Each task logs which endpoint ran it (``sdk_functions.where``), so the
tests read where work went from the workers themselves, and how often each task ran.
"""

from __future__ import annotations

import collections
import platform
from pathlib import Path
from typing import Any

import pytest
from tests.support import TIMEOUT, poll_until
from tests.support.service import user
from tests.support.sdk_functions import where

from fabric import Executor, InvalidRequest, NoEligibleEndpoint, NotFound

ENDPOINTS = {  # name: (workers, seconds added to each task, interchange settings)
    "small": (1, 0.02, {}),
    "medium": (2, 0.0, {"labels": {"site": "anl", "cost_per_core_hour": 0.05}}),
    "large": (4, 0.0, {"accelerators": ["0", "1"],
                       "labels": {"site": "aps", "cost_per_core_hour": 0.02, "near": ["beamline-7"]}}),
}


class Fleet:
    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.service = cluster.service(purge_interval=600.0)  # tasks' records stay to be read after their results
        self.alice = user(self.service, "alice")
        self.registrations = {name: self.alice.register_endpoint(name) for name in ENDPOINTS}
        self.ids = {name: r["endpoint_id"] for name, r in self.registrations.items()}
        self.names = {endpoint_id: name for name, endpoint_id in self.ids.items()}
        self.processes = {name: self.start(name) for name in ENDPOINTS}
        self.group = self.alice.create_endpoint_group("all", list(self.ids.values()))["endpoint_group_id"]
        for name in ENDPOINTS:
            self.wait_reported(name)

    def start(self, name: str) -> Any:
        workers, delay, settings = ENDPOINTS[name]
        return self.cluster.endpoint(self.registrations[name], workers=workers,
                                     env={"FABRIC_TEST_DELAY": str(delay), "FABRIC_TEST_NAME": name}, **settings)

    def wait_reported(self, name: str) -> dict[str, Any]:
        def reported() -> dict[str, Any] | None:
            status = self.alice.get_endpoint_status(self.ids[name])
            report = status["report"]
            online = status["status"] == "online"
            return status if online and report and report["workers"] == ENDPOINTS[name][0] else None
        return poll_until(reported, f"endpoint {name} to report its workers")


@pytest.fixture
def fleet(cluster: Any) -> Fleet:
    return Fleet(cluster)


def executions(log: Path) -> collections.Counter[tuple[int, str]]:
    lines = log.read_text().split() if log.exists() else []
    return collections.Counter(zip(map(int, lines[::2]), lines[1::2]))


def test_endpoints_report_hardware_labels_and_measurements(fleet: Fleet, tmp_path: Path) -> None:
    status = fleet.wait_reported("large")
    report = status["report"]
    assert report["labels"] == {"site": "aps", "cost_per_core_hour": 0.02, "near": ["beamline-7"]}
    assert report["accelerators"] == 2 and report["python_versions"] == [platform.python_version()]
    [manager] = report["managers"]
    assert manager["workers"] == 4 and manager["cores"] > 0 and manager["memory"] > 0
    assert manager["accelerators"] == ["0", "1"] and manager["accelerator_kind"] == "gpu"
    assert set(status["measured"]) >= {"round_trip", "tasks_per_s", "failure_rate", "rtt"}
    with Executor(client=fleet.alice, endpoint_group=fleet.group) as executor:
        details = executor.get_worker_hardware_details()
        assert {fleet.names[e]: [m["workers"] for m in managers] for e, managers in details.items()} == {
            "small": [1], "medium": [2], "large": [4]}
        futures = [executor.submit(where, str(tmp_path / "log"), i, 0.0) for i in range(20)]
        assert sorted(f.result(TIMEOUT)[0] for f in futures) == list(range(20))
    measured = poll_until(lambda: fleet.alice.get_endpoint_status(fleet.ids["large"])["measured"]["rtt"],
                          "a measured round trip to the endpoint")
    assert measured > 0
    function_id = fleet.alice.register_function(where)
    same = fleet.alice.submit_batch(fleet.ids["large"], function_id, [b"x"], python_version=platform.python_version())
    other = fleet.alice.submit_batch(None, function_id, [b"x"], endpoint_group=fleet.group, python_version="2.7.18")
    assert same.warnings == () and len(other.warnings) == 3  # each member's workers run another Python
    assert "Python 2.7.18" in other.warnings[0] and platform.python_version() in other.warnings[0]
    fleet.alice.cancel_task_group(other.task_group_id)


def test_endpoint_groups_are_objects_with_access_rules(fleet: Fleet) -> None:
    alice, service = fleet.alice, fleet.service
    bob, carol = user(service, "bob"), user(service, "carol")
    group = alice.get_endpoint_group(fleet.group)
    assert group["access"] == "owner" and sorted(group["endpoint_ids"]) == sorted(fleet.ids.values())
    assert [g["endpoint_group_id"] for g in alice.list_endpoint_groups()] == [fleet.group]
    with pytest.raises(NotFound):
        bob.get_endpoint_group(fleet.group)
    alice.share_endpoint_group(fleet.group, users=[bob.whoami()["name"]])
    assert bob.get_endpoint_group(fleet.group)["access"] == "shared"
    with pytest.raises(NotFound):  # bob reaches none of alice's endpoints: he cannot group them
        bob.create_endpoint_group("mine", [fleet.ids["small"]])
    with pytest.raises(NoEligibleEndpoint):  # shared group, but none of its endpoints is shared with bob
        bob.submit_batch(None, bob.register_function(where), [b"x"], endpoint_group=fleet.group)
    with pytest.raises(NotFound):
        carol.submit_batch(None, carol.register_function(where), [b"x"], endpoint_group=fleet.group)
    alice.delete_endpoint_group(fleet.group)
    with pytest.raises(NotFound):
        bob.get_endpoint_group(fleet.group)


BAD_ROUTING = [
    ({"policy": "nearest"}, "routing.policy"),
    ({"weights": {"load": "heavy"}}, "routing.weights.load"),
    ({"weights": {"colour": 1}}, "routing.weights"),
    ({"requires": {"gpu": "many"}}, "routing.requires.gpu"),
]


def test_bad_routing_is_a_400_naming_the_field(fleet: Fleet) -> None:
    function_id = fleet.alice.register_function(where)
    for routing, field in BAD_ROUTING:
        with pytest.raises(InvalidRequest) as raised:
            fleet.alice.submit_batch(None, function_id, [b"x"], endpoint_group=fleet.group, routing=routing)
        assert raised.value.status == 400 and field in str(raised.value), (routing, raised.value)
    with pytest.raises(InvalidRequest) as raised:
        fleet.alice.create_endpoint_group("empty", [])
    assert raised.value.status == 400 and "endpoint_ids" in str(raised.value)
    with pytest.raises(NotFound):
        fleet.alice.submit_batch(None, function_id, [b"x"], endpoint_group="no-such-group")
    assert [g["name"] for g in fleet.alice.list_endpoint_groups()] == ["all"]


def test_requires_gpu_runs_only_where_accelerators_are_reported(fleet: Fleet, tmp_path: Path) -> None:
    log = tmp_path / "log"
    with Executor(client=fleet.alice, endpoint_group=fleet.group, requires={"gpu": 1}) as executor:
        futures = [executor.submit(where, str(log), i, 0.0) for i in range(60)]
        assert {f.result(TIMEOUT)[1] for f in futures} == {"large"}
        assert futures[0].endpoint_id == fleet.ids["large"]
    record = fleet.alice.get_task(futures[0].task_id)
    assert record["endpoint_id"] == fleet.ids["large"] and record["route_reason"].startswith("least-loaded")
    assert fleet.alice.get_task_group(executor.task_group_id)["endpoints"] == {fleet.ids["large"]: 60}
    with Executor(client=fleet.alice, endpoint_group=fleet.group, requires={"gpu": 3}) as executor:
        with pytest.raises(NoEligibleEndpoint):
            executor.submit(where, str(log), 0, 0.0).result(TIMEOUT)
    with Executor(client=fleet.alice, endpoint_group=fleet.group, requires={"site": "anl"}) as executor:
        assert executor.submit(where, str(log), 0, 0.0).result(TIMEOUT)[1] == "medium"


@pytest.mark.parametrize("policy", ["least-loaded", "fastest"])
def test_a_bag_of_tasks_spreads_by_speed(fleet: Fleet, tmp_path: Path, policy: str) -> None:
    # tasks of 30 ms: long enough that the endpoints' speeds (1 worker slowed, 2, 4 workers)
    # and not the CPU left over on a busy 2-core machine decide how many each one finishes
    log, count = tmp_path / "log", 400
    with Executor(client=fleet.alice, endpoint_group=fleet.group, policy=policy) as executor:
        results = list(executor.map(where, [str(log)] * count, range(count), [0.03] * count))
    per_endpoint = collections.Counter(name for _, name in results)
    assert sorted(value for value, _ in results) == list(range(count))
    assert set(per_endpoint) == {"small", "medium", "large"}, per_endpoint  # every member kept busy
    assert per_endpoint["large"] > per_endpoint["medium"] > per_endpoint["small"], per_endpoint
    placed = fleet.alice.get_task_group(executor.task_group_id)["endpoints"]
    assert {fleet.names[e]: n for e, n in placed.items()} == dict(per_endpoint)


def test_cheapest_and_closest_prefer_what_they_say(fleet: Fleet, tmp_path: Path) -> None:
    log = tmp_path / "log"
    for policy, near in (("cheapest", None), ("closest", "beamline-7")):
        with Executor(client=fleet.alice, endpoint_group=fleet.group, policy=policy, near=near) as executor:
            future = executor.submit(where, str(log), 0, 0.0)
            assert future.result(TIMEOUT)[1] == "large"
            assert fleet.alice.get_task(future.task_id)["route_reason"].startswith(policy)
    with Executor(client=fleet.alice, endpoint_group=fleet.group, weights={"workers": 1}) as executor:
        assert executor.submit(where, str(log), 0, 0.0).result(TIMEOUT)[1] == "small"  # the fewest workers


def test_sigkill_of_an_endpoint_mid_run_completes_every_task_once(fleet: Fleet, tmp_path: Path) -> None:
    log, count = tmp_path / "log", 300
    with Executor(client=fleet.alice, endpoint_group=fleet.group) as executor:
        futures = [executor.submit(where, str(log), i, 0.05) for i in range(count)]
        poll_until(lambda: sum(n for (_, name), n in executions(log).items() if name == "large") >= 20,
                   "the large endpoint to run some tasks")
        fleet.processes["large"].kill()
        results = [f.result(TIMEOUT * 2) for f in futures]
    assert sorted(value for value, _ in results) == list(range(count))  # each completed, once
    ran = executions(log)
    assert {value for value, _ in ran} == set(range(count))
    late = [value for value, name in ran if name == "large" and value not in
            {v for v, n in results if n == "large"}]
    assert all(results[v][1] != "large" for v in late)  # a re-run's result won; large's was dropped
    group = fleet.alice.get_task_group(executor.task_group_id)
    assert group["success"] == count and group["pending"] == 0
    moved = [f for f in futures if "failover: endpoint " + fleet.ids["large"] in
             (fleet.alice.get_task(f.task_id)["route_reason"] or "")]
    assert moved and all(f.endpoint_id != fleet.ids["large"] for f in moved)  # what was on large went elsewhere


def test_an_endpoint_stopped_before_submit_gets_work_once_started(fleet: Fleet, tmp_path: Path) -> None:
    log = tmp_path / "log"
    fleet.processes["large"].stop()
    poll_until(lambda: fleet.alice.get_endpoint_status(fleet.ids["large"])["status"] == "offline",
               "the large endpoint to be offline")
    with Executor(client=fleet.alice, endpoint_group=fleet.group) as executor:
        first = [executor.submit(where, str(log), i, 0.0) for i in range(40)]
        assert {f.result(TIMEOUT)[1] for f in first} == {"small", "medium"}
        fleet.processes["large"] = fleet.start("large")
        fleet.wait_reported("large")
        second = list(executor.map(where, [str(log)] * 300, range(40, 340), [0.01] * 300))
    assert "large" in {name for _, name in second}
