"""The ``fabric`` command line.

::

    fabric --version
    fabric login --service-url URL        (token from FABRIC_TOKEN or standard input)
    fabric login --service-url URL --globus --globus-scope SCOPE   (a Globus Auth token: sdk.globus_login)
    fabric logout
    fabric endpoint run-local --workers 2 --tasks 5000
    fabric endpoint configure|start|stop|list|status NAME ...   (fabric.endpoint_cli)
    fabric bench endpoint|service|peers|scale|micro|all|plot ...

``endpoint run-local`` is the demo: it starts a local endpoint (interchange, managers and
workers as child processes), estimates pi by Monte Carlo in ``--tasks`` chunks, prints the
estimate and a throughput line, and shuts the endpoint down. ``bench`` is the benchmark
suite (the same commands as ``python -m benchmarks``, defined in ``benchmarks.cli``).

Only ``argparse`` is imported up front; the endpoint machinery is imported when a command
needs it, so ``fabric --help`` stays fast. Bad arguments exit with status 2 (argparse's
usage message), a failing endpoint with status 1 and a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

PROG = "fabric"
DEFAULT_TASKS = 5000
DEFAULT_SAMPLES = 1000


def pi_chunk(seed: int, samples: int) -> int:
    """How many of ``samples`` random points in the unit square fall inside the quarter circle.

    Runs on a worker; seeded, so the demo's estimate is the same on every run.
    """
    import random

    generator = random.Random(seed)
    draw = generator.random
    hits = 0
    for _ in range(samples):
        x = draw()
        y = draw()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _version() -> str:
    from fabric import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A function-as-a-service fabric: run Python functions on endpoints.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("service", help="run the service: fabric service start|add-user|status (see fabric service --help)",
                        add_help=False)
    endpoint = commands.add_parser("endpoint", help="run and inspect endpoints",
                                   description="Run and inspect endpoints.")
    actions = endpoint.add_subparsers(dest="action", metavar="ACTION")
    run_local = actions.add_parser(
        "run-local", help="start a local endpoint and run a demo workload on it",
        description="Start a local endpoint (an interchange, its managers and their workers as child "
                    "processes on this machine), estimate pi by Monte Carlo in TASKS tasks, print the "
                    "estimate and the throughput in tasks/s, then shut the endpoint down.")
    run_local.add_argument("--workers", type=_positive_int, default=None,
                           help="workers per manager (default: this machine's CPU cores)")
    run_local.add_argument("--managers", type=_positive_int, default=1, help="local managers (default: 1)")
    run_local.add_argument("--tasks", type=_positive_int, default=DEFAULT_TASKS,
                           help=f"tasks to run (default: {DEFAULT_TASKS})")
    run_local.add_argument("--samples-per-task", type=_positive_int, default=DEFAULT_SAMPLES,
                           help=f"random points each task draws (default: {DEFAULT_SAMPLES})")
    run_local.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                           type=str.upper, help="log level of this process and the endpoint's processes "
                                                "(default: FABRIC_LOG_LEVEL or WARNING)")
    run_local.set_defaults(handler=run_local_demo)
    from fabric import endpoint_cli  # configure, start, stop, list, status

    endpoint_cli.add_commands(actions)
    endpoint.set_defaults(handler=None, parser=endpoint)
    _add_login(commands)
    _add_bench(commands)
    parser.set_defaults(handler=None, parser=parser)
    run_local.set_defaults(parser=run_local)
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
    from sdk.credentials import fabric_home, forget_credentials

    if forget_credentials():
        print(f"logged out (removed {fabric_home() / 'credentials.json'})")
    else:
        print("not logged in")
    return 0


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``fabric bench ...``: the benchmark suite's commands (``benchmarks.cli``)."""
    from benchmarks import cli as bench_cli

    bench = commands.add_parser(
        "bench", help="run the benchmark suite (the same as python -m benchmarks)",
        description="The benchmark suite: each command writes record.json and report.md into an output "
                    "directory; pass --help after a command for its options.")
    bench_cli.add_commands(bench.add_subparsers(dest="bench_command", metavar="COMMAND"), handler=run_bench)
    bench.set_defaults(handler=None, parser=bench)


def run_bench(options: argparse.Namespace) -> int:
    """``fabric bench COMMAND``: run one command of the benchmark suite."""
    from benchmarks import cli as bench_cli

    _drop_script_folders()
    return bench_cli.execute(options, f"{PROG} bench")


def _drop_script_folders() -> None:
    """Take this console script's folder (bin/) off ``sys.path`` before the benchmarks import
    the fabric's packages: a peer installs modules there (Parsl's bin/interchange.py) that
    would shadow ours (``import interchange.scheduler``)."""
    import os
    import sysconfig

    scripts = {os.path.abspath(sysconfig.get_path("scripts")), os.path.dirname(os.path.abspath(sys.executable))}
    sys.path[:] = [p for p in sys.path if not p or os.path.abspath(p) not in scripts]


def run_local_demo(options: argparse.Namespace) -> int:
    """``fabric endpoint run-local``: the demo workload on a local endpoint."""
    from fabric import Endpoint
    from fabric.process import configure_logging

    if options.log_level:
        configure_logging(options.log_level)
    started = time.perf_counter()
    with Endpoint(workers=options.workers, managers=options.managers, log_level=options.log_level) as endpoint:
        status = endpoint.wait_for_workers()
        print(f"endpoint {endpoint.endpoint_id}: {len(status.managers)} manager(s), {status.workers} workers, "
              f"ready in {time.perf_counter() - started:.2f} s")
        samples = options.samples_per_task
        submitted = time.perf_counter()
        futures = [endpoint.submit(pi_chunk, seed, samples) for seed in range(options.tasks)]
        hits = sum(future.result() for future in futures)
        elapsed = time.perf_counter() - submitted
    total = options.tasks * samples
    estimate = 4.0 * hits / total
    print(f"result: pi ~= {estimate:.6f} from {total:,} samples in {options.tasks:,} tasks "
          f"(error {abs(estimate - math.pi):.6f})")
    print(f"throughput: {options.tasks / elapsed:,.0f} tasks/s ({options.tasks:,} tasks in {elapsed:.3f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fabric`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["service"]:  # ``fabric service start|add-user|status ...``: the service's own CLI
        from service.cli import main as service_main

        return service_main(args[1:], prog=f"{PROG} service")
    parser = build_parser()
    options = parser.parse_args(args)
    if options.handler is None:
        options.parser.print_help(sys.stderr)
        return 2
    from fabric.errors import FabricError

    try:
        return int(options.handler(options))
    except (FabricError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
