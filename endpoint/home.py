"""An endpoint's folder: its paths, its settings (config.json), registration and pid file.

Every endpoint has a folder under ``fabric.home.fabric_home()`` (``$FABRIC_HOME`` or ``~/.fabric``)::

    endpoints/NAME/config.json     its settings, JSON a user may edit (``fabric endpoint configure``)
    endpoints/NAME/endpoint.json   its latest registration with the service (mode 0600: the secret key)
    endpoints/NAME/start.lock      held by ``fabric endpoint start`` while it registers and starts the endpoint
    endpoints/NAME/daemon.pid      the pid of the running endpoint (daemon or ``--foreground``)
    endpoints/NAME/endpoint.log    what the endpoint daemon logs (appended to)
    endpoints/NAME/spool/          the interchange's spool (results waiting for the service)

``config.json`` holds ``service_url`` and any ``InterchangeConfig`` setting except those
``fabric endpoint start`` sets from the registration and the folder (``SET_BY_START``);
``EndpointSettings.from_dict`` checks it by building the real configuration classes.
Its ``allowed_functions`` (the allow-list) is enforced by the interchange and sent to the
service at each registration.
The commands themselves are in ``endpoint.cli``, the daemon in ``endpoint.daemon``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from fabric.config import InterchangeConfig
from fabric.errors import ConfigError
from fabric.home import fabric_home

if TYPE_CHECKING:
    import psutil

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
CPU_AFFINITY_PATTERN = re.compile(r"none|block|block-reverse|alternating|list:\d+(,\d+)*(:\d+(,\d+)*)*")
SET_BY_START = ("upstream_address", "endpoint_id", "upstream_server_key", "upstream_public_key",
                "upstream_secret_key", "spool_dir", "exit_with_upstream")
"""InterchangeConfig fields that come from the registration and the folder, never from config.json."""
DAEMON_MODULE = "endpoint.daemon"
"""The daemon's command line is ``python -m endpoint.daemon DIR``."""
DAEMON_MODULES = (DAEMON_MODULE, "fabric.endpoint_cli")
"""Module names a daemon's command line may show: today's, and the name daemons started
before the endpoint package existed ran under (so ``stop`` still finds them)."""


# -- files ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class EndpointPaths:
    """The files of the endpoint ``name`` in ``home``."""

    name: str
    directory: Path

    @classmethod
    def of(cls, name: str, home: Path | None = None) -> EndpointPaths:
        if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
            raise ConfigError(f"bad endpoint name {name!r}: use 1 to 128 letters, digits, '-', '_' or '.'")
        if home is None:
            home = fabric_home()
        return cls(name, (home / "endpoints" / name).absolute())

    @property
    def config(self) -> Path:
        return self.directory / "config.json"

    @property
    def registration(self) -> Path:
        return self.directory / "endpoint.json"

    @property
    def pid_file(self) -> Path:
        return self.directory / "daemon.pid"

    @property
    def log(self) -> Path:
        return self.directory / "endpoint.log"

    @property
    def spool(self) -> Path:
        return self.directory / "spool"

    @property
    def start_lock(self) -> Path:
        return self.directory / "start.lock"


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    """Replace ``path`` atomically with ``data`` as JSON, created with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object")
    return data


# -- settings (config.json) ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class EndpointSettings:
    """An endpoint's ``config.json``: its service and the interchange settings it overrides."""

    service_url: str
    interchange: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointSettings:
        """Check every value by building the real configuration classes (``ConfigError`` if bad)."""
        data = dict(data)
        service_url = check_service_url(data.pop("service_url", None))
        reserved = sorted(set(data) & set(SET_BY_START))
        if reserved:
            raise ConfigError(f"{reserved} are set by `fabric endpoint start`, not in the configuration")
        affinity = data.get("cpu_affinity", "none")
        if isinstance(affinity, str) and not CPU_AFFINITY_PATTERN.fullmatch(affinity):
            raise ConfigError(f"cpu_affinity must be none, block, block-reverse, alternating or "
                              f"list:0,1:2,3, got {affinity!r}")
        settings = cls(service_url, data)
        settings.interchange_config({"forwarder_address": "tcp://127.0.0.1:1", "endpoint_id": "unregistered"})
        return settings

    @classmethod
    def load(cls, paths: EndpointPaths) -> EndpointSettings:
        if not paths.config.exists():
            raise ConfigError(f"no endpoint named {paths.name!r} in {paths.directory.parent}; "
                              f"create it with `fabric endpoint configure {paths.name}`")
        data = read_json(paths.config, "the configuration")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{paths.config}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return {"service_url": self.service_url, **self.interchange}

    @property
    def allowed_functions(self) -> list[str] | None:
        """The only function ids the endpoint runs (None: any function)."""
        allowed: list[str] | None = self.interchange.get("allowed_functions")
        return allowed

    def interchange_config(self, registration: dict[str, Any], spool_dir: str | None = None) -> InterchangeConfig:
        """The interchange's configuration once the endpoint is registered."""
        keys: dict[str, Any] = {}
        if "secret_key" in registration:
            keys = {"upstream_server_key": registration["server_public_key"],
                    "upstream_public_key": registration["public_key"],
                    "upstream_secret_key": registration["secret_key"], "spool_dir": spool_dir}
        return InterchangeConfig.from_dict({
            **self.interchange, **keys, "upstream_address": registration["forwarder_address"],
            "endpoint_id": registration["endpoint_id"], "exit_with_upstream": False})


