"""Why an endpoint is not working: its last exit, recorded by the daemon, and what its log says.

The daemon writes ``endpoints/NAME/last_exit.json`` on its way out (``record_exit``):
``{"how": "stopped" | "keys rotated" | "exited" | "crashed", "reason", "pid", "at"}`` —
stopped by a signal (``fabric endpoint stop``), told to stop by the service because a later
``fabric endpoint start NAME`` (another machine, another home) rotated its keys, exited on
its own (e.g. the service unreachable), or crashed (an exception). A daemon killed outright records
nothing: its pid file stays behind, and
``diagnose`` calls that a crash too. A running endpoint that the service shows offline
and whose log says the service refuses its keys had its keys rotated too. ``fabric endpoint status``
shows the diagnosis, with the log's tail when something went wrong.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from endpoint.home import EndpointPaths, write_json

LOG_TAIL_LINES = 20
KEYS_REFUSED = "wrong keys"
"""What the interchange logs when the service's CurveZMQ handshake refuses its keys."""


def exit_file(paths: EndpointPaths) -> Path:
    return paths.directory / "last_exit.json"


def record_exit(paths: EndpointPaths, how: str, reason: str, pid: int | None = None) -> None:
    """Write why the endpoint process ``pid`` ended (``how``: stopped, exited or crashed)."""
    write_json(exit_file(paths), {"how": how, "reason": reason, "pid": pid or os.getpid(), "at": time.time()})


def exit_kind(reason: str) -> str:
    """How an interchange's stop ``reason`` counts: keys rotated (the service revoked its keys
    because the endpoint registered again), stopped (a signal), or exited."""
    if "new keys" in reason:
        return "keys rotated"
    return "stopped" if " by SIG" in reason else "exited"


def clear_exit(paths: EndpointPaths) -> None:
    """A new endpoint process runs: the previous exit no longer explains anything."""
    exit_file(paths).unlink(missing_ok=True)


def last_exit(paths: EndpointPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(exit_file(paths).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log (reading at most its last 64 KiB)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 65536))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def diagnose(paths: EndpointPaths, running: bool, stale_pid_file: bool,
             service_status: str | None) -> dict[str, Any] | None:
    """Why the endpoint is stopped or cannot connect: ``{"why", "reason", "at", "log_tail"}``;
    None when nothing is wrong (or it never ran)."""
    log = tail(paths.log)
    if running:
        if service_status == "offline" and KEYS_REFUSED in log.split("starting, pid")[-1]:
            return {"why": "keys rotated", "at": None, "log_tail": log,
                    "reason": "the service refuses this endpoint's keys: a later `fabric endpoint start "
                              f"{paths.name}` (elsewhere?) rotated them; restart it here to take it back"}
        return None
    record = last_exit(paths)
    if record is not None:
        how = str(record.get("how", "exited"))
        reason = str(record.get("reason", ""))
        if how == "keys rotated":
            reason += (f" (a later `fabric endpoint start {paths.name}`, elsewhere?, took the endpoint over; "
                       f"start it here to take it back)")
        return {"why": how, "reason": reason, "at": record.get("at"),
                "log_tail": "" if how == "stopped" else log}
    if stale_pid_file:
        return {"why": "crashed", "at": None, "log_tail": log,
                "reason": "it ended without recording why (killed, or the machine restarted)"}
    return None


def describe(diagnosis: dict[str, Any]) -> str:
    """The diagnosis as ``status`` prints it."""
    when = ""
    if diagnosis.get("at"):
        when = f" at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(diagnosis['at']))}"
    text = f"why:          {diagnosis['why']}{when}: {diagnosis['reason']}"
    if diagnosis.get("log_tail"):
        text += "\nlog tail:\n" + "\n".join(f"  {line}" for line in diagnosis["log_tail"].splitlines())
    return text
