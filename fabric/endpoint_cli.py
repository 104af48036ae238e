"""``fabric endpoint configure|start|stop|list|status``: endpoints that connect out to a service.

Every endpoint has a folder under ``fabric_home()`` (``$FABRIC_HOME`` or ``~/.fabric``)::

    endpoints/NAME/config.json     its settings, JSON a user may edit (``configure`` writes it)
    endpoints/NAME/endpoint.json   its registration with the service (mode 0600: the secret key)
    endpoints/NAME/daemon.pid      the pid of the running endpoint
    endpoints/NAME/endpoint.log    what the endpoint daemon logs (appended to)
    endpoints/NAME/spool/          the interchange's spool (results waiting for the service)

``start`` registers the endpoint with the service (the same name always gets the same id
and keys back, and a fresh forwarder address), then runs the endpoint's interchange: in
this process with ``--foreground``, else as a daemon (``python -m fabric.endpoint_cli
DIR``: a new session, not tied to the ``fabric`` process that started it) and waits until
the service reports it online. ``stop`` ends the daemon and everything it started.

Secrets never go on a command line (other users can read it): the daemon reads the
registration from its folder. Only stdlib modules and ``fabric.config`` are imported up
front; ``psutil`` and the interchange are imported when a command needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from fabric.config import PROVIDER_KINDS, InterchangeConfig, ProviderConfig, ScalingConfig
from fabric.errors import ConfigError, EndpointError

if TYPE_CHECKING:
    import psutil

    from sdk.client import Client

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0
"""Seconds ``start`` waits for the service to report a new daemon online."""
STOP_TIMEOUT = 30.0
"""Seconds ``stop`` waits for the daemon (and its managers) to exit before killing them."""
HTTP_TIMEOUT = 10.0
SERVICE_RETRY = 3.0
"""Seconds a request to the service is retried while it cannot be reached (it may be restarting)."""
LOG_TAIL_LINES = 20
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
CPU_AFFINITY_PATTERN = re.compile(r"none|block|block-reverse|alternating|list:\d+(,\d+)*(:\d+(,\d+)*)*")
SET_BY_START = ("upstream_address", "endpoint_id", "upstream_server_key", "upstream_public_key",
                "upstream_secret_key", "spool_dir", "exit_with_upstream")
"""InterchangeConfig fields that come from the registration and the folder, never from config.json."""


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
            from sdk.credentials import fabric_home

            home = fabric_home()
        return cls(name, home / "endpoints" / name)

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


def settings_from_options(options: argparse.Namespace) -> EndpointSettings:
    """``configure``'s options as settings: every interchange knob a user may edit, spelled out."""
    from sdk.credentials import resolve

    defaults = {f.name: f.default for f in dataclasses.fields(InterchangeConfig)}
    accelerators = None
    if options.accelerators is not None:
        accelerators = [a.strip() for a in options.accelerators.split(",")]
        if not all(accelerators):
            raise ConfigError(f"--accelerators: expected device ids separated by commas, got {options.accelerators!r}")
    provider = ProviderConfig(kind=options.provider, image=options.image)
    scaling = None if options.provider == "local" else ScalingConfig()  # batch jobs: elastic
    return EndpointSettings.from_dict({
        "service_url": options.service_url or resolve(None, None).service_url,
        "workers_per_manager": (os.cpu_count() or 1) if options.workers is None else options.workers,
        "local_managers": options.managers,
        "prefetch": options.prefetch,
        "accelerators": accelerators,
        "cpu_affinity": options.cpu_affinity,
        "heartbeat_period": defaults["heartbeat_period"],
        "heartbeat_threshold": defaults["heartbeat_threshold"],
        "manager_host": defaults["manager_host"],
        "provider": dataclasses.asdict(provider),
        "scaling": dataclasses.asdict(scaling) if scaling else None,
    })


# -- the service ---------------------------------------------------------------------------
def service_client(service_url: str, retry_for: float = SERVICE_RETRY) -> Client:
    """An SDK ``Client`` for the endpoint's service, with the user's token (``sdk.credentials``)."""
    from sdk.client import Client
    from sdk.credentials import resolve

    if resolve(service_url, None).token is None:
        raise ConfigError(f"no token for {service_url}: set FABRIC_TOKEN or run `fabric login --service-url "
                          f"{service_url}`")
    return Client(service_url, timeout=HTTP_TIMEOUT, retry_for=retry_for)


