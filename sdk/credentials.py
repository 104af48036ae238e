"""Where the fabric keeps a user's files, and the token ``fabric login`` stores.

Everything lives under ``fabric.home.fabric_home()``: ``$FABRIC_HOME``, else ``~/.fabric``::

    credentials.json          {"service_url": ..., "token": ...}   (mode 0600)
    endpoints/NAME/           one configured endpoint (``fabric endpoint configure NAME``)
    service/                  a service's data directory, by default (``fabric service ...``)

A ``Client`` finds its service and token in this order: the arguments it is given, the
environment (``FABRIC_SERVICE_URL``, ``FABRIC_TOKEN``), then ``credentials.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fabric.errors import ConfigError
from fabric.home import HOME_VARIABLE, fabric_home

__all__ = ["CREDENTIALS_FILE", "HOME_VARIABLE", "SERVICE_VARIABLE", "TOKEN_VARIABLE", "Credentials", "fabric_home",
           "forget_credentials", "resolve", "store_credentials", "stored_credentials"]

TOKEN_VARIABLE = "FABRIC_TOKEN"
SERVICE_VARIABLE = "FABRIC_SERVICE_URL"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    service_url: str | None
    token: str | None


def stored_credentials() -> Credentials:
    """What ``fabric login`` stored (both None when nothing was)."""
    path = fabric_home() / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Credentials(None, None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable credentials ({exc}); run `fabric login` again") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object; run `fabric login` again")
    url, token = data.get("service_url"), data.get("token")
    return Credentials(url if isinstance(url, str) else None, token if isinstance(token, str) else None)


def store_credentials(service_url: str, token: str) -> Path:
    """Write the credentials file, readable by the user only; returns its path."""
    home = fabric_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / CREDENTIALS_FILE
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"service_url": service_url, "token": token}, handle)
    os.replace(temporary, path)
    return path


def forget_credentials() -> bool:
    """Remove the credentials file; True if there was one."""
    try:
        (fabric_home() / CREDENTIALS_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def resolve(service_url: str | None, token: str | None) -> Credentials:
    """The service URL and token a client uses: arguments, then environment, then the stored file."""
    service_url = service_url or os.environ.get(SERVICE_VARIABLE) or None
    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if service_url is None or token is None:
        stored = stored_credentials()
        service_url = service_url or stored.service_url
        same_service = service_url is None or stored.service_url is None or _same(stored.service_url, service_url)
        if token is None and same_service:  # never send one service's token to another
            token = stored.token
    return Credentials(service_url.rstrip("/") if service_url else None, token)


def _same(url: str, other: str) -> bool:
    return url.rstrip("/") == other.rstrip("/")
