"""CurveZMQ between the interchange and its managers (``InterchangeConfig.manager_curve``).

``ManagerKeys`` makes the interchange's key pair when it starts, turns its managers' ROUTER
into a CurveZMQ server, and hands out a client key pair for every manager of every block
it submits (``issue``). A ZAP handler (pyzmq's ``ThreadAuthenticator``, with this object
as its credentials provider) admits only public keys it handed out, and names each
connection after the manager the key was made for (ZAP ``User-Id``), so the interchange
can check that a registering manager is the one the key belongs to (``user_id_matches``).

How a manager gets its secret key: a ``ManagerConfig`` travels on the manager's command
line (and, for batch jobs, in a job script other users may read), so it carries only the
interchange's public key and the *path* of a key file. Each key file (JSON ``{"public",
"secret"}``) is made with mode 0600 in a folder of mode 0700 (``tempfile.mkdtemp``), in the
provider's ``script_dir`` when one is set (batch jobs must be able to read it: a shared
file system), else in the system's temporary folder. A file was chosen over an
environment variable because the providers hand a block nothing but its shell command:
the local provider runs it as ``bash -c COMMAND`` (an argument anyone on the host can
read), and a batch scheduler passes environment variables only as its export settings
allow; a private file needs no change to any provider and works the same for all but
Kubernetes (pods cannot see the interchange's files; there ``manager_curve`` stays off).
The folder is removed when the interchange closes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

logger = logging.getLogger(__name__)

ZAP_DOMAIN = "fabric-managers"


class ManagerKeys:
    """The interchange's CurveZMQ keys and those it made for its managers (see the module docstring)."""

    def __init__(self, context: zmq.Context[Any], endpoint_id: str, folder_parent: str | None = None) -> None:
        public, secret = zmq.curve_keypair()
        self.public, self._secret = public.decode("ascii"), secret
        self.endpoint_id = endpoint_id
        if folder_parent is not None:
            Path(folder_parent).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="fabric-manager-keys-", dir=folder_parent))  # mode 0700
        self.managers: dict[bytes, str] = {}  # z85 public key -> the manager id it was made for
        self.authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
        self.authenticator.curve_user_id = self._user_id  # type: ignore[method-assign]
        try:
            self.authenticator.start()
            self.authenticator.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self)
        except BaseException:
            self.close()
            raise

    def secure(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` (the managers' ROUTER, before it binds) a CurveZMQ server of these keys."""
        socket.curve_secretkey = self._secret
        socket.curve_publickey = self.public.encode("ascii")
        socket.curve_server = True
        socket.zap_domain = ZAP_DOMAIN.encode()

    def issue(self, block_id: str, nodes: int, rank: str) -> str:
        """Key pairs for the ``nodes`` managers of block ``block_id``; returns the key file path,
        with ``rank`` where each manager's node rank goes (the launcher's shell fills it in)."""
        for node in range(nodes):
            public, secret = zmq.curve_keypair()
            path = self.folder / f"{block_id}.{node}.json"
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(descriptor, "w") as file:
                json.dump({"public": public.decode("ascii"), "secret": secret.decode("ascii")}, file)
            self.managers[public] = f"{self.endpoint_id}-{block_id}-{node}"
        return str(self.folder / f"{block_id}.{rank}.json")

    # -- the ZAP handler's questions (asked on its thread) --------------------------------------
    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider protocol: is this (z85) public key one we made?"""
        admitted = key in self.managers
        if not admitted:
            logger.warning("refused a manager connection with a CurveZMQ key this interchange did not make")
        return admitted

    def _user_id(self, client_public_key: bytes) -> str:
        return self.managers.get(z85.encode(client_public_key), "")

    @staticmethod
    def user_id_matches(frame: zmq.Frame, manager_id: str) -> bool:
        """Whether the connection ``frame`` came on holds the key made for ``manager_id``."""
        try:
            return bool(frame.get("User-Id") == manager_id)
        except zmq.ZMQError:  # no such property: the message did not come through CurveZMQ
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.authenticator.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
