"""``fabric service ...`` (also ``python -m service ...``): run the service, add users.

::

    fabric service start [--port 8470] [--forwarder-port 8471] [--data-dir DIR] [--config FILE]
    fabric service add-user NAME [--data-dir DIR]      # prints a new token for NAME

The Globus Auth client secret (identity ``globus``) may come from
``FABRIC_GLOBUS_CLIENT_SECRET`` instead of the settings file (it wins over the file).

``main(argv)`` returns the exit status: 0 on success (``start``: after a clean SIGTERM),
2 for bad arguments, 1 with a one-line message on stderr when the service cannot run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fabric.errors import ConfigError
from service.config import GLOBUS_SECRET_VARIABLE, ServiceConfig
from service.errors import ServiceError


def build_parser(prog: str = "fabric service") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the fabric service and manage its users.")
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
    add_user = actions.add_parser("add-user", help="create a user (if new) and print a new token for it",
                                  description="Create user NAME if new and print a new API token for it.")
    add_user.add_argument("name", metavar="NAME")
    _data_dir(add_user)
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


def _start(args: argparse.Namespace) -> int:
    from fabric.process import configure_logging
    from service.server import Service

    configure_logging(args.log_level or os.environ.get("FABRIC_LOG_LEVEL") or "INFO")
    service = Service(_config(args))
    print(f"fabric service: HTTP on {service.url}, endpoints connect to {service.forwarder.address}", flush=True)
    service.serve()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
