"""Socket-free unit tests: tasks whose spec the endpoint cannot meet (a container it does
not offer, more nodes than a block has, ranks below 1) are answered at once and never
dispatched; the others in the same batch run as usual."""

from __future__ import annotations

from typing import Any

from test_interchange_allow_list import ALLOWED, answers, dispatched, registration

from fabric.errors import ContainerNotAllowed, ResourcesUnavailable
from fabric.functions import TaskRequirements
from fabric.protocol import Task
from interchange.scheduler import FunctionsSubmitted, ManagerJoined, Scheduler, TasksSubmitted


def task(task_id: Any, spec: dict[str, Any] | None = None) -> Task:
    return Task(task_id, ALLOWED, b"args", None, 0, 0, spec)


def test_tasks_whose_spec_cannot_be_met_are_answered_and_the_rest_dispatched() -> None:
    s = Scheduler(heartbeat_threshold=10.0, requirements=TaskRequirements(["podman-box"], nodes_per_block=2))
    s.handle(ManagerJoined(registration(), 0.0))
    s.handle(FunctionsSubmitted([ALLOWED], [b"body"]))
    s.handle(TasksSubmitted([
        task(1), task(2, {"container": "podman-box"}), task(3, {"container": "elsewhere"}),
        task(4, {"num_nodes": 2, "ranks_per_node": 4}), task(5, {"num_nodes": 3}), task(6, {"num_ranks": 0}),
    ]))
    actions = s.flush()
    assert dispatched(actions) == [1, 2, 4]
    errors = answers(actions)
    assert sorted(errors) == [3, 5, 6]
    assert isinstance(errors[3], ContainerNotAllowed) and errors[3].allowed == ["podman-box"]
    assert isinstance(errors[5], ResourcesUnavailable) and "3 nodes" in str(errors[5])
    assert isinstance(errors[6], ResourcesUnavailable) and "positive integer" in str(errors[6])


def test_an_endpoint_without_containers_refuses_every_container_task() -> None:
    s = Scheduler(heartbeat_threshold=10.0)
    s.handle(TasksSubmitted([task(1, {"container": "any"})]))
    assert len(s.queue) == 0 and isinstance(answers(s.flush())[1], ContainerNotAllowed)
