"""``fabric trigger``: process data as they are acquired.

::

    fabric trigger create --endpoint ID (--function MODULE:NAME | --function-id ID) DIRECTORY [--pattern GLOB]
    fabric trigger list [--endpoint ID]
    fabric trigger delete TRIGGER_ID
    fabric trigger watch --endpoint ID [--state-dir DIR] [--settle S] [--poll S]

``create`` runs where the endpoint runs: it refuses a directory this user may not read.
``watch`` runs beside the endpoint (same machine, same user) and submits a task per new,
fully written file of each of the endpoint's triggers (``endpoint.triggers``), until stopped.
The service and token come from ``fabric login`` (or FABRIC_SERVICE_URL / FABRIC_TOKEN).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import threading
from collections.abc import Sequence

from fabric.errors import ConfigError


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="New files in a directory at an endpoint start a "
                                                            "function, once per file.")
    commands = parser.add_subparsers(dest="trigger_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create", help="watch DIRECTORY at an endpoint for a function")
    create.add_argument("directory")
    create.add_argument("--endpoint", required=True, help="the endpoint's id")
    which = create.add_mutually_exclusive_group(required=True)
    which.add_argument("--function", help="MODULE:NAME of a function to register and run")
    which.add_argument("--function-id", help="the id of a registered function")
    create.add_argument("--pattern", default="*", help="file names to take (a glob; default: *)")
    create.add_argument("--max-per-minute", type=int, default=600, help="tasks started per minute at most")
    listing = commands.add_parser("list", help="your triggers (as JSON lines)")
    listing.add_argument("--endpoint", default=None)
    delete = commands.add_parser("delete", help="delete a trigger")
    delete.add_argument("trigger_id")
    watch = commands.add_parser("watch", help="submit a task per new file of the endpoint's triggers, until stopped")
    watch.add_argument("--endpoint", required=True)
    watch.add_argument("--state-dir", default=None, help="where the files already taken are recorded "
                                                         "(default: ~/.fabric/triggers/<endpoint id>)")
    watch.add_argument("--settle", type=float, default=1.0, help="seconds a file must stay unchanged (default: 1)")
    watch.add_argument("--poll", type=float, default=0.5, help="seconds between scans (default: 0.5)")
    return parser


def _function_id(client: object, options: argparse.Namespace) -> str:
    if options.function_id:
        return str(options.function_id)
    module, _, name = str(options.function).partition(":")
    if not module or not name:
        raise ConfigError(f"--function must be MODULE:NAME, not {options.function!r}")
    return str(client.register_function(getattr(importlib.import_module(module), name)))  # type: ignore[attr-defined]


def main(argv: Sequence[str], prog: str = "fabric trigger") -> int:
    from fabric import Client
    from fabric.home import fabric_home

    options = build_parser(prog).parse_args(list(argv))
    client = Client()
    if options.trigger_command == "create":
        directory = os.path.abspath(options.directory)
        if not os.path.isdir(directory) or not os.access(directory, os.R_OK | os.X_OK):
            raise ConfigError(f"{directory} is not a directory this user may read: the endpoint could not watch it")
        record = client.create_trigger(options.endpoint, _function_id(client, options), directory,
                                       pattern=options.pattern, max_per_minute=options.max_per_minute)
        print(json.dumps(record))
    elif options.trigger_command == "list":
        for record in client.list_triggers(options.endpoint):
            print(json.dumps(record))
    elif options.trigger_command == "delete":
        client.delete_trigger(options.trigger_id)
    else:
        return _watch(client, options, str(fabric_home() / "triggers" / options.endpoint))
    return 0


def _watch(client: object, options: argparse.Namespace, default_state: str) -> int:
    from endpoint.triggers import TriggerWatcher

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher = TriggerWatcher(client, options.endpoint, options.state_dir or default_state, settle=options.settle)
    try:
        watcher.run(stop, options.poll)
    except KeyboardInterrupt:
        pass
    return 0
