"""Where a task submitted to an endpoint group runs: the routing policy, sans IO.

Nothing here touches a socket or the store: the forwarder hands over what it knows of each
member endpoint (``Candidate``: its live report and the service's measurements) and asks
``plan`` how many of a route's waiting tasks go where, and why. The API checks a request's
routing (``RoutingSpec.parse``) and whether any member can ever meet it (``meets``).

Policies (each combined with the hard constraints of ``requires``):

``least-loaded``  the endpoint with the fewest tasks in flight per worker
``fastest``       the earliest expected finish: (tasks in flight + 1) / measured tasks per second
                  (an endpoint not measured yet counts as its workers times the best measured rate
                  per worker, so it gets tried)
``cheapest``      the lowest declared ``cost_per_core_hour`` label (undeclared: last); ties by load
``closest``       endpoints whose ``near`` label lists ``near`` (or whose ``site`` is ``near``) first,
                  then the lowest measured round trip to the endpoint; ties by load
``weights``       a user ranking as data: the lowest sum of ``weight * figure`` over ``FIGURES``
                  wins (e.g. ``{"load": 1, "cost": 50}``); never code run in the service

Every policy only places a task where the endpoint has room (``window``: what keeps its
workers busy across round trips, a second of its measured throughput, at least
twice its workers), so the rest wait in the service and go out as room frees: a bag of tasks
spreads over every member in proportion to its speed, in the policy's order of preference.

``requires``: ``gpu``/``accelerators`` (at least that many accelerators reported),
``cores`` (a manager with at least that many), ``memory`` (bytes, likewise), ``python``
(major.minor of the workers' Python) and any other key a label that must equal the value
(or, for a list label, contain it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

LEAST_LOADED, FASTEST, CHEAPEST, CLOSEST = "least-loaded", "fastest", "cheapest", "closest"
POLICIES = (LEAST_LOADED, FASTEST, CHEAPEST, CLOSEST)
FIGURES = ("load", "queued", "workers", "tasks_per_s", "round_trip", "rtt", "cost", "failure_rate")
"""What weights may name: ``load`` in-flight tasks per worker, ``queued`` in-flight tasks,
``workers``, measured ``tasks_per_s``, ``round_trip`` (task, seconds), ``rtt`` (service to
endpoint, seconds), declared ``cost`` per core hour, ``failure_rate`` (system errors, 0..1)."""
COST_LABEL = "cost_per_core_hour"
QUEUE_SECONDS = 1.0
"""An endpoint is given up to this many seconds of its measured throughput in flight. Time,
not a count, so at the end of a bag every member holds about the same time of work; a
quarter second capped the service path's no-op throughput at 70% of the direct path's on a
loaded 2-core machine (the window, not the dispatch, was the limit)."""
MAX_REQUIRES, MAX_WEIGHTS, MAX_TEXT = 32, len(FIGURES), 256
STEPS_PER_ENDPOINT = 8
"""``plan`` places a step of up to 1/8 of what is left per open endpoint at a time (then one by one)."""
EWMA_ALPHA = 0.3


class RoutingError(ValueError):
    """A routing request that cannot be served; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingSpec:
    """How to choose among a group's endpoints: a policy, hard constraints, weights, a place."""

    policy: str = LEAST_LOADED
    requires: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    near: str | None = None

    @classmethod
    def parse(cls, data: Any) -> RoutingSpec:
        """From a request's ``routing`` map (None: the defaults); ``RoutingError`` names the bad field."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise RoutingError("routing", "must be a map of policy, requires, weights, near")
        unknown = set(data) - {"policy", "requires", "weights", "near"}
        if unknown:
            raise RoutingError(f"routing.{str(sorted(map(str, unknown))[0])[:64]}", "is not a routing field")
        policy = data.get("policy") or LEAST_LOADED
        if policy not in POLICIES:
            raise RoutingError("routing.policy", f"is {str(policy)[:64]!r}, not one of {', '.join(POLICIES)}")
        return cls(policy=policy, requires=_requires(data.get("requires")), weights=_weights(data.get("weights")),
                   near=_text(data.get("near"), "routing.near"))

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "requires": dict(self.requires), "weights": dict(self.weights),
                "near": self.near}


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise RoutingError(field, f"must be a string of 1 to {MAX_TEXT} characters")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _requires(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_REQUIRES:
        raise RoutingError("routing.requires", f"must be a map of at most {MAX_REQUIRES} constraints")
    for key, wanted in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_TEXT:
            raise RoutingError("routing.requires", "must have names as keys")
        if key in ("gpu", "accelerators", "cores", "memory") and not (_number(wanted) and wanted >= 0):
            raise RoutingError(f"routing.requires.{key}", "must be a non-negative number")
        if not (_number(wanted) or isinstance(wanted, (str, bool))):
            raise RoutingError(f"routing.requires.{key}", "must be a number, a string or a boolean")
    return dict(value)


def _weights(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RoutingError("routing.weights", f"must be a map of figures ({', '.join(FIGURES)}) to numbers")
    for key, weight in value.items():
        if key not in FIGURES:
            raise RoutingError("routing.weights", f"names {str(key)[:64]!r}, not one of {', '.join(FIGURES)}")
        if not _number(weight):
            raise RoutingError(f"routing.weights.{key}", "must be a number")
    return {key: float(weight) for key, weight in value.items()}


# -- what is known of an endpoint ---------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Hardware:
    """An endpoint's last report: per manager ``cores``, ``memory``, ``accelerators`` (ids),
    ``python_version``, ``workers``; the endpoint's config ``labels``."""

    managers: tuple[Mapping[str, Any], ...] = ()
    labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_report(cls, report: Mapping[str, Any] | None) -> Hardware | None:
        """From a stored report (``service.router``'s), None for none."""
        if not report:
            return None
        managers = report.get("managers")
        labels = report.get("labels")
        return cls(tuple(m for m in managers if isinstance(m, dict)) if isinstance(managers, list) else (),
                   labels if isinstance(labels, dict) else {})

    @property
    def workers(self) -> int:
        return sum(_count(m.get("workers")) for m in self.managers)

    @property
    def accelerators(self) -> int:
        return sum(len(m.get("accelerators") or ()) for m in self.managers)

    @property
    def python_versions(self) -> list[str]:
        return sorted({str(m["python_version"]) for m in self.managers if m.get("python_version")})

    @property
    def cost(self) -> float:
        cost: Any = self.labels.get(COST_LABEL)
        return float(cost) if _number(cost) else math.inf


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclasses.dataclass(slots=True)
class Measured:
    """The service's own measurements of one endpoint, as exponentially weighted averages."""

    round_trip: float | None = None  # seconds from dispatch to result, per task
    tasks_per_s: float | None = None  # results per second while it had work
    failure_rate: float = 0.0  # of results, the share that were system errors
    rtt: float | None = None  # seconds for a status request's answer
    consecutive_failures: int = 0

    def observe_results(self, count: int, system_errors: int, round_trip: float | None) -> None:
        if count <= 0:
            return
        self.failure_rate = _ewma(self.failure_rate, system_errors / count)
        self.consecutive_failures = self.consecutive_failures + system_errors if system_errors == count else 0
        if round_trip is not None:
            self.round_trip = _ewma(self.round_trip, round_trip)

    def observe_rate(self, tasks_per_s: float) -> None:
        self.tasks_per_s = _ewma(self.tasks_per_s, tasks_per_s)

    def observe_rtt(self, seconds: float) -> None:
        self.rtt = _ewma(self.rtt, seconds)

    def to_dict(self) -> dict[str, Any]:
        return {"round_trip": self.round_trip, "tasks_per_s": self.tasks_per_s, "failure_rate": self.failure_rate,
                "rtt": self.rtt}


