"""CurveZMQ key pairs: the service's own (kept in the data directory) and new endpoints'.

Keys are z85 text (40 characters), as ``zmq.curve_keypair`` makes them. The server's pair
lives in ``<data dir>/curve/server.json``, readable by its owner only, made on first use.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import zmq

from service.errors import StoreError


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPair:
    public: str
    secret: str


def new_key_pair() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def server_keys(keys_dir: str | os.PathLike[str]) -> KeyPair:
    """The service's key pair from ``keys_dir``, made (atomically, mode 0600) if absent."""
    directory = Path(keys_dir)
    path = directory / "server.json"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        pair = new_key_pair()
        temporary = directory / f".server.json.{os.getpid()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"public": pair.public, "secret": pair.secret}, file)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)  # never replaces keys another process made meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    try:
        data = json.loads(path.read_text())
        return KeyPair(str(data["public"]), str(data["secret"]))
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"cannot read the service's CurveZMQ keys from {path}: {exc}") from exc
