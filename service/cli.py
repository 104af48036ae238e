"""``fabric service ...`` (also ``python -m service ...``): run the service, manage users and tokens, report.

::

    fabric service start [--port 8470] [--forwarder-port 8471] [--data-dir DIR] [--config FILE]
    fabric service add-user NAME [--token-name LABEL]  # creates NAME if new; prints a new token for it
    fabric service users [--json]                      # users and how many tokens each holds
    fabric service tokens [USER] [--json]              # token ids, names, users, dates (never secrets)
    fabric service revoke-token TOKEN_ID               # (a unique prefix of) a token's id, or the token
    fabric service remove-user NAME                    # the user, their tokens, endpoints, functions, groups
    fabric service status [--json]                     # what the store holds; running or not

Every command takes ``--data-dir DIR``; without it they all use the same folder:
``$FABRIC_SERVICE_DIR``, else ``$FABRIC_HOME/service`` (``~/.fabric/service``). A user
may hold several tokens (one per machine or purpose, each revoked on its own); a revoked
token or a removed user's is refused from the next request on, while the service runs.

``status`` reads the store through a read-only connection: database size on disk (with
its -wal and -shm files), users, endpoints (online), task groups, tasks by state, the age
of the oldest unfinished task, and whether a service runs on that data directory.
``start`` checks the store's integrity first (``PRAGMA quick_check``) and refuses a
damaged one, saying what is wrong.

The Globus Auth client secret (identity ``globus``) may come from
``FABRIC_GLOBUS_CLIENT_SECRET`` instead of the settings file (it wins over the file).

``main(argv)`` returns the exit status: 0 on success (``start``: after a clean SIGTERM),
2 for bad arguments, 1 with a one-line message on stderr when the service cannot run or
the command cannot do what it was asked.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fabric.errors import ConfigError
from service.config import GLOBUS_SECRET_VARIABLE, ServiceConfig
from service.errors import ServerError

if TYPE_CHECKING:
    from service.store import SQLiteStore

MIN_PREFIX = 4
"""The fewest characters of a token's id ``revoke-token`` takes."""


def build_parser(prog: str = "fabric service") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the fabric service, manage its users and tokens, "
                                                           "report on its store.")
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
                                  description="Create user NAME if new and print a new API token for it (a user "
                                              "may hold several: one per machine or purpose).")
    add_user.add_argument("name", metavar="NAME")
    add_user.add_argument("--token-name", default=None, metavar="LABEL",
                          help="what the token is for, shown by `tokens` (default: its id)")
    _data_dir(add_user)
    users = actions.add_parser("users", help="list users and how many tokens each holds",
                               description="List the store's users: name, id, tokens, created.")
    _data_dir(users)
    users.add_argument("--json", action="store_true", help="JSON instead of text")
    tokens = actions.add_parser("tokens", help="list tokens (ids and names, never secrets)",
                                description="List the tokens of USER (default: every user's): id, user, name, "
                                            "issued. The id is the part of a token before its dot.")
    tokens.add_argument("user", metavar="USER", nargs="?", help="a user's name or id")
    _data_dir(tokens)
    tokens.add_argument("--json", action="store_true", help="JSON instead of text")
    revoke = actions.add_parser("revoke-token", help="revoke a token (refused from the next request on)",
                                description="Revoke the token whose id starts with TOKEN_ID (at least "
                                            f"{MIN_PREFIX} characters, matching one token; the whole token works "
                                            "too). Requests with it are refused from the next one on.")
    revoke.add_argument("token", metavar="TOKEN_ID")
    _data_dir(revoke)
    remove = actions.add_parser("remove-user", help="remove a user and everything they own or were given",
                                description="Remove user NAME (or id): their tokens, identities, endpoints "
                                            "(their keys are refused at once), functions, groups and "
                                            "sharing; their tasks not yet sent are cancelled (those already "
                                            "sent finish). Results go with the purge.")
    remove.add_argument("name", metavar="NAME")
    _data_dir(remove)
    status = actions.add_parser("status", help="what the store holds (works while the service runs, or not)",
                                description="Report the store's size and contents, read-only.")
    _data_dir(status)
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    return parser


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="where the store and keys live (default: $FABRIC_SERVICE_DIR, else "
                             "$FABRIC_HOME/service, i.e. ~/.fabric/service)")


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
    commands = {"add-user": _add_user, "users": _users, "tokens": _tokens, "revoke-token": _revoke_token,
                "remove-user": _remove_user, "status": _status, "start": _start}
    try:
        return commands[args.action](args)
    except (ConfigError, ServerError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def _open_store(args: argparse.Namespace, *, create: bool = False) -> SQLiteStore:
    """The store in ``--data-dir`` (or the default one); made if new only with ``create``."""
    from pathlib import Path

    from service.store import SQLiteStore

    config = ServiceConfig(data_dir=args.data_dir or ServiceConfig.default_data_dir())
    if create:
        Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    elif not config.database_path.is_file():
        raise ConfigError(f"no store at {config.database_path} (pass --data-dir where the service keeps it, or "
                          f"set FABRIC_SERVICE_DIR)")
    return SQLiteStore(config.database_path, synchronous=config.sqlite_synchronous)


def _add_user(args: argparse.Namespace) -> int:
    if not args.name.strip() or len(args.name) > 128:
        raise ConfigError("NAME must have 1 to 128 characters")
    if args.token_name is not None and not 0 < len(args.token_name) <= 128:
        raise ConfigError("--token-name must have 1 to 128 characters")
    store = _open_store(args, create=True)
    try:
        known = store.find_user(args.name)
        user, token = store.add_user(args.name, args.token_name)
        held = len(store.list_tokens(user.user_id))
    finally:
        store.close()
    if known is not None and known.name == args.name:
        print(f"user {args.name} exists: issued another token ({held} now; `tokens {args.name}` lists them, "
              f"`revoke-token ID` revokes one)", file=sys.stderr)
    print(token)
    return 0


def _users(args: argparse.Namespace) -> int:
    import json

    store = _open_store(args)
    try:
        found = store.list_users()
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"user_id": u.user_id, "name": u.name, "tokens": u.tokens, "created": u.created}
                          for u in found]))
        return 0
    rows = [(u.name, u.user_id, str(u.tokens), _when(u.created)) for u in found]
    print(_table(("NAME", "USER ID", "TOKENS", "CREATED"), rows))
    return 0


