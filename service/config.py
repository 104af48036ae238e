"""The service's configuration: one frozen, keyword-only dataclass.

``ServiceConfig(data_dir=...)`` has working defaults for everything else;
``ServiceConfig.from_file(path)`` reads a JSON object of the same fields (checked by the
machinery of ``fabric.config.JsonConfig``, as the endpoint's configurations are) and
``ServiceConfig.default_data_dir()`` is where the CLI keeps its state without ``--data-dir``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from fabric.config import JsonConfig
from fabric.home import fabric_home
from fabric.errors import ConfigError

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
IDENTITY_PROVIDERS = ("local", "globus")
GLOBUS_SECRET_VARIABLE = "FABRIC_GLOBUS_CLIENT_SECRET"
DATA_DIR_VARIABLE = "FABRIC_SERVICE_DIR"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceConfig(JsonConfig):
    """Everything one service process needs.

    ``data_dir`` holds the SQLite store (``fabric.db``) and the forwarder's CurveZMQ keys.
    HTTP is served on ``host``:``port`` (0: any free port) by ``threads`` WSGI threads;
    at most ``max_polls`` of them (0: half) wait in result long-polls at once, at most
    ``max_polls_per_user`` for one user (``service.polls``). At most ``max_connections``
    connections are open, ``max_connections_per_peer`` from one address; a new one past
    either bound closes the oldest idle connection (of that address) to make room, and a
    connection idle for ``idle_timeout`` seconds (whole seconds, at least 1) is closed
    (``service.http``).
    endpoints connect to the forwarder on ``forwarder_host``:``forwarder_port`` and are told
    ``forwarder_public_address`` (None: ``tcp://forwarder_host:port``).

    Limits: ``max_task_bytes`` per task's arguments, ``max_function_bytes`` per function
    body, ``max_batch_tasks`` per batch, ``max_request_bytes`` per HTTP body (413 past any),
    ``rate_limit`` requests per second per user with bursts of ``rate_burst`` (429 past it;
    0 turns the limit off; a long-poll that waited costs nothing: its answers come at the
    rate results do), ``max_wait`` seconds a long-poll may wait, ``max_results`` results
    per long-poll answer.

    Forwarder: ``heartbeat_period`` between heartbeats and status requests to each
    endpoint; an endpoint silent for ``heartbeat_threshold`` is offline. At most
    ``max_outstanding`` tasks per endpoint are dispatched and unfinished at once; inbound
    messages past ``max_message_bytes`` are refused.

    Routing (tasks submitted to an endpoint group): an endpoint gone offline has its routed
    tasks not yet sent re-routed at once, and those sent but unfinished after
    ``failover_grace`` seconds more (None: ``heartbeat_threshold``); an endpoint failing
    tasks with system errors again and again is left out of routing for ``drain_seconds``.

    Purging: a background thread deletes, every ``purge_interval`` seconds, the finished
    tasks whose results the client fetched (failed ones stay for a retry), and finished
    tasks older than ``result_ttl`` seconds (default 7 days) whether fetched or not; a task
    group with every task purged and idle that long goes too.

    ``sqlite_synchronous``: ``NORMAL`` (default) keeps every committed transaction across a
    crash or SIGKILL of the service; ``FULL`` also across a power loss of the machine.

    Identity: ``identity`` is ``local`` (tokens made by ``fabric service add-user``) or
    ``globus`` (Globus Auth tokens, checked by introspection as the confidential client
    ``globus_client_id`` / ``globus_client_secret``; the CLI takes the secret from
    ``FABRIC_GLOBUS_CLIENT_SECRET`` too). A token must carry ``globus_required_scope``
    (None: ``https://auth.globus.org/scopes/<client id>/all``); answers are cached for
    ``globus_cache_seconds`` (0: ask every time).

    Metrics (``service.metrics``): ``GET /metrics`` is read by the users named in
    ``metrics_users`` with their token, or by anyone when ``metrics_public`` is true.
    """

    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8470
    threads: int = 16
    max_polls: int = 0
    max_polls_per_user: int = 4
    max_connections: int = 512
    max_connections_per_peer: int = 64
    idle_timeout: float = 10.0
    forwarder_host: str = "127.0.0.1"
    forwarder_port: int = 8471
    forwarder_public_address: str | None = None
    max_task_bytes: int = 10 * 1024 * 1024
    max_function_bytes: int = 10 * 1024 * 1024
    max_batch_tasks: int = 10_000
    max_request_bytes: int = 128 * 1024 * 1024
    rate_limit: float = 1000.0
    rate_burst: int = 2000
    max_wait: float = 30.0
    max_results: int = 10_000
    heartbeat_period: float = 2.0
    heartbeat_threshold: float = 10.0
    max_outstanding: int = 100_000
    failover_grace: float | None = None
    drain_seconds: float = 60.0
    max_message_bytes: int = 256 * 1024 * 1024
    sqlite_synchronous: str = "NORMAL"
    result_ttl: float = 7 * 24 * 3600.0
    purge_interval: float = 5.0
    identity: str = "local"
    globus_client_id: str | None = None
    globus_client_secret: str | None = dataclasses.field(default=None, repr=False)
    globus_required_scope: str | None = None
    globus_cache_seconds: float = 30.0
    metrics_users: tuple[str, ...] = ()
    metrics_public: bool = False

    def __post_init__(self) -> None:
        self._check_types()
        if not isinstance(self.data_dir, str) or not self.data_dir:
            raise ConfigError("data_dir must be a non-empty path")
        for name in ("port", "forwarder_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 65536:
                raise ConfigError(f"{name} must be 0 (any free port) or a port number, got {value!r}")
        for name in ("threads", "max_task_bytes", "max_function_bytes", "max_batch_tasks", "max_request_bytes",
                     "max_results", "max_outstanding", "max_message_bytes", "rate_burst",
                     "max_polls_per_user", "max_connections", "max_connections_per_peer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("heartbeat_period", "heartbeat_threshold", "max_wait", "result_ttl", "purge_interval",
                     "idle_timeout"):
            _positive(name, getattr(self, name))
        if not isinstance(self.max_polls, int) or isinstance(self.max_polls, bool) \
                or not 0 <= self.max_polls < self.threads:
            raise ConfigError(f"max_polls must be 0 (half the threads) or below threads ({self.threads}), "
                              f"got {self.max_polls!r}")
        if not isinstance(self.rate_limit, (int, float)) or self.rate_limit < 0:
            raise ConfigError(f"rate_limit must be >= 0 (0: no limit), got {self.rate_limit!r}")
        if self.failover_grace is not None and not (math.isfinite(self.failover_grace) and self.failover_grace >= 0):
            raise ConfigError(f"failover_grace must be a non-negative number of seconds, got {self.failover_grace!r}")
        if not (math.isfinite(self.drain_seconds) and self.drain_seconds >= 0):
            raise ConfigError(f"drain_seconds must be a non-negative number of seconds, got {self.drain_seconds!r}")
        if self.heartbeat_threshold < 2 * self.heartbeat_period:
            raise ConfigError("heartbeat_threshold must be at least twice heartbeat_period")
        if self.sqlite_synchronous not in SYNCHRONOUS_MODES:
            raise ConfigError(f"sqlite_synchronous must be one of {SYNCHRONOUS_MODES}")
        self._check_identity()
        if isinstance(self.metrics_users, list):  # from JSON
            object.__setattr__(self, "metrics_users", tuple(self.metrics_users))
        if not isinstance(self.metrics_users, tuple) or not all(isinstance(n, str) for n in self.metrics_users):
            raise ConfigError(f"metrics_users must be a list of user names, got {self.metrics_users!r}")
        if not isinstance(self.metrics_public, bool):
            raise ConfigError(f"metrics_public must be true or false, got {self.metrics_public!r}")

    def _check_identity(self) -> None:
        if self.identity not in IDENTITY_PROVIDERS:
            raise ConfigError(f"identity must be one of {IDENTITY_PROVIDERS}, got {self.identity!r}")
        for name in ("globus_client_id", "globus_client_secret", "globus_required_scope"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name} must be a non-empty string or None")
        value = self.globus_cache_seconds
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"globus_cache_seconds must be >= 0, got {value!r}")
        if self.identity == "globus" and not (self.globus_client_id and self.globus_client_secret):
            raise ConfigError("identity 'globus' needs globus_client_id and globus_client_secret "
                              f"(or {GLOBUS_SECRET_VARIABLE} in the environment)")

    @property
    def required_scope(self) -> str:
        """The scope a Globus token must carry to be admitted."""
        return self.globus_required_scope or f"https://auth.globus.org/scopes/{self.globus_client_id}/all"

    @property
    def poll_capacity(self) -> int:
        """How many result long-polls may wait at once (``max_polls``, 0: half the threads)."""
        return self.max_polls or max(1, self.threads // 2)

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / "fabric.db"

    @property
    def keys_dir(self) -> Path:
        return Path(self.data_dir) / "curve"

    @property
    def address_file(self) -> Path:
        """Written once the service listens: its pid, HTTP URL and forwarder address."""
        return Path(self.data_dir) / "service.json"

    def replace(self, **changes: Any) -> ServiceConfig:
        return dataclasses.replace(self, **changes)

    @property
    def failover_grace_seconds(self) -> float:
        """``failover_grace``, resolved (None: the heartbeat threshold)."""
        return self.heartbeat_threshold if self.failover_grace is None else self.failover_grace

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> ServiceConfig:
        """Settings from a JSON file; ``overrides`` (e.g. from the command line) win."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read service settings from {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        data.update(overrides)
        return cls.from_dict(data)

    @staticmethod
    def default_data_dir() -> str:
        """``$FABRIC_SERVICE_DIR``, else ``service`` in ``fabric_home()`` (``$FABRIC_HOME``, else
        ``~/.fabric``): where every ``fabric service`` command looks without ``--data-dir``."""
        explicit = os.environ.get(DATA_DIR_VARIABLE)
        return explicit if explicit else str(fabric_home() / "service")


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
