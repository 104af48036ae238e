"""Which endpoint is connecting to the forwarder, and whether its key is still its own.

``EndpointAuthenticator`` is the ZAP handler of the forwarder's CurveZMQ ROUTER: it admits
only the public keys of registered endpoints, and names each connection (ZAP ``User-Id``)
``<endpoint id> <z85 public key>``. Registering an endpoint again rotates its key pair, so
a connection admitted earlier may hold a key that is no longer the endpoint's:
``CurrentKeys`` answers that for every message, from a cache the forwarder drops when the
app rotates a key in this process and on every tick (a rotation by another process).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from service.errors import StoreError
from service.store import Store

logger = logging.getLogger(__name__)

ZAP_DOMAIN = "fabric"


class EndpointAuthenticator(ThreadAuthenticator):
    """ZAP handler: CURVE keys of registered endpoints only; the User-Id names the endpoint and the key."""

    def __init__(self, context: zmq.Context[Any], store: Store) -> None:
        super().__init__(context, log=logging.getLogger(f"{__name__}.zap"))
        self.store = store

    def callback(self, domain: str, key: bytes) -> bool:
        """``credentials_provider`` protocol of pyzmq: is this (z85) public key admitted?"""
        try:
            admitted = self.store.endpoint_for_key(key.decode("ascii")) is not None
        except (StoreError, UnicodeDecodeError) as exc:
            logger.error("cannot check an endpoint key: %s", exc)
            return False
        if not admitted:
            logger.warning("refused a connection with an unknown CurveZMQ key")
        return admitted

    def curve_user_id(self, client_public_key: bytes) -> str:
        """``<endpoint id> <z85 public key>``: the forwarder checks the key is still the
        endpoint's on each message (registering again rotates it)."""
        key = z85.encode(client_public_key).decode("ascii")
        endpoint_id = self.store.endpoint_for_key(key)
        return f"{endpoint_id} {key}" if endpoint_id else ""


class CurrentKeys:
    """Each endpoint's current public key, read from the store once and cached (one thread)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._keys: dict[str, str] = {}  # endpoint id -> its public key ("" if no such endpoint)

    def is_current(self, endpoint_id: str, key: str) -> bool:
        current = self._keys.get(endpoint_id)
        if current is None:
            record = self.store.get_endpoint(None, endpoint_id)
            current = self._keys[endpoint_id] = record.public_key if record is not None else ""
        return key == current

    def forget(self, endpoint_id: str) -> None:
        self._keys.pop(endpoint_id, None)

    def forget_all(self) -> None:
        self._keys.clear()
