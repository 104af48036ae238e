"""``service.routing``: the policies, constraints and request parsing, without sockets."""

from __future__ import annotations

import math
from typing import Any

import pytest

from service.routing import (Candidate, Hardware, Measured, RoutingError, RoutingSpec, meets, plan, python_mismatch,
                             window)


def endpoint(name: str, workers: int, *, in_flight: int = 0, rate: float | None = None, gpus: int = 0,
             labels: dict[str, Any] | None = None, rtt: float | None = None, python: str = "3.12.1") -> Candidate:
    manager = {"workers": workers, "cores": 8, "memory": 16 * 2**30, "python_version": python,
               "accelerators": [str(i) for i in range(gpus)]}
    return Candidate(name, Hardware((manager,), labels or {}), Measured(tasks_per_s=rate, rtt=rtt), in_flight)


def placed(spec: RoutingSpec, candidates: list[Candidate], count: int) -> dict[str, int]:
    return {p.endpoint_id: p.count for p in plan(spec, candidates, count)}


def test_least_loaded_fills_in_proportion_to_workers_and_stops_at_each_window() -> None:
    fleet = [endpoint("one", 1), endpoint("two", 2), endpoint("four", 4)]
    assert placed(RoutingSpec(), fleet, 7) == {"one": 1, "two": 2, "four": 4}
    assert placed(RoutingSpec(), fleet, 1000) == {"one": 2, "two": 4, "four": 8}  # windows: 2 x workers
    busy = [endpoint("one", 1, in_flight=2), endpoint("two", 2, in_flight=1)]
    assert placed(RoutingSpec(), busy, 10) == {"two": 3}


def test_a_fast_endpoint_gets_a_window_of_a_second_of_its_throughput() -> None:
    assert window(endpoint("fast", 4, rate=800.0)) == 800
    assert window(endpoint("slow", 4, rate=1.0)) == 8


def test_fastest_prefers_the_earliest_expected_finish() -> None:
    fleet = [endpoint("slow", 2, rate=10.0), endpoint("fast", 2, rate=400.0)]
    decision = plan(RoutingSpec(policy="fastest"), fleet, 20)
    assert decision[0].endpoint_id == "fast" and decision[0].count == 20
    assert "400 tasks/s" in decision[0].reason
    unmeasured = [endpoint("measured", 1, rate=100.0), endpoint("new", 4)]
    assert placed(RoutingSpec(policy="fastest"), unmeasured, 4)["new"] >= 3  # tried at the best rate per worker


def test_cheapest_and_closest_rank_by_declared_labels_then_load() -> None:
    fleet = [endpoint("free", 1), endpoint("dear", 2, labels={"cost_per_core_hour": 0.5}),
             endpoint("cheap", 2, labels={"cost_per_core_hour": 0.02})]
    assert [p.endpoint_id for p in plan(RoutingSpec(policy="cheapest"), fleet, 100)] == ["cheap", "dear", "free"]
    near = [endpoint("far", 4, rtt=0.001), endpoint("beam", 1, labels={"near": ["beamline-7"]}, rtt=0.05),
            endpoint("site", 1, labels={"site": "beamline-7"}, rtt=0.01)]
    order = [p.endpoint_id for p in plan(RoutingSpec(policy="closest", near="beamline-7"), near, 100)]
    assert order == ["site", "beam", "far"]


def test_weights_rank_by_a_weighted_sum_of_figures() -> None:
    fleet = [endpoint("big", 4), endpoint("small", 1)]
    assert next(iter(placed(RoutingSpec(weights={"workers": 1.0}), fleet, 1))) == "small"
    assert next(iter(placed(RoutingSpec(weights={"workers": -1.0}), fleet, 1))) == "big"


def test_constraints_are_hard() -> None:
    fleet = [endpoint("cpu", 8), endpoint("gpu", 1, gpus=2, labels={"site": "aps", "near": ["b7"]})]
    for requires in ({"gpu": 1}, {"accelerators": 2}, {"site": "aps"}, {"near": "b7"}):
        assert placed(RoutingSpec(requires=requires), fleet, 50) == {"gpu": 2}
    assert placed(RoutingSpec(requires={"gpu": 3}), fleet, 50) == {}
    assert meets({"python": "3.12"}, fleet[0].hardware) and not meets({"python": "3.1"}, fleet[0].hardware)
    assert meets({"cores": 8, "memory": 2**30}, fleet[0].hardware) and not meets({"cores": 9}, fleet[0].hardware)
    assert not meets({"gpu": 1}, None) and meets({}, None)  # never reported: only unconstrained


@pytest.mark.parametrize(("data", "field"), [
    ("fastest", "routing"), ({"policy": "random"}, "routing.policy"), ({"colour": 1}, "routing.colour"),
    ({"weights": {"load": "1"}}, "routing.weights.load"), ({"weights": {"load": math.nan}}, "routing.weights.load"),
    ({"weights": {"speed": 1}}, "routing.weights"), ({"weights": [1]}, "routing.weights"),
    ({"requires": {"gpu": -1}}, "routing.requires.gpu"), ({"requires": {"site": [1]}}, "routing.requires.site"),
    ({"near": ""}, "routing.near"),
])
def test_bad_routing_names_its_field(data: Any, field: str) -> None:
    with pytest.raises(RoutingError) as raised:
        RoutingSpec.parse(data)
    assert raised.value.field == field


def test_a_spec_round_trips_as_data() -> None:
    spec = RoutingSpec.parse({"policy": "cheapest", "requires": {"gpu": 1}, "weights": {"load": 2}, "near": "x"})
    assert RoutingSpec.parse(spec.to_dict()) == spec and RoutingSpec.parse(None) == RoutingSpec()


def test_a_python_mismatch_is_named() -> None:
    hardware = endpoint("e", 1, python="3.11.4").hardware
    assert python_mismatch("3.11.9", hardware) is None
    assert "3.11.4" in (python_mismatch("3.12.1", hardware) or "") and python_mismatch("3.12.1", None) is None


def test_measurements_are_moving_averages_and_count_failures_in_a_row() -> None:
    measured = Measured()
    measured.observe_rate(100.0)
    measured.observe_rate(200.0)
    assert measured.tasks_per_s == pytest.approx(130.0)
    measured.observe_results(10, 10, 0.5)
    measured.observe_results(5, 5, None)
    assert measured.consecutive_failures == 15 and measured.round_trip == 0.5
    measured.observe_results(5, 1, 0.1)
    assert measured.consecutive_failures == 0 and 0 < measured.failure_rate < 1