def register(paths: EndpointPaths, settings: EndpointSettings) -> dict[str, Any]:
    """Register (idempotently) with the service and store the registration, mode 0600."""
    from fabric.errors import AuthError, ServiceError

    try:
        reply = service_client(settings.service_url).register_endpoint(paths.name)
    except AuthError as exc:
        raise EndpointError(f"the service at {settings.service_url} refused the token ({exc}): set FABRIC_TOKEN "
                            f"or run `fabric login`") from exc
    except ServiceError as exc:
        raise EndpointError(f"cannot register endpoint {paths.name}: {describe(exc, settings.service_url)}") from exc
    registration = {"service_url": settings.service_url,
                    **{key: reply[key] for key in ("endpoint_id", "name", "forwarder_address",
                                                   "server_public_key", "public_key", "secret_key")}}
    previous = stored_registration(paths)
    if previous and previous.get("endpoint_id") != registration["endpoint_id"]:
        logger.warning("endpoint %s was %s; the service registered it as %s", paths.name,
                       previous.get("endpoint_id"), registration["endpoint_id"])
    write_json(paths.registration, registration, mode=0o600)
    os.chmod(paths.registration, 0o600)
    return registration


def stored_registration(paths: EndpointPaths) -> dict[str, Any] | None:
    try:
        return read_json(paths.registration, "the registration")
    except FileNotFoundError:
        return None


def service_view(settings: EndpointSettings, endpoint_id: str, retry_for: float = SERVICE_RETRY) -> dict[str, Any]:
    """What the service knows of the endpoint (``GET /v1/endpoints/<id>``); ``EndpointError`` if it cannot say."""
    from fabric.errors import ServiceError

    try:
        return service_client(settings.service_url, retry_for).get_endpoint_status(quote(endpoint_id))
    except ServiceError as exc:
        raise EndpointError(describe(exc, settings.service_url)) from exc


def describe(error: BaseException, service_url: str) -> str:
    """One line for a failed request: the root cause of a connection failure, else the error."""
    cause: BaseException | None = error.__cause__
    if cause is None or getattr(error, "status", 0):
        return str(error)
    while cause is not None:  # requests -> urllib3 -> the socket's own error
        root = cause
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else (cause.__cause__ or cause.__context__)
    return f"cannot reach the service at {service_url}: {root}"


# -- processes -----------------------------------------------------------------------------
def endpoint_process(paths: EndpointPaths) -> psutil.Process | None:
    """The live process the pid file names, if it really is this endpoint; a stale pid file is removed."""
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
    logger.info("removing the stale pid file %s", paths.pid_file)
    paths.pid_file.unlink(missing_ok=True)
    return None


def _is_endpoint(process: psutil.Process, paths: EndpointPaths) -> bool:
    """A daemon names its folder on its command line; a foreground endpoint is ``... endpoint start NAME``."""
    args = process.cmdline()
    if str(paths.directory) in args and "fabric.endpoint_cli" in args:
        return True
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


def release_pid_file(paths: EndpointPaths, pid: int) -> None:
    """Remove the pid file if it still names ``pid``."""
    try:
        if int(paths.pid_file.read_text().split()[0]) == pid:
            paths.pid_file.unlink()
    except (OSError, ValueError, IndexError):
        pass


def refuse_if_running(paths: EndpointPaths) -> None:
    process = endpoint_process(paths)
    if process is not None:
        raise EndpointError(f"endpoint {paths.name} is already running (pid {process.pid}); "
                            f"stop it with `fabric endpoint stop {paths.name}`")


def spawn_daemon(paths: EndpointPaths, log_level: str | None) -> subprocess.Popen[bytes]:
    """Start the daemon in its own session, output appended to the log, stdin from /dev/null."""
    from fabric.process import child_environment

    command = [sys.executable, "-m", "fabric.endpoint_cli", str(paths.directory)]
    if log_level:
        command += ["--log-level", log_level]
    with open(paths.log, "ab") as log:
        return subprocess.Popen(command, env=child_environment(), cwd=paths.directory, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)


