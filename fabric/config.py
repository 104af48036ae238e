"""Configuration of the endpoint-side processes: frozen, keyword-only dataclasses.

A parent process hands its child a configuration as JSON on the command line
(``to_json`` / ``from_json``), never as a pickle. Every value is checked in
``__post_init__`` so a bad value fails where it is written, with ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, TypeVar

from fabric.errors import ConfigError

T = TypeVar("T", bound="_JsonConfig")


class _JsonConfig:
    """JSON round trip and type checking shared by the configuration classes."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{cls.__name__}: not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{cls.__name__}: {exc}") from exc

    def _check_types(self) -> None:
        """Every field holds a value of its annotated type (JSON gives lists for tuples)."""
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if not _matches(value, hints[field.name]):
                raise ConfigError(f"{type(self).__name__}.{field.name}: {value!r} is not {hints[field.name]}")


def _matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is tuple:
        return (isinstance(value, (list, tuple)) and len(value) == len(args)
                and all(_matches(v, a) for v, a in zip(value, args)))
    if args:  # a union such as ``int | None``
        return any(_matches(value, a) for a in args)
    return isinstance(value, hint)


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _check_prefetch(prefetch: int | None) -> None:
    if prefetch is not None and prefetch < 0:
        raise ConfigError(f"prefetch must be a non-negative integer or None, got {prefetch!r}")


def _check_heartbeats(period: float, threshold: float) -> None:
    _positive("heartbeat_period", period)
    _positive("heartbeat_threshold", threshold)
    if threshold < 2 * period:
        raise ConfigError(
            f"heartbeat_threshold ({threshold}) must be at least twice heartbeat_period ({period})"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ManagerConfig(_JsonConfig):
    """One manager: the node agent that runs ``workers`` worker processes.

    ``prefetch`` is how many tasks beyond one per worker the manager asks for; ``None``
    (the default) adapts it to the measured task duration: deep queues for tiny tasks,
    shallow ones for long tasks, so both throughput and load balance stay good.
    ``accelerators`` lists device ids to pin workers to (``None``: discover them once).
    ``cpu_affinity`` is ``none``, ``block``, ``block-reverse``, ``alternating`` or
    ``list:0,1:2,3``.
    """

    interchange_address: str
    manager_id: str
    workers: int = 1
    prefetch: int | None = None
    accelerators: list[str] | None = None
    cpu_affinity: str = "none"
    heartbeat_period: float = 2.0
    heartbeat_threshold: float = 10.0
    block_id: str | None = None
    python: str | None = None
    max_result_bytes: int = 128 * 1024 * 1024

    def __post_init__(self) -> None:
        self._check_types()
        if self.workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")
        _check_prefetch(self.prefetch)
        _positive("max_result_bytes", self.max_result_bytes)
        _check_heartbeats(self.heartbeat_period, self.heartbeat_threshold)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InterchangeConfig(_JsonConfig):
    """One interchange: binds a ROUTER for managers and connects out to its upstream.

    ``upstream_address`` is where tasks come from (the local ``Endpoint`` or the service).
    Managers connect to ``manager_host`` on ``manager_port`` (0: a free port in
    ``manager_port_range``). ``local_managers`` managers with ``workers_per_manager``
    workers each are started on this machine. ``max_message_bytes`` caps any inbound
    message; bigger ones are refused and the sender disconnected.
    """

    upstream_address: str
    endpoint_id: str
    manager_host: str = "127.0.0.1"
    manager_port: int = 0
    manager_port_range: tuple[int, int] = (54000, 55000)
    local_managers: int = 1
    workers_per_manager: int = 1
    prefetch: int | None = None
    accelerators: list[str] | None = None
    cpu_affinity: str = "none"
    heartbeat_period: float = 2.0
    heartbeat_threshold: float = 10.0
    max_message_bytes: int = 256 * 1024 * 1024
    exit_with_upstream: bool = True

    def __post_init__(self) -> None:
        self._check_types()
        if self.local_managers < 0:
            raise ConfigError(f"local_managers must be >= 0, got {self.local_managers!r}")
        if self.workers_per_manager < 1:
            raise ConfigError(f"workers_per_manager must be >= 1, got {self.workers_per_manager!r}")
        if not 0 <= self.manager_port < 65536:
            raise ConfigError(f"manager_port must be 0 (any free port) or a port number, got {self.manager_port!r}")
        _check_prefetch(self.prefetch)
        _positive("max_message_bytes", self.max_message_bytes)
        _check_heartbeats(self.heartbeat_period, self.heartbeat_threshold)
        low, high = self.manager_port_range
        if not 0 < low < high < 65536:
            raise ConfigError(f"manager_port_range {self.manager_port_range!r} is not a port range")
        object.__setattr__(self, "manager_port_range", (low, high))

    def manager_config(self, manager_id: str, manager_address: str) -> ManagerConfig:
        """The configuration of one locally started manager."""
        return ManagerConfig(
            interchange_address=manager_address,
            manager_id=manager_id,
            workers=self.workers_per_manager,
            prefetch=self.prefetch,
            accelerators=self.accelerators,
            cpu_affinity=self.cpu_affinity,
            heartbeat_period=self.heartbeat_period,
            heartbeat_threshold=self.heartbeat_threshold,
            max_result_bytes=self.max_payload_bytes,
        )

    @property
    def max_payload_bytes(self) -> int:
        """The largest arguments or result one task may carry: half a message."""
        return self.max_message_bytes // 2