def _tokens(args: argparse.Namespace) -> int:
    import json

    store = _open_store(args)
    try:
        user = None if args.user is None else store.find_user(args.user)
        if args.user is not None and user is None:
            raise ConfigError(f"no user {args.user!r}")
        found = store.list_tokens(None if user is None else user.user_id)
        names = {u.user_id: u.name for u in store.list_users()}
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"token_id": t.token_id, "user": names.get(t.user_id), "user_id": t.user_id,
                           "name": t.name, "created": t.created} for t in found]))
        return 0
    rows = [(t.token_id, names.get(t.user_id, t.user_id), t.name, _when(t.created)) for t in found]
    print(_table(("TOKEN ID", "USER", "NAME", "ISSUED"), rows))
    return 0


def _revoke_token(args: argparse.Namespace) -> int:
    prefix = args.token.strip().partition(".")[0]  # a whole token: its id, the secret never shown
    if len(prefix) < MIN_PREFIX:
        raise ConfigError(f"TOKEN_ID needs at least {MIN_PREFIX} characters of the token's id")
    store = _open_store(args)
    try:
        found = store.list_tokens(None, prefix)
        if len(found) != 1:
            raise ConfigError(f"no token's id starts with {prefix!r}" if not found else
                              f"{prefix!r} names {len(found)} tokens ({', '.join(t.token_id for t in found)}): "
                              f"give more of the id")
        token = found[0]
        store.revoke_token(token.token_id)
        names = {u.user_id: u.name for u in store.list_users()}
    finally:
        store.close()
    print(f"revoked token {token.token_id} ({token.name}) of {names.get(token.user_id, token.user_id)}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    import time

    store = _open_store(args)
    try:
        user = store.find_user(args.name)
        if user is None:
            raise ConfigError(f"no user {args.name!r}")
        tokens = len(store.list_tokens(user.user_id))
        unfinished = store.remove_user(user.user_id) or []
        outcomes = [store.cancel_group(group_id, time.time()) for group_id in unfinished]
    finally:
        store.close()
    sent = sum(len(ids) for outcome in outcomes for ids in outcome.dispatched.values())
    print(f"removed user {user.name} ({user.user_id}) and {tokens} token(s); cancelled "
          f"{sum(outcome.cancelled for outcome in outcomes)} task(s) not yet sent ({sent} already sent finish)")
    return 0


def _when(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])


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
