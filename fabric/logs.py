"""Logging set-up for process entry points: text or JSON lines, to stderr or a rotating file.

``configure(level, log_format="text"|"json", path=None)`` is called by an entry point (the
service, the endpoint daemon), never on import. JSON lines carry ``time`` (ISO 8601, UTC),
``level``, ``logger``, ``pid``, ``thread``, ``message``, ``exception`` (a traceback, when
there is one) and ``request_id`` while a service request is being handled: the service
sets it for its request's thread (``request_context``), so every line logged while
handling one request carries the id that its reply's ``X-Request-Id`` header shows.

With ``path`` the log is a ``RotatingFileHandler``: at ``max_bytes`` (default
``FABRIC_LOG_MAX_BYTES`` or 10 MiB) the file becomes ``path.1`` (``.2`` ...; ``backups``
kept, default ``FABRIC_LOG_BACKUPS`` or 5).
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import logging.handlers
import os
from pathlib import Path

LOG_FORMATS = ("text", "json")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fabric_request_id", default=None)


def set_request_id(request_id: str | None) -> None:
    """The request this thread handles now (None: none)."""
    _request_id.set(request_id)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id``: the request being handled in this thread, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "pid": record.process, "thread": record.threadName,
            "message": record.getMessage()}
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def text_format() -> str:
    return f"%(asctime)s %(levelname)s {os.getpid()} %(name)s: %(message)s"


def _int_env(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name, default)))
    except ValueError:
        return default


def configure(level: str | None, log_format: str = "text", path: Path | None = None) -> logging.Handler:
    """Set up the root logger of this process; returns the handler it installed."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler()
    else:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=_int_env("FABRIC_LOG_MAX_BYTES", DEFAULT_MAX_BYTES),
            backupCount=_int_env("FABRIC_LOG_BACKUPS", DEFAULT_BACKUPS), encoding="utf-8")
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(text_format()))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("FABRIC_LOG_LEVEL", "WARNING")).upper())
    return handler
