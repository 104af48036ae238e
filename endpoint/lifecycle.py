"""``fabric endpoint restart|delete|whoami``: the names Globus Compute's endpoint CLI uses.

``restart NAME`` stops the endpoint if it runs, then starts it (registering again, so it
gets new keys). ``delete NAME`` stops it and removes its folder (configuration, keys,
logs, spool); the service keeps its record of the endpoint, which a later ``configure``
and ``start`` of the same name takes up again. ``whoami`` prints the user the current
token belongs to at the service.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from endpoint.home import EndpointPaths, endpoint_process
from fabric.errors import ConfigError


def restart_command(options: argparse.Namespace) -> int:
    from endpoint.cli import start_command, stop_command

    paths = EndpointPaths.of(options.name)
    if not paths.config.exists():
        raise ConfigError(f"no endpoint named {paths.name!r} in {paths.directory.parent}")
    stop_command(options)
    options.foreground = False
    return start_command(options)


def delete_command(options: argparse.Namespace) -> int:
    from endpoint.cli import stop_command

    paths = EndpointPaths.of(options.name)
    if not paths.config.exists():
        raise ConfigError(f"no endpoint named {paths.name!r} in {paths.directory.parent}")
    if not options.yes:
        raise ConfigError(f"deleting endpoint {paths.name} removes {paths.directory} (its keys, logs and unsent "
                          f"results): pass --yes to confirm")
    if endpoint_process(paths) is not None:
        stop_command(options)
    shutil.rmtree(paths.directory)
    print(f"deleted endpoint {paths.name} ({paths.directory}); the service keeps its record: the same name "
          f"configured and started again takes it up")
    return 0


def whoami_command(options: argparse.Namespace) -> int:
    from endpoint.cli import service_client
    from sdk.credentials import resolve

    service_url = options.service_url or resolve(None, None).service_url
    if not service_url:
        raise ConfigError("no service: pass --service-url, set FABRIC_SERVICE_URL or run `fabric login`")
    me: dict[str, Any] = service_client(service_url).whoami()
    print(f"{me['name']} ({me['user_id']}) at {service_url}")
    return 0


def add_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add restart, delete and whoami to ``fabric endpoint``'s actions."""
    restart = actions.add_parser("restart", help="stop an endpoint if it runs, then start it",
                                 description="Stop the endpoint (as `stop`) if it runs, then start it as a daemon "
                                             "(as `start`: registering again, with new keys).")
    restart.set_defaults(handler=restart_command, parser=restart)
    restart.add_argument("name", metavar="NAME", help="the endpoint's name")
    restart.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
    restart.add_argument("--log-format", choices=["text", "json"], default="text")
    delete = actions.add_parser("delete", help="stop an endpoint and remove its folder",
                                description="Stop the endpoint if it runs and remove fabric_home()/endpoints/NAME "
                                            "(configuration, keys, logs, spool). The service keeps its record.")
    delete.set_defaults(handler=delete_command, parser=delete)
    delete.add_argument("name", metavar="NAME", help="the endpoint's name")
    delete.add_argument("--yes", action="store_true", help="do it (without it, nothing is deleted)")
    whoami = actions.add_parser("whoami", help="the user your token belongs to at the service",
                                description="Ask the service whose token FABRIC_TOKEN or `fabric login` holds.")
    whoami.set_defaults(handler=whoami_command, parser=whoami)
    whoami.add_argument("--service-url", help="the service (default: FABRIC_SERVICE_URL or `fabric login`'s)")
