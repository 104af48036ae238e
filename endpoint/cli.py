"""``fabric endpoint run-local|configure|start|stop|list|status``: endpoints that connect out to a service.

(``logs`` is in ``endpoint.logs``; ``restart``, ``delete`` and ``whoami`` in ``endpoint.lifecycle``.)

``run-local`` is the demo (``endpoint.demo``). ``configure`` writes an endpoint's
``config.json`` (``endpoint.home`` has the folder's layout). ``start`` registers the
endpoint with the service (the same name keeps its id and
gets new keys: the old ones can no longer connect; the service's allow-list is set to the
configuration's; the reply has the forwarder's current address), stores the registration,
then runs the endpoint's interchange: in this process with ``--foreground``, else as a
daemon (``python -m endpoint.daemon DIR``: a new session, not tied to the ``fabric``
process that started it) and waits until the service reports it online. Registering,
storing the keys and claiming the pid file happen under the endpoint's start lock, so
two ``start``s never leave an endpoint holding keys the other rotated away. ``stop`` ends
the endpoint and everything it started; ``list`` and ``status`` report.

Secrets never go on a command line (other users can read it): the daemon reads the
registration from its folder. Only stdlib modules and ``fabric.config`` are imported up
front; ``psutil``, the SDK and the interchange are imported when a command needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from endpoint.exits import describe as describe_exit
from endpoint.exits import diagnose
from endpoint.home import (DAEMON_MODULE, NAME_PATTERN, EndpointPaths, EndpointSettings, claim_pid_file,
                           endpoint_process, read_json, release_pid_file, start_lock, stored_registration, write_json)
from fabric.config import PROVIDER_KINDS, InterchangeConfig, ProviderConfig, ScalingConfig
from fabric.errors import ConfigError, EndpointError
from fabric.home import fabric_home

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


# -- configure's options -------------------------------------------------------------------
def settings_from_options(options: argparse.Namespace) -> EndpointSettings:
    """``configure``'s options as settings: every interchange knob a user may edit, spelled out."""
    from sdk.credentials import resolve

    defaults = {f.name: f.default for f in dataclasses.fields(InterchangeConfig)}
    accelerators = None
    if options.accelerators is not None:
        accelerators = [a.strip() for a in options.accelerators.split(",")]
        if not all(accelerators):
            raise ConfigError(f"--accelerators: expected device ids separated by commas, got {options.accelerators!r}")
    allowed = None if options.allowed_functions is None else list(dict.fromkeys(options.allowed_functions))
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
        "allowed_functions": allowed,
        "data_only_arguments": options.data_only_arguments,
        "sandbox_workers": {"auto": None, "required": True, "off": False}[options.sandbox_workers],
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
    """Register with the service (the same id, new keys, the service's allow-list set to the
    configured one) and store the registration, mode 0600, replacing the one whose keys the
    service has just rotated away. Call it holding the endpoint's ``start_lock``."""
    from fabric.errors import AuthError, ServiceError

    try:
        reply = service_client(settings.service_url).register_endpoint(
            paths.name, allowed_functions=settings.allowed_functions,
            data_only=settings.interchange.get("data_only_arguments"), rotate_keys=True)
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
    return registration


def service_view(settings: EndpointSettings, endpoint_id: str, retry_for: float = SERVICE_RETRY) -> dict[str, Any]:
    """What the service knows of the endpoint (``GET /v1/endpoints/<id>``); ``EndpointError`` if it cannot say."""
    from fabric.errors import ServiceError

    try:
        return service_client(settings.service_url, retry_for).get_endpoint_status(quote(endpoint_id))
    except ServiceError as exc:
        raise EndpointError(describe(exc, settings.service_url)) from exc


def describe(error: BaseException, service_url: str) -> str:
    """One line for a failed request: the root cause of a connection failure, else the error."""
    from fabric.errors import ServiceError

    cause: BaseException | None = error.__cause__
    if cause is None or (isinstance(error, ServiceError) and error.status):
        return str(error)
    while cause is not None:  # requests -> urllib3 -> the socket's own error
        root = cause
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else (cause.__cause__ or cause.__context__)
    return f"cannot reach the service at {service_url}: {root}"


# -- processes -----------------------------------------------------------------------------
def refuse_if_running(paths: EndpointPaths) -> None:
    process = endpoint_process(paths, remove_stale=True)
    if process is not None:
        raise EndpointError(f"endpoint {paths.name} is already running (pid {process.pid}); "
                            f"stop it with `fabric endpoint stop {paths.name}`")


