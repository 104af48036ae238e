"""``fabric endpoint logs NAME [-n LINES] [-f]``: an endpoint's log, and following it.

The daemon logs to ``endpoints/NAME/endpoint.log`` through a rotating handler
(``fabric.logs``: at ``FABRIC_LOG_MAX_BYTES``, default 10 MiB, the file becomes
``endpoint.log.1``, and so on, ``FABRIC_LOG_BACKUPS`` kept, default 5). Managers and
workers write their own lines to the daemon's standard error, which is the log as it was
when the daemon started (after a rotation their lines land in a rotated file). ``logs``
prints the last lines (from the rotated files too); ``-f`` then follows the file as ``tail -F`` does,
reopening it when it
is rotated, until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from endpoint.exits import tail
from endpoint.home import EndpointPaths
from fabric.errors import ConfigError

FOLLOW_PAUSE = 0.2
"""Seconds between two looks at a followed log that had nothing new."""


def logs_command(options: argparse.Namespace) -> int:
    paths = EndpointPaths.of(options.name)
    if not paths.config.exists():
        raise ConfigError(f"no endpoint named {paths.name!r} in {paths.directory.parent}")
    if not paths.log.exists() and not options.follow:
        print(f"endpoint {paths.name} has no log yet ({paths.log}): it has never been started as a daemon",
              file=sys.stderr)
        return 0
    if options.lines:
        text = "\n".join(last_lines(paths, options.lines))
        if text:
            print(text, flush=True)
    if options.follow:
        try:
            follow(paths)
        except KeyboardInterrupt:
            pass
    return 0


def last_lines(paths: EndpointPaths, count: int) -> list[str]:
    """The log's last ``count`` lines, from the rotated files too when the current one has fewer."""
    lines: list[str] = []
    for number in range(0, 100):
        path = paths.log if number == 0 else paths.log.with_name(f"{paths.log.name}.{number}")
        if not path.exists():
            break
        lines = tail(path, count - len(lines)).splitlines() + lines
        if len(lines) >= count:
            break
    return lines[-count:]


def follow(paths: EndpointPaths) -> None:
    """Print what is appended to the log, across rotations, until interrupted."""
    out = sys.stdout.buffer
    handle: BinaryIO | None = None
    inode: Any = None
    try:
        handle = open(paths.log, "rb")  # noqa: SIM115 - kept open across loop turns
        handle.seek(0, os.SEEK_END)  # its last lines were printed already
        inode = os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        pass
    try:
        while True:
            if handle is None or _rotated(paths, inode):
                if handle is not None:
                    _copy(handle, out)  # what was written before the rename
                    handle.close()
                    handle = None
                    _copy_skipped(paths, inode, out)
                try:
                    handle = open(paths.log, "rb")  # noqa: SIM115 - the new file, from its start
                except FileNotFoundError:
                    time.sleep(FOLLOW_PAUSE)
                    continue
                inode = os.fstat(handle.fileno()).st_ino
            if not _copy(handle, out):
                time.sleep(FOLLOW_PAUSE)
    finally:
        if handle is not None:
            handle.close()


def _copy(handle: BinaryIO, out: BinaryIO) -> bool:
    chunk = handle.read()
    if chunk:
        out.write(chunk)
        out.flush()
    return bool(chunk)


def _rotated_file(paths: EndpointPaths, number: int) -> Path:
    return paths.log.with_name(f"{paths.log.name}.{number}")


def _copy_skipped(paths: EndpointPaths, inode: Any, out: BinaryIO) -> None:
    """The log rotated more than once since the last look: print the whole files written
    after the one that was followed (``.k-1`` down to ``.1``) before the current one."""
    number = 1
    while _rotated_file(paths, number).exists():
        if os.stat(_rotated_file(paths, number)).st_ino == inode:
            break
        number += 1
    else:
        return  # the followed file is gone: nothing to place it by
    for newer in range(number - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError), open(_rotated_file(paths, newer), "rb") as handle:
            _copy(handle, out)


def _rotated(paths: EndpointPaths, inode: Any) -> bool:
    try:
        return os.stat(paths.log).st_ino != inode
    except FileNotFoundError:
        return False


def add_command(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``logs`` to ``fabric endpoint``'s actions."""
    parser = actions.add_parser("logs", help="show an endpoint's log (-f: follow it)",
                                description="Print the last lines of endpoints/NAME/endpoint.log; with -f, then "
                                            "print what the endpoint logs as it happens, across log rotations, "
                                            "until interrupted (Ctrl-C).")
    parser.set_defaults(handler=logs_command, parser=parser)
    parser.add_argument("name", metavar="NAME", help="the endpoint's name")
    parser.add_argument("-n", "--lines", type=int, default=50, help="how many last lines to print (default: 50)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until interrupted")
