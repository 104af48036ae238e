"""Configuration of the endpoint-side processes: frozen, keyword-only dataclasses.

A parent process hands its child a configuration as JSON on the command line
(``to_json`` / ``from_json``), never as a pickle. Every value is checked in
``__post_init__`` so a bad value fails where it is written, with ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import typing
from typing import Any, TypeVar

from fabric.errors import ConfigError

T = TypeVar("T", bound="JsonConfig")


class JsonConfig:
    """JSON round trip and type checking shared by the configuration classes (these and
    ``service.config.ServiceConfig``): ``from_dict`` refuses unknown settings and builds
    nested configurations; ``_check_types``, called first in ``__post_init__``, refuses a
    value that is not of its field's annotated type."""

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
        data = {name: _nested(cls, name, value) for name, value in data.items()}
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


_JsonConfig = JsonConfig  # its name before service.config used it too


def _nested(cls: type, name: str, value: Any) -> Any:
    """A nested configuration given as a JSON object becomes its configuration class
    (also the values of a ``dict[str, SomeConfig]``)."""
    if not isinstance(value, dict):
        return value
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is dict:
        item = typing.get_args(hint)[1]
        if isinstance(item, type) and issubclass(item, _JsonConfig):
            return {key: item.from_dict(v) if isinstance(v, dict) else v for key, v in value.items()}
        return value
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, JsonConfig):
            return candidate.from_dict(value)
    return value


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
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # ``tuple[str, ...]``: any length
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
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


Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


def _check_z85_key(key: str) -> None:
    if len(key) != 40 or not set(key) <= Z85_ALPHABET:
        raise ConfigError(f"a CurveZMQ key is 40 z85 characters, got {len(key)} characters")


def _check_curve_keys(server: str | None, public: str | None, secret: str | None) -> None:
    """CurveZMQ keys: all three or none, each 40 z85 characters (a 32-byte key)."""
    keys = [key for key in (server, public, secret) if key is not None]
    if not keys:
        return
    if len(keys) != 3:
        raise ConfigError("upstream_server_key, upstream_public_key and upstream_secret_key go together: "
                          "give all three or none")
    for key in keys:
        _check_z85_key(key)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name or interface name (``*``, ``eth0``): reachable from elsewhere
        return False


def _check_allowed_functions(function_ids: list[str] | None) -> None:
    if function_ids is not None and not all(function_ids):
        raise ConfigError(f"allowed_functions must be a list of function ids (non-empty strings) or None, "
                          f"got {function_ids!r}")