def _ewma(old: float | None, sample: float) -> float:
    return sample if old is None else old + EWMA_ALPHA * (sample - old)


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A connected member endpoint at the moment of a decision."""

    endpoint_id: str
    hardware: Hardware
    measured: Measured
    in_flight: int  # dispatched by this service and unfinished


def meets(requires: Mapping[str, Any], hardware: Hardware | None) -> bool:
    """Whether an endpoint's report satisfies every hard constraint (no report: only none)."""
    if not requires:
        return True
    if hardware is None:
        return False
    for key, wanted in requires.items():
        if key in ("gpu", "accelerators"):
            ok = hardware.accelerators >= wanted
        elif key in ("cores", "memory"):
            ok = any(_number(m.get(key)) and m[key] >= wanted for m in hardware.managers)
        elif key == "python":
            ok = any(v == str(wanted) or v.startswith(f"{wanted}.") for v in hardware.python_versions)
        else:
            label = hardware.labels.get(key)
            ok = wanted in label if isinstance(label, list) else label == wanted
        if not ok:
            return False
    return True


def python_mismatch(client_version: str, hardware: Hardware | None) -> str | None:
    """A warning if the endpoint's workers run another Python (major.minor) than the client."""
    if hardware is None or not hardware.python_versions:
        return None
    wanted = ".".join(client_version.split(".")[:2])
    others = [v for v in hardware.python_versions if ".".join(v.split(".")[:2]) != wanted]
    if not others:
        return None
    return (f"the client runs Python {client_version} but the endpoint's workers run {', '.join(others)}: "
            "functions and arguments serialized here may not load there")


def window(candidate: Candidate) -> int:
    """Tasks the endpoint may hold in flight: enough to keep its workers busy across a round trip."""
    workers = max(1, candidate.hardware.workers)
    rate = candidate.measured.tasks_per_s or 0.0
    return max(2 * workers, math.ceil(rate * QUEUE_SECONDS))


