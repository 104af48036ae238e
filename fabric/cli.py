"""The ``fabric`` command line.

::

    fabric --version
    fabric login --service-url URL        (token from FABRIC_TOKEN or standard input)
    fabric login --service-url URL --globus --globus-scope SCOPE   (a Globus Auth token: sdk.globus_login)
    fabric logout
    fabric endpoint run-local --workers 2 --tasks 5000                 (endpoint.demo)
    fabric endpoint configure|start|stop|list|status NAME ...          (endpoint.cli)
    fabric endpoint logs|restart|delete NAME, fabric endpoint whoami   (endpoint.logs, endpoint.lifecycle)
    fabric completion bash                                             (fabric.completion)
    fabric service start|add-user|status ...                           (service.cli)
    fabric trigger create|list|delete|watch ...                        (endpoint.trigger_cli)
    fabric bench endpoint|service|flows|peers|scale|micro|all|plot ... (benchmarks.cli)

The role commands (``ROLE_COMMANDS``: endpoint, service, trigger, bench) belong to their packages:
this parser only names them, and ``main`` hands the rest of the command line to the
role's own ``main(argv, prog)``, imported when the command runs. So only ``argparse`` is
imported up front and ``fabric --help`` stays fast. Bad arguments exit with status 2
(argparse's usage message), a failing command with status 1 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fabric import completion

PROG = "fabric"

ROLE_COMMANDS = {
    "endpoint": ("endpoint.cli", "run and inspect endpoints: run-local, configure, start, stop, restart, list, "
                                 "status, logs, delete, whoami (see fabric endpoint --help)"),
    "service": ("service.cli", "run the service: fabric service start|add-user|status (see fabric service --help)"),
    "trigger": ("endpoint.trigger_cli", "process files as they arrive: fabric trigger create|list|delete|watch "
                                        "(see fabric trigger --help)"),
    "bench": ("benchmarks.cli", "run the benchmark suite (the same as python -m benchmarks; see fabric bench --help)"),
}
"""Command -> (the module whose ``main(argv, prog)`` runs it, its line in ``fabric --help``)."""


def _version() -> str:
    from fabric import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A function-as-a-service fabric: run Python functions on endpoints.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in ROLE_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    _add_login(commands)
    completion.add_command(commands)
    parser.set_defaults(handler=None, parser=parser)
    return parser


def _add_login(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``fabric login`` / ``fabric logout``: the token the SDK and ``fabric endpoint`` use."""
    login = commands.add_parser(
        "login", help="store a service URL and token for the SDK and the endpoint commands",
        description="Check a token against the service and store it (with the service URL) in "
                    "$FABRIC_HOME/credentials.json (default ~/.fabric), readable by you only. The token is read "
                    "from FABRIC_TOKEN, else from standard input (a prompt in a terminal). Client() and "
                    "`fabric endpoint start` use it when FABRIC_TOKEN is not set.")
    login.add_argument("--service-url", default=None,
                       help="the service, e.g. http://127.0.0.1:8470 (default: FABRIC_SERVICE_URL)")
    login.add_argument("--globus", action="store_true",
                       help="get a Globus Auth token instead: client credentials from FABRIC_GLOBUS_CLIENT_ID and "
                            "FABRIC_GLOBUS_CLIENT_SECRET if set, else log in in a browser (native app flow)")
    login.add_argument("--globus-scope", default=None,
                       help="the scope the service requires (default: FABRIC_GLOBUS_SCOPE)")
    login.add_argument("--globus-client-id", default=None,
                       help="the native app's client id for a browser login (default: FABRIC_GLOBUS_NATIVE_CLIENT_ID)")
    login.set_defaults(handler=run_login, parser=login)
    logout = commands.add_parser("logout", help="forget the stored token",
                                 description="Remove $FABRIC_HOME/credentials.json.")
    logout.set_defaults(handler=run_logout, parser=logout)


def run_login(options: argparse.Namespace) -> int:
    """``fabric login``: verify a token with the service, then store it."""
    import getpass
    import os

    from fabric.errors import ConfigError
    from sdk.client import Client
    from sdk.credentials import SERVICE_VARIABLE, TOKEN_VARIABLE, store_credentials

    url = options.service_url or os.environ.get(SERVICE_VARIABLE)
    if not url:
        raise ConfigError(f"give --service-url (or set {SERVICE_VARIABLE})")
    token = _globus_token(options) if options.globus else os.environ.get(TOKEN_VARIABLE)
    if not token:
        token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not token:
        raise ConfigError("no token given")
    user = Client(url, token, retry_for=5.0).whoami()
    path = store_credentials(url.rstrip("/"), token)
    print(f"logged in to {url} as {user['name']} (token stored in {path})")
    return 0


def _globus_token(options: argparse.Namespace) -> str:
    """``fabric login --globus``: a token from Globus Auth (``sdk.globus_login``)."""
    import os

    from fabric.errors import ConfigError
    from sdk import globus_login

    scope = options.globus_scope or os.environ.get(globus_login.SCOPE_VARIABLE)
    if not scope:
        raise ConfigError(f"give --globus-scope (or set {globus_login.SCOPE_VARIABLE}): the scope the service requires")
    native_client_id = options.globus_client_id or os.environ.get(globus_login.NATIVE_CLIENT_VARIABLE)
    return globus_login.globus_token(
        scope, environ=os.environ, native_client_id=native_client_id, say=print,
        read_code=lambda prompt: input(prompt) if sys.stdin.isatty() else sys.stdin.readline())


def run_logout(options: argparse.Namespace) -> int:
    """``fabric logout``: remove the stored token."""
    from fabric.home import fabric_home
    from sdk.credentials import forget_credentials

    if forget_credentials():
        print(f"logged out (removed {fabric_home() / 'credentials.json'})")
    else:
        print("not logged in")
    return 0


def _drop_script_folders() -> None:
    """Take this console script's folder (bin/) off ``sys.path`` before the benchmarks import
    the fabric's packages: a peer installs modules there (Parsl's bin/interchange.py) that
    would shadow ours (``import interchange.scheduler``)."""
    import os
    import sysconfig

    scripts = {os.path.abspath(sysconfig.get_path("scripts")), os.path.dirname(os.path.abspath(sys.executable))}
    sys.path[:] = [p for p in sys.path if not p or os.path.abspath(p) not in scripts]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fabric`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    from fabric.errors import FabricError

    try:
        if args[:1] and args[0] in ROLE_COMMANDS:
            return run_role(args[0], args[1:])
        parser = build_parser()
        options = parser.parse_args(args)
        if options.handler is None:
            options.parser.print_help(sys.stderr)
            return 2
        return int(options.handler(options))
    except (FabricError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def run_role(command: str, argv: Sequence[str]) -> int:
    """``fabric COMMAND ...``: the role's own ``main(argv, prog)`` (``ROLE_COMMANDS``)."""
    if command == "bench":
        _drop_script_folders()
    module = importlib.import_module(ROLE_COMMANDS[command][0])
    return int(module.main(list(argv), prog=f"{PROG} {command}"))


if __name__ == "__main__":
    sys.exit(main())
