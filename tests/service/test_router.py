"""``service.router`` over a real SQLite store, without sockets: placing a group's tasks,
failover of an endpoint gone offline (a late result ignored), draining a failing endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from fabric.protocol import RESULT_OK, RESULT_TASK_ERROR, StatusReport
from service.records import CommitOutcome, NewTasks
from service.router import DRAIN_AFTER, Router
from service.routing import RoutingSpec
from service.store import SQLiteStore

NOW = 1000.0


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.store = SQLiteStore(tmp_path / "fabric.db")
        self.in_flight: dict[str, int] = {}
        self.router = Router(self.store, self.in_flight.get, failover_grace=5.0, drain_seconds=60.0, now=NOW)

    def online(self, endpoint_id: str, workers: int, **labels: Any) -> None:
        self.in_flight[endpoint_id] = 0
        self.router.online(endpoint_id)
        manager = {"workers": workers, "outstanding": 0, "cores": 4, "memory": 2**30, "accelerators": [],
                   "python_version": "3.12.1"}
        self.router.on_report(endpoint_id, StatusReport(request_id=-1, managers=[manager], queued_tasks=0,
                                                        outstanding_tasks=0, labels=labels), NOW)

    def submit(self, count: int, members: list[str], policy: str = "least-loaded") -> tuple[str, list[str]]:
        added = self.store.add_routed("alice", NewTasks("", ["f"] * count, [b"%d" % i for i in range(count)],
                                                        task_group_id="g"), "eg", {"policy": policy}, members)
        assert added is not None and added.waiting == count
        self.router.route_added(added.route_id, count)
        return added.route_id, added.task_ids

    def place(self) -> dict[str, list[str]]:
        """Do what the forwarder does with the router's placements; endpoint -> task ids sent."""
        sent: dict[str, list[str]] = {}
        for route_id, placement in self.router.placements(10_000, NOW):
            tasks = self.store.take_routed(route_id, placement.endpoint_id, placement.count, placement.reason, 1.0)
            self.router.placed(route_id, placement.count, len(tasks))
            self.in_flight[placement.endpoint_id] += len(tasks)
            sent.setdefault(placement.endpoint_id, []).extend(str(t.task_id) for t in tasks)
        return sent


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_tasks_wait_under_their_route_until_members_have_room(world: World) -> None:
    world.online("a", 1)
    world.online("b", 4)
    _, task_ids = world.submit(30, ["a", "b"])
    sent = world.place()
    assert {e: len(ids) for e, ids in sent.items()} == {"a": 2, "b": 8}  # each endpoint's window
    record = world.store.get_task("alice", sent["b"][0])
    assert record is not None and record.endpoint_id == "b" and record.state == "dispatched"
    assert record.route_reason == "least-loaded: 0 in flight on 4 workers"
    waiting = world.store.get_task("alice", task_ids[-1])
    assert waiting is not None and waiting.state == "waiting-for-endpoint"
    assert world.place() == {}  # no room until results come in
    world.in_flight["b"] = 0
    assert {e: len(ids) for e, ids in world.place().items()} == {"b": 8}
    assert world.store.placements("g") == {"a": 2, "b": 16}


def test_an_offline_endpoints_tasks_move_after_the_grace_and_its_late_result_is_ignored(world: World) -> None:
    world.online("a", 4)
    world.online("b", 4)
    world.submit(8, ["a", "b"])
    sent = world.place()
    moved = sent["b"]
    del world.in_flight["b"]
    world.router.offline("b", NOW)
    world.router.tick(NOW + 1.0)  # within the grace: dispatched tasks stay
    assert world.place() == {} and world.store.get_task("alice", moved[0]).endpoint_id == "b"  # type: ignore[union-attr]
    world.router.tick(NOW + 5.5)
    record = world.store.get_task("alice", moved[0])
    assert record is not None and record.state == "waiting-for-endpoint" and record.endpoint_id.startswith("route:")
    assert record.route_reason is not None and record.route_reason.startswith("failover: endpoint b offline")
    world.in_flight["a"] = 0
    again = world.place()
    assert sorted(again["a"]) == sorted(moved)
    late = world.store.commit_results("b", [(moved[0], RESULT_OK, b"late", None)], 2.0)
    assert late.committed == [] and late.ignored == 1
    done = world.store.commit_results("a", [(task_id, RESULT_OK, b"ok", None) for task_id in moved], 2.0)
    assert sorted(done.committed) == sorted(moved)
    counts = world.store.group_counts("g")
    assert counts is not None and counts.success == len(moved) and counts.running == len(sent["a"])
    assert world.store.placements("g") == {"a": 8}


def test_an_endpoint_failing_with_system_errors_is_drained(world: World) -> None:
    world.online("a", 2)
    world.online("b", 2)
    error = msgpack.packb({"error": "WorkerLost", "fields": {}})
    results = [(f"t{i}", RESULT_TASK_ERROR, error, "WorkerLost: {}") for i in range(DRAIN_AFTER)]
    world.router.on_results("a", results, CommitOutcome([r[0] for r in results], 0, set()), NOW)
    assert world.router.measured("a", NOW)["drained_for"] == 60.0 and world.router.measured("a", NOW)["failure_rate"] > 0
    world.submit(4, ["a", "b"])
    assert set(world.place()) == {"b"}


def test_a_restarted_service_fails_over_routed_tasks_of_endpoints_that_never_return(tmp_path: Path) -> None:
    first = World(tmp_path)
    first.online("a", 2)
    first.submit(2, ["a", "b"])
    assert set(first.place()) == {"a"}
    restarted = Router(first.store, {}.get, failover_grace=0.0, drain_seconds=60.0, now=NOW)
    restarted.tick(NOW)
    assert restarted.waiting and first.store.placements("g") == {}


def test_a_batch_is_placed_at_submit_unless_tasks_of_its_route_wait(world: World) -> None:
    world.online("a", 1)
    world.online("b", 4)
    spec = RoutingSpec()
    placed = world.router.plan_now("r", spec, ["a", "b"], 30, NOW)
    assert {p.endpoint_id: p.count for p in placed} == {"a": 2, "b": 8}
    added = world.store.add_routed("alice", NewTasks("", ["f"] * 30, [b"x"] * 30, task_group_id="g"), "eg",
                                   spec.to_dict(), ["a", "b"], placed)
    assert added is not None and added.waiting == 20
    assert [len(added.sent[e]) for e in ("b", "a")] == [8, 2]
    first = world.store.get_task("alice", added.task_ids[0])
    assert first is not None and first.state == "dispatched" and first.route_reason == placed[0].reason
    assert world.store.placements("g") == {"a": 2, "b": 8}
    counts = world.store.group_counts("g")
    assert counts is not None and (counts.running, counts.waiting) == (10, 20)
    world.router.route_added(added.route_id, added.waiting)
    assert world.router.plan_now(added.route_id, spec, ["a", "b"], 5, NOW) == []  # never overtakes those


def test_reported_labels_are_kept_only_as_small_plain_data(world: World) -> None:
    world.online("a", 1, site="aps", cost_per_core_hour=0.02, near=["b7", 7, "x" * 300], big="y" * 300,
                 nan=float("nan"), nested={"a": 1})
    labels = world.store.endpoint_reports(["a"])["a"].report["labels"]
    assert labels == {"site": "aps", "cost_per_core_hour": 0.02, "near": ["b7"], "big": "y" * 256}