# -- deciding -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    endpoint_id: str
    count: int
    reason: str


def plan(spec: RoutingSpec, candidates: Sequence[Candidate], count: int) -> list[Placement]:
    """Where up to ``count`` waiting tasks go now: one placement per endpoint given any, in
    the order they were first chosen. Only endpoints meeting ``requires`` and with room."""
    eligible = [c for c in candidates if meets(spec.requires, c.hardware)]
    room = {c.endpoint_id: window(c) - c.in_flight for c in eligible}
    eligible = [c for c in eligible if room[c.endpoint_id] > 0]
    if not eligible or count <= 0:
        return []
    best_rate = _best_rate_per_worker(eligible)
    assigned = {c.endpoint_id: 0 for c in eligible}
    order: list[str] = []
    left = count
    while left > 0:
        open_ = [c for c in eligible if assigned[c.endpoint_id] < room[c.endpoint_id]]
        if not open_:
            break
        choice = min(open_, key=lambda c: _score(spec, c, c.in_flight + assigned[c.endpoint_id], best_rate))
        # a step of several tasks at once when many are left: a few dozen choices per turn, not one per task
        step = min(max(1, left // (STEPS_PER_ENDPOINT * len(open_))), room[choice.endpoint_id] -
                   assigned[choice.endpoint_id], left)
        if not assigned[choice.endpoint_id]:
            order.append(choice.endpoint_id)
        assigned[choice.endpoint_id] += step
        left -= step
    by_id = {c.endpoint_id: c for c in eligible}
    return [Placement(e, assigned[e], _reason(spec, by_id[e], best_rate)) for e in order]


def _best_rate_per_worker(candidates: Iterable[Candidate]) -> float:
    rates = [c.measured.tasks_per_s / max(1, c.hardware.workers) for c in candidates if c.measured.tasks_per_s]
    return max(rates, default=1.0)


def _rate(candidate: Candidate, best_rate: float) -> float:
    return candidate.measured.tasks_per_s or best_rate * max(1, candidate.hardware.workers)


def _score(spec: RoutingSpec, c: Candidate, queued: int, best_rate: float) -> tuple[float, ...]:
    load = queued / max(1, c.hardware.workers)
    if spec.weights:
        figures = _figures(c, queued, best_rate)
        return (sum(weight * figures[name] for name, weight in spec.weights.items()), load)
    if spec.policy == FASTEST:
        return ((queued + 1) / _rate(c, best_rate), load)
    if spec.policy == CHEAPEST:
        return (c.hardware.cost, load)
    if spec.policy == CLOSEST:
        return (0.0 if _is_near(c.hardware, spec.near) else 1.0, c.measured.rtt or math.inf, load)
    return (load, -_rate(c, best_rate))


def _figures(c: Candidate, queued: int, best_rate: float) -> dict[str, float]:
    cost = c.hardware.cost
    return {"load": queued / max(1, c.hardware.workers), "queued": float(queued),
            "workers": float(c.hardware.workers), "tasks_per_s": _rate(c, best_rate),
            "round_trip": c.measured.round_trip or 0.0, "rtt": c.measured.rtt or 0.0,
            "cost": cost if math.isfinite(cost) else 1e9, "failure_rate": c.measured.failure_rate}


def _is_near(hardware: Hardware, near: str | None) -> bool:
    if near is None:
        return False
    listed = hardware.labels.get("near")
    return (isinstance(listed, list) and near in listed) or listed == near or hardware.labels.get("site") == near


def _reason(spec: RoutingSpec, c: Candidate, best_rate: float) -> str:
    """Why the policy chose this endpoint, in a line (stored with each task)."""
    load = f"{c.in_flight} in flight on {c.hardware.workers} workers"
    if spec.weights:
        terms = ", ".join(f"{k}={v:g}" for k, v in sorted(spec.weights.items()))
        return f"weights ({terms}): lowest weighted score; {load}"
    if spec.policy == FASTEST:
        measured = "not yet measured" if not c.measured.tasks_per_s else f"{c.measured.tasks_per_s:.0f} tasks/s"
        return f"fastest: earliest expected finish ({measured}; {load})"
    if spec.policy == CHEAPEST:
        cost = c.hardware.cost
        declared = f"{COST_LABEL} {cost:g}" if math.isfinite(cost) else "no cost declared"
        return f"cheapest: {declared} ({load})"
    if spec.policy == CLOSEST:
        where = f"near {spec.near}" if _is_near(c.hardware, spec.near) else "not near"
        rtt = f"rtt {c.measured.rtt * 1000:.1f} ms" if c.measured.rtt is not None else "rtt unknown"
        return f"closest: {where}, {rtt} ({load})"
    return f"least-loaded: {load}"