def wait_online(process: subprocess.Popen[bytes], settings: EndpointSettings, endpoint_id: str,
                timeout: float = START_TIMEOUT) -> bool:
    """Wait until the service reports the endpoint online (True) or the time is up (False).

    Raises ``EndpointError`` if the daemon exits first.
    """
    deadline = time.monotonic() + timeout
    pause = 0.02
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EndpointError(f"the endpoint exited with code {process.returncode}")
        try:
            if service_view(settings, endpoint_id, retry_for=0.0).get("status") == "online":
                return True
        except EndpointError as exc:
            logger.debug("waiting for the service: %s", exc)
        time.sleep(pause)
        pause = min(pause * 2, 0.5)
    return False


def terminate(process: psutil.Process, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the endpoint and wait for it and everything it started; SIGKILL what lingers.

    Returns True if everything exited on SIGTERM.
    """
    import psutil

    try:
        tree = [process, *process.children(recursive=True)]
        group = os.getpgid(process.pid)
        process.terminate()
    except (psutil.Error, ProcessLookupError):
        return True
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    if not alive:
        return True
    logger.warning("endpoint still running after %.0f s: killing %s", timeout, [p.pid for p in alive])
    if group == process.pid:  # the daemon leads its own session and process group
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5.0)
    return False


def log_tail(path: Path, offset: int, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines written to the log after ``offset``."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# -- serving (foreground or as the daemon) -------------------------------------------------
class _Stop(BaseException):
    """SIGTERM or SIGINT arrived: unwind through the interchange's clean-up."""


def _on_signal(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up at a time; `stop` kills if it hangs
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def serve(paths: EndpointPaths, *, detached: bool) -> int:
    """Run the endpoint's interchange in this process until it stops or a signal arrives."""
    from interchange.interchange import main as run_interchange

    settings = EndpointSettings.load(paths)
    registration = stored_registration(paths)
    if registration is None:
        raise ConfigError(f"{paths.registration} is missing: start the endpoint with `fabric endpoint start`")
    paths.spool.mkdir(mode=0o700, exist_ok=True)
    config = settings.interchange_config(registration, str(paths.spool))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    logger.info("endpoint %s (%s) starting, pid %d: service %s, forwarder %s", paths.name, config.endpoint_id,
                os.getpid(), settings.service_url, config.upstream_address)
    try:
        reason = run_interchange(config, exit_with_parent=not detached)
    except _Stop as stop:
        reason = f"stopped by {stop}"
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    logger.info("endpoint %s exiting: %s", paths.name, reason)
    return 0


def daemon_main(argv: Sequence[str] | None = None) -> int:
    """``python -m fabric.endpoint_cli DIR``: the endpoint daemon ``start`` spawns."""
    from fabric.process import configure_logging

    parser = argparse.ArgumentParser(prog="python -m fabric.endpoint_cli", description="Run an endpoint daemon.")
    parser.add_argument("directory", help="the endpoint's folder (fabric_home()/endpoints/NAME)")
    parser.add_argument("--log-level", default=None, type=str.upper)
    options = parser.parse_args(argv)
    configure_logging(options.log_level or os.environ.get("FABRIC_LOG_LEVEL") or "INFO")
    directory = Path(options.directory).absolute()
    paths = EndpointPaths.of(directory.name, directory.parent.parent)
    try:
        return serve(paths, detached=True)
    except Exception:
        logger.exception("endpoint %s failed", paths.name)
        return 1
    finally:
        release_pid_file(paths, os.getpid())


# -- the commands --------------------------------------------------------------------------
def configure_command(options: argparse.Namespace) -> int:
    """``fabric endpoint configure NAME``: write the endpoint's config.json."""
    paths = EndpointPaths.of(options.name)
    if paths.config.exists() and not options.force:
        raise ConfigError(f"endpoint {paths.name} already exists ({paths.config}); "
                          f"pass --force to replace its configuration")
    try:
        settings = settings_from_options(options)
    except ConfigError as exc:
        raise ConfigError(f"endpoint {paths.name}: {exc}") from exc
    write_json(paths.config, settings.to_dict())
    print(f"configured endpoint {paths.name} in {paths.config}")
    if options.provider != "local":
        print("managers run on other nodes: set manager_host in that file to an address they can reach")
    print(f"start it with: fabric endpoint start {paths.name}")
    return 0


def start_command(options: argparse.Namespace) -> int:
    """``fabric endpoint start NAME [--foreground]``: register, then run the endpoint."""
    paths = EndpointPaths.of(options.name)
    settings = EndpointSettings.load(paths)
    refuse_if_running(paths)
    registration = register(paths, settings)
    settings.interchange_config(registration, str(paths.spool))  # a bad setting fails here, not in the daemon
    if options.foreground:
        return _start_foreground(paths, options.log_level)
    return _start_daemon(paths, settings, registration["endpoint_id"], options.log_level)


def _start_foreground(paths: EndpointPaths, log_level: str | None) -> int:
    from fabric.process import configure_logging

    configure_logging(log_level or os.environ.get("FABRIC_LOG_LEVEL") or "INFO")
    if not claim_pid_file(paths, os.getpid()):
        refuse_if_running(paths)  # raises unless the other one just exited
        if not claim_pid_file(paths, os.getpid()):
            raise EndpointError(f"endpoint {paths.name} is starting elsewhere ({paths.pid_file})")
    try:
        return serve(paths, detached=False)
    finally:
        release_pid_file(paths, os.getpid())


def _start_daemon(paths: EndpointPaths, settings: EndpointSettings, endpoint_id: str, log_level: str | None) -> int:
    offset = paths.log.stat().st_size if paths.log.exists() else 0
    process = spawn_daemon(paths, log_level)
    if not claim_pid_file(paths, process.pid):  # another `start` won the race
        _end_spawned(process)
        refuse_if_running(paths)
        raise EndpointError(f"endpoint {paths.name} is starting elsewhere ({paths.pid_file})")
    try:
        online = wait_online(process, settings, endpoint_id)
    except EndpointError as exc:
        release_pid_file(paths, process.pid)
        tail = log_tail(paths.log, offset)
        if tail:
            print(tail, file=sys.stderr)
        raise EndpointError(f"endpoint {paths.name} did not start: {exc} (log: {paths.log})") from None
    if not online:
        print(f"endpoint {paths.name} runs (pid {process.pid}) but the service does not show it online after "
              f"{START_TIMEOUT:.0f} s; it keeps trying (log: {paths.log})", file=sys.stderr)
        return 1
    print(f"endpoint {paths.name} online: {endpoint_id} (pid {process.pid}, log {paths.log})")
    return 0


def _end_spawned(process: subprocess.Popen[bytes]) -> None:
    import psutil

    try:
        terminate(psutil.Process(process.pid), timeout=5.0)
    except psutil.NoSuchProcess:
        pass
    process.wait()


def stop_command(options: argparse.Namespace) -> int:
    """``fabric endpoint stop NAME``: end the daemon and everything it started."""
    paths = EndpointPaths.of(options.name)
    if not paths.config.exists():
        raise ConfigError(f"no endpoint named {paths.name!r} in {paths.directory.parent}")
    process = endpoint_process(paths)
    if process is None:
        print(f"endpoint {paths.name} is not running")
        return 0
    clean = terminate(process)
    release_pid_file(paths, process.pid)
    print(f"endpoint {paths.name} stopped (pid {process.pid}{'' if clean else ', killed after it lingered'})")
    return 0


def list_command(options: argparse.Namespace) -> int:
    """``fabric endpoint list``: every configured endpoint, one line each."""
    from sdk.credentials import fabric_home

    home = fabric_home()
    folders = sorted((home / "endpoints").iterdir()) if (home / "endpoints").is_dir() else []
    rows = [_list_row(EndpointPaths(folder.name, folder)) for folder in folders
            if NAME_PATTERN.fullmatch(folder.name) and (folder / "config.json").exists()]
    if not rows:
        print(f"no endpoints configured in {home / 'endpoints'}; create one with `fabric endpoint configure NAME`")
        return 0
    table = [("NAME", "ENDPOINT ID", "STATE", "SERVICE"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _list_row(paths: EndpointPaths) -> tuple[str, str, str, str]:
    try:
        service = str(read_json(paths.config, "the configuration").get("service_url", "-"))
    except ConfigError:
        service = "(unreadable config.json)"
    try:
        endpoint_id = str((stored_registration(paths) or {}).get("endpoint_id", "-"))
    except ConfigError:
        endpoint_id = "(unreadable endpoint.json)"
    state = "running" if endpoint_process(paths) is not None else "stopped"
    return paths.name, endpoint_id, state, service


def status_command(options: argparse.Namespace) -> int:
    """``fabric endpoint status NAME [--json]``: the local view and the service's."""
    paths = EndpointPaths.of(options.name)
    settings = EndpointSettings.load(paths)
    registration = stored_registration(paths) or {}
    process = endpoint_process(paths)
    report: dict[str, Any] = {
        "name": paths.name, "endpoint_id": registration.get("endpoint_id"),
        "state": "running" if process else "stopped", "pid": process.pid if process else None,
        "log": str(paths.log), "config": str(paths.config), "service_url": settings.service_url,
        "service": None, "service_error": None}
    if report["endpoint_id"] is None:
        report["service_error"] = "not registered yet: `fabric endpoint start` registers it"
    else:
        try:
            report["service"] = service_view(settings, report["endpoint_id"])
        except EndpointError as exc:
            report["service_error"] = str(exc)
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        print(_status_text(report))
    return 0


def _status_text(report: dict[str, Any]) -> str:
    state = report["state"] + (f" (pid {report['pid']})" if report["pid"] else "")
    lines = [f"endpoint:     {report['name']}", f"endpoint id:  {report['endpoint_id'] or '-'}",
             f"state:        {state}", f"log:          {report['log']}", f"service:      {report['service_url']}"]
    view = report["service"]
    if view is None:
        lines.append(f"service view: unavailable: {report['service_error']}")
        return "\n".join(lines)
    heard = view.get("last_heartbeat")
    heartbeat = f"{max(0.0, time.time() - heard):.1f} s ago" if heard else "never"
    lines += [f"service view: {view.get('status')}, last heartbeat {heartbeat}",
              f"capacity:     {view.get('managers', 0)} manager(s), {view.get('workers', 0)} worker(s)",
              f"tasks:        {view.get('outstanding_tasks', 0)} outstanding, {view.get('waiting_tasks', 0)} waiting"]
    return "\n".join(lines)


# -- the parser ----------------------------------------------------------------------------
def add_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add configure, start, stop, list and status to ``fabric endpoint``'s actions."""
    def add(name: str, handler: Any, help_text: str, description: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=description)
        parser.set_defaults(handler=handler, parser=parser)
        if name not in ("list",):
            parser.add_argument("name", metavar="NAME", help="the endpoint's name (letters, digits, - _ .)")
        return parser

    configure = add("configure", configure_command, "create an endpoint's configuration",
                    "Write fabric_home()/endpoints/NAME/config.json (JSON you may edit) for an endpoint "
                    "of the service at --service-url (default: FABRIC_SERVICE_URL or `fabric login`'s).")
    configure.add_argument("--service-url", help="the service's URL (http:// or https://)")
    configure.add_argument("--workers", type=int, help="workers per manager (default: this machine's CPU cores)")
    configure.add_argument("--managers", type=int, default=1, help="local managers (default: 1)")
    configure.add_argument("--prefetch", type=int, help="tasks a manager takes beyond one per worker "
                                                        "(default: adapt to task durations)")
    configure.add_argument("--accelerators", help="device ids to pin workers to, e.g. 0,1 (default: discover)")
    configure.add_argument("--cpu-affinity", default="none",
                           help="none, block, block-reverse, alternating or list:0,1:2,3 (default: none)")
    configure.add_argument("--provider", default="local", choices=PROVIDER_KINDS,
                           help="where managers run (default: local processes)")
    configure.add_argument("--image", help="the container image (kubernetes provider)")
    configure.add_argument("--force", action="store_true", help="replace an existing configuration")
    start = add("start", start_command, "register an endpoint with its service and run it",
                "Register the endpoint with its service (the same name keeps its id), then run it: as a "
                "daemon logging to endpoints/NAME/endpoint.log (the default; waits until the service "
                "reports it online) or in this process with --foreground.")
    start.add_argument("--foreground", action="store_true", help="run in this process, logging to stderr")
    start.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                       help="the endpoint's log level (default: FABRIC_LOG_LEVEL or INFO)")
    add("stop", stop_command, "stop a running endpoint",
        f"Send the endpoint SIGTERM, wait up to {STOP_TIMEOUT:.0f} s for it and its managers, then kill them.")
    add("list", list_command, "list the configured endpoints",
        "Every endpoint configured in fabric_home()/endpoints: name, id, running or stopped, service.")
    status = add("status", status_command, "show an endpoint's state here and at its service",
                 "Whether the endpoint runs here (pid, log) and what its service reports (online or offline, "
                 "last heartbeat, managers, workers, tasks).")
    status.add_argument("--json", action="store_true", help="print JSON")


if __name__ == "__main__":
    sys.exit(daemon_main())