def _check_heartbeats(period: float, threshold: float) -> None:
    _positive("heartbeat_period", period)
    _positive("heartbeat_threshold", threshold)
    if threshold < 2 * period:
        raise ConfigError(
            f"heartbeat_threshold ({threshold}) must be at least twice heartbeat_period ({period})"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ManagerConfig(JsonConfig):
    """One manager: the node agent that runs ``workers`` worker processes.

    ``prefetch`` is how many tasks beyond one per worker the manager asks for; ``None``
    (the default) adapts it to the measured task duration: deep queues for tiny tasks,
    shallow ones for long tasks, so both throughput and load balance stay good.
    ``accelerators`` lists device ids to pin workers to (``None``: discover them once).
    ``cpu_affinity`` is ``none``, ``block``, ``block-reverse``, ``alternating`` or
    ``list:0,1:2,3``. ``block_id`` is the block (batch job) the manager runs in;
    ``drain_at`` the wall-clock time (seconds since the epoch) at which it stops starting
    tasks, finishes those its workers hold and exits, so its job's walltime never kills a
    task mid-run (set by the job script from the block's walltime).

    With ``curve_server_key`` (the interchange's z85 public key) and ``curve_key_file``
    (a JSON file ``{"public", "secret"}`` of this manager's own key pair, readable by its
    user only) the connection to the interchange is a CurveZMQ client; both or neither.
    The secret key is never part of this configuration, which travels on command lines.

    ``data_only_arguments``: workers decode task arguments data-only (``fabric.data_only``),
    never unpickling them. ``sandbox_workers``: workers hide ``hidden_paths`` (and the key
    file's folder) from the code they run (``fabric.sandbox``); None: if the system allows,
    with a warning otherwise; True: a worker that cannot is not started; False: no sandbox.

    ``containers``, ``mpi_launcher`` and ``mpi_options``: as in ``InterchangeConfig``.
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
    drain_at: float | None = None
    curve_server_key: str | None = None
    curve_key_file: str | None = None
    data_only_arguments: bool = False
    sandbox_workers: bool | None = False
    hidden_paths: list[str] = dataclasses.field(default_factory=list)
    containers: dict[str, ContainerConfig] = dataclasses.field(default_factory=dict)
    mpi_launcher: str = "auto"
    mpi_options: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self._check_types()
        _check_mpi_launcher(self.mpi_launcher)
        if self.workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")
        if (self.curve_server_key is None) != (self.curve_key_file is None):
            raise ConfigError("curve_server_key and curve_key_file go together: give both or neither")
        if self.curve_server_key is not None:
            _check_z85_key(self.curve_server_key)
        _check_prefetch(self.prefetch)
        _positive("max_result_bytes", self.max_result_bytes)
        _check_heartbeats(self.heartbeat_period, self.heartbeat_threshold)

CONTAINER_TYPES = ("podman", "docker", "bubblewrap", "apptainer")
MPI_LAUNCHERS = ("auto", "mpiexec", "mpirun", "srun")


def _check_mpi_launcher(launcher: str) -> None:
    if launcher not in MPI_LAUNCHERS:
        raise ConfigError(f"mpi_launcher must be one of {MPI_LAUNCHERS}, got {launcher!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContainerConfig(_JsonConfig):
    """A container an endpoint's workers may run in, named in ``InterchangeConfig.containers``.

    ``type``: ``podman``, ``docker``, ``bubblewrap`` or ``apptainer``. ``image``: the image
    (podman, docker, apptainer; never pulled: it must be on the node), or ``rootfs``: a
    root filesystem folder (podman ``--rootfs``; ``/:O`` is the node's own root, copy on
    write; bubblewrap: the folder bound read-only as ``/``, default the node's ``/``).
    ``binds``: ``host:container[:ro]`` mounts; ``options``: extra command-line options of
    the runtime. ``python``: the interpreter inside (None: the endpoint's own path, right
    when the container sees the node's filesystem). The fabric's own code and environment
    are bound in read-only; the network is off (``--network=none`` / ``--unshare-all``)
    unless ``network`` is true.
    """

    type: str
    image: str | None = None
    rootfs: str | None = None
    binds: list[str] = dataclasses.field(default_factory=list)
    options: list[str] = dataclasses.field(default_factory=list)
    python: str | None = None
    network: bool = False

    def __post_init__(self) -> None:
        self._check_types()
        if self.type not in CONTAINER_TYPES:
            raise ConfigError(f"container type must be one of {CONTAINER_TYPES}, got {self.type!r}")
        if self.image is not None and self.rootfs is not None:
            raise ConfigError("a container has an image or a rootfs, not both")
        if self.type in ("docker", "apptainer") and not self.image:
            raise ConfigError(f"a {self.type} container needs an image")
        if self.type == "podman" and not (self.image or self.rootfs):
            raise ConfigError("a podman container needs an image or a rootfs")
        for bind in self.binds:
            if ":" not in bind or not bind.split(":")[0] or not bind.split(":")[1]:
                raise ConfigError(f"a bind mount is host:container[:ro], got {bind!r}")


CONTAINERS_VARIABLE = "FABRIC_CONTAINERS"
CONTAINER_WORKER_LABEL = "fabric.worker-pid"
"""The label of the podman and docker containers a worker starts: its pid (so its manager can
remove what a killed worker left behind)."""
MPI_LAUNCHER_VARIABLE = "FABRIC_MPI_LAUNCHER"
MPI_OPTIONS_VARIABLE = "FABRIC_MPI_OPTIONS"


def worker_settings(config: ManagerConfig) -> dict[str, str]:
    """The environment variables that carry a manager's container and MPI settings to its
    workers (read by ``worker.environments``); empty when there are none."""
    env = {}
    if config.containers:
        env[CONTAINERS_VARIABLE] = json.dumps({name: dataclasses.asdict(c) for name, c in config.containers.items()})
    if config.mpi_launcher != "auto":
        env[MPI_LAUNCHER_VARIABLE] = config.mpi_launcher
    if config.mpi_options:
        env[MPI_OPTIONS_VARIABLE] = json.dumps(config.mpi_options)
    return env


PROVIDER_KINDS = ("local", "slurm", "pbspro", "kubernetes")
LAUNCHERS = ("auto", "single", "srun", "mpiexec")


def _optional_positive(name: str, value: float | None) -> None:
    if value is not None:
        _positive(name, value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProviderConfig(JsonConfig):
    """Where an endpoint's blocks (units of allocation running managers) come from.

    ``kind``: ``local`` (managers as child processes, the default), ``slurm``, ``pbspro``
    or ``kubernetes``. A block has ``nodes_per_block`` nodes, one manager each, started
    by ``launcher`` (``auto``: ``srun`` on Slurm, ``mpiexec`` on PBS Pro, else ``single``).
    ``walltime`` is a block's time limit in seconds (None: the scheduler's default;
    unlimited locally); its managers drain ``drain_margin`` seconds before it ends (None:
    a tenth of the walltime, at most 120 s). ``worker_init`` lines run before the
    managers (``module load``, ``conda activate``); ``scheduler_options`` are extra
    directive lines (``#SBATCH ...`` / ``#PBS ...``; a bare option gets the prefix).
    ``python`` runs the managers (None: this interpreter; ``python3`` on Kubernetes).
    Job scripts and logs go to ``script_dir``, which jobs must be able to read. Batch
    schedulers are asked for job states every ``poll_period`` seconds.

    Slurm and PBS Pro: ``partition`` (PBS: the queue), ``account``, ``qos``,
    ``cores_per_node``, ``mem_per_node`` (MB), ``gpus_per_node``, ``exclusive``.
    Kubernetes (one pod per block): ``image``, ``namespace``, ``pull_policy``,
    ``service_account``, and ``cores_per_node``, ``mem_per_node``, ``gpus_per_node`` as
    the pod's resources.
    """

    kind: str = "local"
    nodes_per_block: int = 1
    launcher: str = "auto"
    walltime: float | None = None
    drain_margin: float | None = None
    worker_init: list[str] = dataclasses.field(default_factory=list)
    scheduler_options: list[str] = dataclasses.field(default_factory=list)
    python: str | None = None
    script_dir: str | None = None
    poll_period: float = 10.0
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    cores_per_node: int | None = None
    mem_per_node: int | None = None
    gpus_per_node: int | None = None
    exclusive: bool = False
    image: str | None = None
    namespace: str = "default"
    pull_policy: str = "IfNotPresent"
    service_account: str | None = None

    def __post_init__(self) -> None:
        self._check_types()
        if self.kind not in PROVIDER_KINDS:
            raise ConfigError(f"provider kind must be one of {PROVIDER_KINDS}, got {self.kind!r}")
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher must be one of {LAUNCHERS}, got {self.launcher!r}")
        if self.nodes_per_block < 1:
            raise ConfigError(f"nodes_per_block must be >= 1, got {self.nodes_per_block!r}")
        for name in ("walltime", "cores_per_node", "mem_per_node", "gpus_per_node"):
            _optional_positive(name, getattr(self, name))
        _positive("poll_period", self.poll_period)
        if self.drain_margin is not None:
            if self.walltime is None or not 0 <= self.drain_margin < self.walltime:
                raise ConfigError(f"drain_margin ({self.drain_margin!r}) needs a walltime longer than it")
        if self.kind == "kubernetes":
            if not self.image:
                raise ConfigError("the kubernetes provider needs an image")
            if self.nodes_per_block != 1:
                raise ConfigError("the kubernetes provider runs one pod (one node) per block")

    @property
    def effective_drain_margin(self) -> float:
        """Seconds before the walltime at which managers drain (0 without a walltime)."""
        if self.walltime is None:
            return 0.0
        if self.drain_margin is not None:
            return self.drain_margin
        return min(120.0, self.walltime / 10)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScalingConfig(JsonConfig):
    """How many blocks an endpoint holds (``interchange.strategy`` has the rules).

    ``init_blocks`` are submitted at start; the endpoint never holds fewer than
    ``min_blocks`` nor more than ``max_blocks``. With ``parallelism`` 1 it asks for a
    worker per outstanding task (0: only what ``min_blocks`` says, or one block when
    there is work and none). A block idle for ``max_idletime`` seconds is held, then
    cancelled. The strategy runs every ``strategy_period`` seconds; a running job whose
    managers have not registered within ``registration_timeout`` seconds is cancelled as
    failed, and ``max_block_failures`` failures in a row put the endpoint in an error state.
    """

    init_blocks: int = 1
    min_blocks: int = 0
    max_blocks: int = 1
    parallelism: float = 1.0
    max_idletime: float = 120.0
    strategy_period: float = 1.0
    registration_timeout: float = 300.0
    max_block_failures: int = 3

    def __post_init__(self) -> None:
        self._check_types()
        if not 0 <= self.min_blocks <= self.max_blocks:
            raise ConfigError(f"need 0 <= min_blocks <= max_blocks, got {self.min_blocks!r}, {self.max_blocks!r}")
        if not 0 <= self.init_blocks <= self.max_blocks:
            raise ConfigError(f"init_blocks must be between 0 and max_blocks, got {self.init_blocks!r}")
        if not 0 <= self.parallelism <= 1:
            raise ConfigError(f"parallelism must be between 0 and 1, got {self.parallelism!r}")
        if self.max_idletime < 0:
            raise ConfigError(f"max_idletime must be >= 0, got {self.max_idletime!r}")
        _positive("strategy_period", self.strategy_period)
        _positive("registration_timeout", self.registration_timeout)
        if self.max_block_failures < 1:
            raise ConfigError(f"max_block_failures must be >= 1, got {self.max_block_failures!r}")


MAX_LABELS = 64


@dataclasses.dataclass(frozen=True, kw_only=True)
class InterchangeConfig(JsonConfig):
    """One interchange: binds a ROUTER for managers and connects out to its upstream.

    ``upstream_address`` is where tasks come from (the local ``Endpoint`` or the service).
    Managers connect to ``manager_host`` on ``manager_port`` (0: a free port in
    ``manager_port_range``). Each manager runs ``workers_per_manager`` workers. Blocks of
    managers come from ``provider`` and are scaled by ``scaling``; without ``scaling``,
    the endpoint keeps a fixed pool of ``local_managers`` one-manager blocks (crashed
    ones are replaced). ``max_message_bytes`` caps any inbound message; bigger ones are
    refused and the sender disconnected.

    With ``upstream_server_key``, ``upstream_public_key`` and ``upstream_secret_key``
    (z85 CurveZMQ keys, 40 characters; all three or none) the upstream connection is a
    CurveZMQ client of that server. ``exit_with_upstream``: stop once the upstream has been
    silent for ``heartbeat_threshold`` (the local ``Endpoint``). With ``spool_dir`` the
    interchange is in *service mode* (``exit_with_upstream`` must then be False): it
    outlives service outages, reconnecting and registering again; every result it sends
    is held until the service acknowledges it (``ResultsAck``), and results it cannot
    deliver are kept on disk in ``spool_dir`` (also across interchange restarts).

    ``manager_curve``: the managers' connections are CurveZMQ (encrypted, and only managers
    holding a key pair this interchange made are admitted). None (the default): on when
    ``manager_host`` is not a loopback address. Each block's managers get their key pairs
    as files readable by the user only, in a private folder made in the provider's
    ``script_dir`` (which batch jobs must be able to read) or, without one, in the system's
    temporary folder; the folder is removed when the interchange stops. Kubernetes pods
    cannot read such files: with the ``kubernetes`` provider it must be off (None means off).

    ``containers``: the containers (``ContainerConfig``) by name that tasks may ask for
    (``Task.spec["container"]``); a task asking for another is answered with
    ``ContainerNotAllowed`` and never runs. ``mpi_launcher`` starts an ``MPIFunction``'s
    ranks (``auto``: ``srun`` inside a Slurm job, else ``mpiexec``), with ``mpi_options``
    (e.g. ``["--oversubscribe"]``).

    ``labels``: what the endpoint declares about itself for routing (``site``,
    ``cost_per_core_hour``, ``near``: a list of places, or any name), sent with each status
    report; a group's tasks may require a label (``requires={"site": "aps"}``).

    ``allowed_functions``: the function ids (``fabric.serialize.function_id``: a hash of the
    function's body) this endpoint runs; a task of any other function is never sent to a
    manager but answered with ``FunctionNotAllowed``. None (the default): any function.
    The owner's or facility's own policy, applied here whatever the upstream sends.

    ``data_only_arguments``: take only data-only task arguments (``fabric.data_only``: no
    pickle, so an argument cannot run code when decoded); others are answered with
    ``SerializerNotAllowed`` by the interchange, and workers never unpickle arguments.
    None (the default): on when ``allowed_functions`` is set (else a caller allowed one
    function could run anything through its arguments). The service is told at registration
    and refuses such tasks at submit. The function bodies themselves stay pickles: the
    allow-list pins them by hash.

    ``sandbox_workers``: workers cannot see ``hidden_paths`` (None: the fabric home, where
    the owner's token and the endpoints' keys are) nor the managers' key files
    (``fabric.sandbox``). None (the default): when the system allows it, else with a
    warning in the managers' logs; True: required (workers do not start without it);
    False: off.
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
    provider: ProviderConfig = dataclasses.field(default_factory=ProviderConfig)
    scaling: ScalingConfig | None = None
    upstream_server_key: str | None = None
    upstream_public_key: str | None = None
    upstream_secret_key: str | None = None
    spool_dir: str | None = None
    manager_curve: bool | None = None
    allowed_functions: list[str] | None = None
    data_only_arguments: bool | None = None
    sandbox_workers: bool | None = None
    hidden_paths: list[str] | None = None
    containers: dict[str, ContainerConfig] = dataclasses.field(default_factory=dict)
    mpi_launcher: str = "auto"
    mpi_options: list[str] = dataclasses.field(default_factory=list)
    labels: dict[str, str | float | bool | list[str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_types()
        _check_mpi_launcher(self.mpi_launcher)
        _check_allowed_functions(self.allowed_functions)
        if len(self.labels) > MAX_LABELS or not all(0 < len(k) <= 256 for k in self.labels):
            raise ConfigError(f"labels: at most {MAX_LABELS}, each named by 1 to 256 characters")
        _check_curve_keys(self.upstream_server_key, self.upstream_public_key, self.upstream_secret_key)
        if self.manager_curve and self.provider.kind == "kubernetes":
            raise ConfigError("manager_curve is not available with the kubernetes provider (pods cannot read the "
                              "managers' key files)")
        if self.spool_dir is not None:
            if not self.spool_dir:
                raise ConfigError("spool_dir must be a folder path or None, not empty")
            if self.exit_with_upstream:
                raise ConfigError("spool_dir (service mode) needs exit_with_upstream=False")
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

    @property
    def service_mode(self) -> bool:
        """Results are held until acknowledged and spooled to ``spool_dir`` while undeliverable."""
        return self.spool_dir is not None

    @property
    def scaling_settings(self) -> ScalingConfig:
        """``scaling``, or the fixed pool of ``local_managers`` blocks it defaults to."""
        if self.scaling is not None:
            return self.scaling
        return ScalingConfig(init_blocks=self.local_managers, min_blocks=self.local_managers,
                             max_blocks=self.local_managers)

    @property
    def manager_curve_enabled(self) -> bool:
        """Whether managers connect with CurveZMQ (``manager_curve``, resolved)."""
        if self.manager_curve is not None:
            return self.manager_curve
        return self.provider.kind != "kubernetes" and not is_loopback(self.manager_host)

    def manager_config(self, manager_id: str, manager_address: str, block_id: str | None = None, *,
                       curve_server_key: str | None = None, curve_key_file: str | None = None) -> ManagerConfig:
        """The configuration of one manager (of block ``block_id``)."""
        return ManagerConfig(
            interchange_address=manager_address,
            manager_id=manager_id,
            block_id=block_id,
            workers=self.workers_per_manager,
            prefetch=self.prefetch,
            accelerators=self.accelerators,
            cpu_affinity=self.cpu_affinity,
            heartbeat_period=self.heartbeat_period,
            heartbeat_threshold=self.heartbeat_threshold,
            max_result_bytes=self.max_payload_bytes,
            curve_server_key=curve_server_key,
            curve_key_file=curve_key_file,
            data_only_arguments=self.data_only_enabled,
            sandbox_workers=self.sandbox_workers,
            hidden_paths=self.hidden_paths_resolved,
            containers=self.containers,
            mpi_launcher=self.mpi_launcher,
            mpi_options=self.mpi_options,
        )

    @property
    def data_only_enabled(self) -> bool:
        """Whether task arguments must be data-only (``data_only_arguments``, resolved)."""
        if self.data_only_arguments is not None:
            return self.data_only_arguments
        return self.allowed_functions is not None

    @property
    def hidden_paths_resolved(self) -> list[str]:
        """What workers never see: ``hidden_paths``, or the fabric home; and the spool."""
        from fabric.sandbox import default_hidden

        paths = list(self.hidden_paths) if self.hidden_paths is not None else default_hidden()
        return paths + ([self.spool_dir] if self.spool_dir else [])

    @property
    def max_payload_bytes(self) -> int:
        """The largest arguments or result one task may carry: half a message."""
        return self.max_message_bytes // 2