def check_service_url(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigError("service_url is missing: pass --service-url, set FABRIC_SERVICE_URL or run `fabric login`")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"service_url must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def stored_registration(paths: EndpointPaths) -> dict[str, Any] | None:
    try:
        return read_json(paths.registration, "the registration")
    except FileNotFoundError:
        return None


# -- the pid file ---------------------------------------------------------------------------
def endpoint_process(paths: EndpointPaths, *, remove_stale: bool = False) -> psutil.Process | None:
    """The live process the pid file names, if it really is this endpoint (its command line
    says so); with ``remove_stale`` a pid file naming anything else is removed."""
    import psutil

    try:
        pid = int(paths.pid_file.read_text().split()[0])
    except FileNotFoundError:
        return None
    except (ValueError, IndexError, OSError):
        pid = 0
    try:
        process = psutil.Process(pid) if pid > 0 else None
        if process is not None and process.status() != psutil.STATUS_ZOMBIE and _is_endpoint(process, paths):
            return process
    except psutil.Error:
        pass
    if remove_stale:
        logger.info("removing the stale pid file %s", paths.pid_file)
        paths.pid_file.unlink(missing_ok=True)
    return None


def _is_endpoint(process: psutil.Process, paths: EndpointPaths) -> bool:
    """A daemon is ``python -m endpoint.daemon DIR``; a foreground one ``... endpoint start NAME --foreground``."""
    args = process.cmdline()
    for module in DAEMON_MODULES:
        if module in args[:-1]:
            directory = Path(args[args.index(module) + 1])
            return directory.name == paths.name and directory.resolve() == paths.directory.resolve()
    return "endpoint" in args and "start" in args and paths.name in args and "--foreground" in args


def claim_pid_file(paths: EndpointPaths, pid: int) -> bool:
    """Create the pid file naming ``pid`` unless one exists (atomically); True if it was created."""
    temporary = paths.pid_file.with_name(f".daemon.pid.{os.getpid()}")
    temporary.write_text(f"{pid}\n")
    try:
        os.link(temporary, paths.pid_file)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def start_lock(paths: EndpointPaths) -> Iterator[None]:
    """Hold the endpoint's start lock (waiting for it): one ``start`` at a time registers (which
    rotates the keys), stores the registration and claims the pid file, so no endpoint
    process ever reads keys that another ``start`` has already replaced."""
    paths.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(paths.start_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def release_pid_file(paths: EndpointPaths, pid: int) -> None:
    """Remove the pid file if it still names ``pid``."""
    try:
        if int(paths.pid_file.read_text().split()[0]) == pid:
            paths.pid_file.unlink()
    except (OSError, ValueError, IndexError):
        pass
