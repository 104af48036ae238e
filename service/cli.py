"""``fabric service ...`` (also ``python -m service ...``): run the service, add users, report.

::

    fabric service start [--port 8470] [--forwarder-port 8471] [--data-dir DIR] [--config FILE]
    fabric service add-user NAME [--data-dir DIR]      # prints a new token for NAME
    fabric service status [--data-dir DIR] [--json]    # what the store holds; running or not

``status`` reads the store through a read-only connection: database size on disk (with
its -wal and -shm files), users, endpoints (online), task groups, tasks by state, the age
of the oldest unfinished task, and whether a service runs on that data directory.

The Globus Auth client secret (identity ``globus``) may come from
``FABRIC_GLOBUS_CLIENT_SECRET`` instead of the settings file (it wins over the file).

``main(argv)`` returns the exit status: 0 on success (``start``: after a clean SIGTERM),
2 for bad arguments, 1 with a one-line message on stderr when the service cannot run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from fabric.errors import ConfigError
from service.config import GLOBUS_SECRET_VARIABLE, ServiceConfig
from service.errors import ServiceError


def build_parser(prog: str = "fabric service") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the fabric service, manage its users, report on "
                                                           "its store.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = actions.add_parser("start", help="run the service (HTTP API and endpoint forwarder) until SIGTERM",
                               description="Run the HTTP API and the endpoint forwarder in this process.")
    start.add_argument("--port", type=int, default=None, help="HTTP port (default 8470; 0: any free port)")
    start.add_argument("--host", default=None, help="HTTP address to listen on (default 127.0.0.1)")
    start.add_argument("--forwarder-port", type=int, default=None,
                       help="port endpoints connect to (default 8471; 0: any free port)")
    start.add_argument("--forwarder-host", default=None, help="address the forwarder listens on (default 127.0.0.1)")
    _data_dir(start)
    start.add_argument("--config", default=None, help="JSON file of further settings (ServiceConfig fields)")
    start.add_argument("--log-level", default=None, help="logging level (default: FABRIC_LOG_LEVEL or INFO)")
    start.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="text lines (default) or JSON lines with the request id on every line of a request")
    start.add_argument("--exit-with-parent", action="store_true",
                       help="stop (as on SIGTERM) when the process that started this one exits (Linux): for "
                            "tests, benchmarks and supervisors that must never leave a service behind")
    add_user = actions.add_parser("add-user", help="create a user (if new) and print a new token for it",
                                  description="Create user NAME if new and print a new API token for it.")
    add_user.add_argument("name", metavar="NAME")
    _data_dir(add_user)
    status = actions.add_parser("status", help="what the store holds (works while the service runs, or not)",
                                description="Report the store's size and contents, read-only.")
    _data_dir(status)
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    return parser


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="where the store and keys live "
                             "(default: $FABRIC_SERVICE_DIR or ~/.local/share/fabric/service)")


def _config(args: argparse.Namespace) -> ServiceConfig:
    overrides = {name: value for name, value in (
        ("data_dir", args.data_dir), ("port", args.port), ("host", args.host),
        ("forwarder_port", args.forwarder_port), ("forwarder_host", args.forwarder_host),
        ("globus_client_secret", os.environ.get(GLOBUS_SECRET_VARIABLE) or None)) if value is not None}
    if args.config:
        config = ServiceConfig.from_file(args.config, **overrides)
    else:
        config = ServiceConfig.from_dict({"data_dir": ServiceConfig.default_data_dir(), **overrides})
    return config


def main(argv: Sequence[str] | None = None, prog: str = "fabric service") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.action == "add-user":
            return _add_user(args)
        if args.action == "status":
            return _status(args)
        return _start(args)
    except (ConfigError, ServiceError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def _add_user(args: argparse.Namespace) -> int:
    from pathlib import Path

    from service.store import SQLiteStore

    config = ServiceConfig(data_dir=args.data_dir or ServiceConfig.default_data_dir())
    if not args.name.strip() or len(args.name) > 128:
        raise ConfigError("NAME must have 1 to 128 characters")
    Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(config.database_path, synchronous=config.sqlite_synchronous)
    try:
        _, token = store.add_user(args.name)
    finally:
        store.close()
    print(token)
    return 0


def _status(args: argparse.Namespace) -> int:
    import json
    import time

    from service.store.status import read_status

    config = ServiceConfig(data_dir=args.data_dir or ServiceConfig.default_data_dir())
    now = time.time()
    status = read_status(config.database_path, now=now, heartbeat_threshold=config.heartbeat_threshold)
    service = _running_service(config)
    if args.json:
        print(json.dumps({**status.to_dict(), "service": service}))
        return 0
    files = ", ".join(f"{name} {_size(size)}" for name, size in status.file_bytes.items())
    tasks = ", ".join(f"{state} {count}" for state, count in status.tasks.items())
    age = "none" if status.oldest_unfinished_age is None else f"{status.oldest_unfinished_age:.1f} s old"
    running = f"running (pid {service['pid']}, {service['url']})" if service["running"] else "not running"
    print(f"service:      {running}\n"
          f"database:     {status.path}: {_size(status.size)} ({files})\n"
          f"users:        {status.users}\n"
          f"endpoints:    {status.endpoints} ({status.endpoints_online} online)\n"
          f"task groups:  {status.task_groups}\n"
          f"tasks:        {sum(status.tasks.values())} ({tasks})\n"
          f"oldest unfinished task: {age}")
    return 0


def _running_service(config: ServiceConfig) -> dict[str, object]:
    """What ``service.json`` says, if the process it names is alive."""
    import json

    try:
        info = json.loads(config.address_file.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"running": False, "pid": None, "url": None}
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # alive, someone else's
    except OSError:
        return {"running": False, "pid": None, "url": None}
    return {"running": True, "pid": pid, "url": info.get("url")}


def _size(count: int) -> str:
    value, unit = float(count), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def _start(args: argparse.Namespace) -> int:
    from fabric.logs import configure
    from service.server import Service

    configure(args.log_level or os.environ.get("FABRIC_LOG_LEVEL") or "INFO", args.log_format)
    if args.exit_with_parent:
        from fabric.process import exit_with_parent

        parent = os.getppid()
        exit_with_parent(signal.SIGTERM)
        if os.getppid() != parent:  # it exited before the kernel was asked
            return 0
    service = Service(_config(args))
    print(f"fabric service: HTTP on {service.url}, endpoints connect to {service.forwarder.address}", flush=True)
    service.serve()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