def spawn_daemon(paths: EndpointPaths, log_level: str | None, log_format: str = "text") -> subprocess.Popen[bytes]:
    """Start the daemon in its own session, output appended to the log, stdin from /dev/null."""
    from fabric.process import child_environment

    command = [sys.executable, "-m", DAEMON_MODULE, str(paths.directory)]
    if log_level:
        command += ["--log-level", log_level]
    command += ["--log-format", log_format]
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
    offset = 0
    with start_lock(paths):  # until the pid file names the endpoint that reads the keys stored here
        refuse_if_running(paths)
        registration = register(paths, settings)
        settings.interchange_config(registration, str(paths.spool))  # a bad setting fails here, not in the daemon
        if options.foreground:
            _claim_pid_file(paths, os.getpid())
        else:
            offset = paths.log.stat().st_size if paths.log.exists() else 0
            process = spawn_daemon(paths, options.log_level, options.log_format)
            try:
                _claim_pid_file(paths, process.pid)
            except EndpointError:
                _end_spawned(process)
                raise
    if options.foreground:
        return _run_foreground(paths, options.log_level, options.log_format)
    return _wait_for_daemon(paths, settings, registration["endpoint_id"], process, offset)


def _claim_pid_file(paths: EndpointPaths, pid: int) -> None:
    if not claim_pid_file(paths, pid):
        refuse_if_running(paths)  # raises unless the other one just exited
        if not claim_pid_file(paths, pid):
            raise EndpointError(f"endpoint {paths.name} is starting elsewhere ({paths.pid_file})")


def _run_foreground(paths: EndpointPaths, log_level: str | None, log_format: str) -> int:
    from endpoint.daemon import serve
    from fabric.logs import configure

    configure(log_level or os.environ.get("FABRIC_LOG_LEVEL") or "INFO", log_format)
    try:
        return serve(paths, detached=False)
    finally:
        release_pid_file(paths, os.getpid())


def _wait_for_daemon(paths: EndpointPaths, settings: EndpointSettings, endpoint_id: str,
                     process: subprocess.Popen[bytes], offset: int) -> int:
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
    process = endpoint_process(paths, remove_stale=True)
    if process is None:
        print(f"endpoint {paths.name} is not running")
        return 0
    clean = terminate(process)
    release_pid_file(paths, process.pid)
    print(f"endpoint {paths.name} stopped (pid {process.pid}{'' if clean else ', killed after it lingered'})")
    return 0


def list_command(options: argparse.Namespace) -> int:
    """``fabric endpoint list``: every configured endpoint, one line each."""
    home = fabric_home()
    folders = sorted((home / "endpoints").iterdir()) if (home / "endpoints").is_dir() else []
    rows = [_list_row(EndpointPaths.of(folder.name, home)) for folder in folders
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
    had_pid_file = paths.pid_file.exists()
    process = endpoint_process(paths)
    report: dict[str, Any] = {
        "name": paths.name, "endpoint_id": registration.get("endpoint_id"),
        "state": "running" if process else "stopped", "pid": process.pid if process else None,
        "log": str(paths.log), "config": str(paths.config), "service_url": settings.service_url,
        "allowed_functions": settings.allowed_functions, "data_only_arguments": settings.data_only_arguments,
        "sandbox_workers": settings.interchange.get("sandbox_workers"), "service": None, "service_error": None}
    if report["endpoint_id"] is None:
        report["service_error"] = "not registered yet: `fabric endpoint start` registers it"
    else:
        try:
            report["service"] = service_view(settings, report["endpoint_id"], retry_for=0.0)
        except (EndpointError, ConfigError) as exc:
            report["service_error"] = str(exc)
    report["diagnosis"] = diagnose(paths, process is not None, had_pid_file and process is None,
                                   (report["service"] or {}).get("status"))
    if options.json:
        print(json.dumps(report, indent=2))
    else:
        print(_status_text(report))
    return 0


def _status_text(report: dict[str, Any]) -> str:
    state = report["state"] + (f" (pid {report['pid']})" if report["pid"] else "")
    lines = [f"endpoint:     {report['name']}", f"endpoint id:  {report['endpoint_id'] or '-'}",
             f"state:        {state}", f"log:          {report['log']}", f"service:      {report['service_url']}",
             f"functions:    {_allowed_text(report['allowed_functions'])}",
             f"arguments:    {'data only' if report['data_only_arguments'] else 'pickles accepted'}",
             f"sandbox:      {_SANDBOX_TEXT[report['sandbox_workers']]}"]
    view = report["service"]
    if view is None:
        lines.append(f"service view: unavailable: {report['service_error']}")
    else:
        lines += _service_lines(report, view)
    if report["diagnosis"]:
        lines.append(describe_exit(report["diagnosis"]))
    return "\n".join(lines)


def _service_lines(report: dict[str, Any], view: dict[str, Any]) -> list[str]:
    lines = []
    heard = view.get("last_heartbeat")
    heartbeat = f"{max(0.0, time.time() - heard):.1f} s ago" if heard else "never"
    reported = "" if view.get("status") == "online" else " (last reported)"
    lines += [f"service view: {view.get('status')}, last heartbeat {heartbeat}",
              f"capacity:     {view.get('managers', 0)} manager(s), {view.get('workers', 0)} worker(s){reported}",
              f"tasks:        {view.get('outstanding_tasks', 0)} outstanding, {view.get('waiting_tasks', 0)} waiting"]
    if "allowed_functions" in view and _differ(view["allowed_functions"], report["allowed_functions"]):
        lines.append(f"service list: {_allowed_text(view['allowed_functions'])} (not the configured one: "
                     f"`fabric endpoint start` sends that)")
    return lines


_SANDBOX_TEXT = {None: "workers hide the fabric home if the system allows it (auto)",
                 True: "workers hide the fabric home (required)", False: "off: tasks can read the fabric home"}


def _allowed_text(allowed: list[str] | None) -> str:
    """An allow-list in words."""
    if allowed is None:
        return "any function"
    return f"only {', '.join(allowed)}" if allowed else "none (an empty allow-list)"


def _differ(first: list[str] | None, second: list[str] | None) -> bool:
    if first is None or second is None:
        return first is not second
    return set(first) != set(second)


# -- the parser ----------------------------------------------------------------------------
def build_parser(prog: str = "fabric endpoint") -> argparse.ArgumentParser:
    """``fabric endpoint``'s parser: run-local (``endpoint.demo``), configure, start, stop, list, status."""
    from endpoint import demo, lifecycle, logs

    parser = argparse.ArgumentParser(prog=prog, description="Run and inspect endpoints.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    demo.add_command(actions)
    add_commands(actions)
    logs.add_command(actions)
    lifecycle.add_commands(actions)
    parser.set_defaults(handler=None, parser=parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "fabric endpoint") -> int:
    """``fabric endpoint ...``: run one action; errors propagate to ``fabric.cli.main``, which reports them."""
    options = build_parser(prog).parse_args(argv)
    if options.handler is None:
        options.parser.print_help(sys.stderr)
        return 2
    return int(options.handler(options))


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
    allow = configure.add_mutually_exclusive_group()
    allow.add_argument("--allow-function", dest="allowed_functions", action="append", metavar="ID",
                       help="run only tasks of this function id (repeat for more); enforced by the endpoint "
                            "itself and sent to the service at each start (default: any function)")
    allow.add_argument("--allow-any-function", dest="allowed_functions", action="store_const", const=None,
                       help="run any function, with no allow-list (the default)")
    serializers = configure.add_mutually_exclusive_group()
    serializers.add_argument("--data-only-arguments", dest="data_only_arguments", action="store_const", const=True,
                             help="take only data-only task arguments (msgpack types, bytes, numpy arrays; never "
                                  "a pickle, which can run code when decoded): for an endpoint shared with "
                                  "others (default: on with --allow-function, else off)")
    serializers.add_argument("--pickled-arguments", dest="data_only_arguments", action="store_const", const=False,
                             help="take pickled arguments even with an allow-list (any caller can then run "
                                  "any code through an argument)")
    configure.add_argument("--sandbox-workers", choices=("auto", "required", "off"), default="auto",
                           help="hide the fabric home (the owner's token, the endpoints' keys) from the tasks: "
                                "auto (if the system allows it, else a warning in the log; the default), "
                                "required (workers do not start without it) or off")
    configure.add_argument("--force", action="store_true", help="replace an existing configuration")
    start = add("start", start_command, "register an endpoint with its service and run it",
                "Register the endpoint with its service (the same name keeps its id and gets new keys, "
                "stored in endpoints/NAME/endpoint.json; the service's allow-list becomes the configured "
                "one), then run it: as a daemon logging to endpoints/NAME/endpoint.log (the default; waits "
                "until the service reports it online) or in this process with --foreground.")
    start.add_argument("--foreground", action="store_true", help="run in this process, logging to stderr")
    start.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                       help="the endpoint's log level (default: FABRIC_LOG_LEVEL or INFO)")
    start.add_argument("--log-format", choices=["text", "json"], default="text",
                       help="text lines (default) or JSON lines; the daemon's log rotates at FABRIC_LOG_MAX_BYTES "
                            "(default 10 MiB), FABRIC_LOG_BACKUPS files kept (default 5)")
    add("stop", stop_command, "stop a running endpoint",
        f"Send the endpoint SIGTERM, wait up to {STOP_TIMEOUT:.0f} s for it and its managers, then kill them.")
    add("list", list_command, "list the configured endpoints",
        "Every endpoint configured in fabric_home()/endpoints: name, id, running or stopped, service.")
    status = add("status", status_command, "show an endpoint's state here and at its service",
                 "Whether the endpoint runs here (pid, log), the functions it allows, and what its service "
                 "reports (online or offline, last heartbeat, managers, workers, tasks).")
    status.add_argument("--json", action="store_true", help="print JSON")


