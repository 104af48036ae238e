"""Globus Auth as the service's identity provider: bearer tokens checked by introspection.

``GlobusAuthIdentity`` asks Globus Auth about each token it has not seen lately
(``POST /v2/oauth2/token/introspect``, authenticated as the service's confidential
client). A token is admitted only if the answer says ``active``, lists the service's
``required_scope`` in ``scope``, has an ``exp`` still in the future and names an identity
(``sub``). Answers, admitted or refused, are cached for ``cache_seconds`` (never past the
token's ``exp``) under a hash of the token, in a cache of at most ``CACHE_ENTRIES`` tokens,
so a busy client costs one introspection per ``cache_seconds``.

If Globus Auth cannot be asked (unreachable, slow, answering 5xx, refusing the service's
own client credentials, or answering nonsense) ``authenticate`` raises
``HTTPIdentityUnavailable`` (503, ``identity_unavailable``) and nothing is admitted; such
failures are not cached.

Identities become users of the store on first use (``Store.user_for_identity``, in the
store itself, so every service process sharing it agrees): the store user is named
``globus:<sub>`` (so it never merges with a local account), and the store keeps the
identity's current Globus username beside it. Requests see the user under that username,
and other users share endpoints and functions with it by username or identity id.

globus-sdk finds Globus Auth through its own settings (``GLOBUS_SDK_ENVIRONMENT``,
``GLOBUS_SDK_SERVICE_URL_AUTH``); the tests point it at a local fake.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from typing import Any

import globus_sdk
from globus_sdk.transport import RequestsTransport, RetryConfig

from service.auth import IdentityProvider
from service.errors import HTTPIdentityUnavailable
from service.records import User
from service.store import Store

logger = logging.getLogger(__name__)

CACHE_ENTRIES = 10_000
"""Most tokens whose introspection answer is remembered at once (least recently used go first)."""

HTTP_TIMEOUT = 10.0
"""Seconds one introspection request may take before the token counts as uncheckable (503)."""

MAX_TOKEN_LENGTH = 4096
PROVIDER = "globus"


class GlobusAuthIdentity(IdentityProvider):
    """Bearer tokens issued by Globus Auth for ``required_scope`` (see the module docstring)."""

    def __init__(self, store: Store, *, client_id: str, client_secret: str, required_scope: str,
                 cache_seconds: float) -> None:
        self.client_id, self._client_secret = client_id, client_secret
        self.required_scope = required_scope
        self.cache_seconds = cache_seconds
        self.store = store
        self._cache: collections.OrderedDict[bytes, tuple[float, User | None]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._local = threading.local()  # one Auth client (HTTP session) per WSGI thread

    def authenticate(self, token: str) -> User | None:
        if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
            return None
        key = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        cached = self._cached(key, now)
        if cached is not None:
            return cached[1]
        answer = self._introspect(token)
        user, expires = self._admit(answer)
        if self.cache_seconds > 0:
            self._remember(key, now + min(self.cache_seconds, max(0.0, expires - time.time())), user)
        return user

    # -- the cache -----------------------------------------------------------------------
    def _cached(self, key: bytes, now: float) -> tuple[float, User | None] | None:
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return entry

    def _remember(self, key: bytes, until: float, user: User | None) -> None:
        with self._cache_lock:
            self._cache[key] = (until, user)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)

    # -- asking Globus Auth --------------------------------------------------------------
    def _client(self) -> globus_sdk.ConfidentialAppAuthClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = globus_sdk.ConfidentialAppAuthClient(
                self.client_id, self._client_secret, transport=RequestsTransport(http_timeout=HTTP_TIMEOUT),
                retry_config=RetryConfig(max_retries=0))
            self._local.client = client
        return client

    def _introspect(self, token: str) -> dict[str, Any]:
        try:
            data = self._client().oauth2_token_introspect(token).data
        except globus_sdk.GlobusAPIError as exc:
            logger.error("Globus Auth refused to introspect a token: HTTP %s %s", exc.http_status, exc.code)
            raise HTTPIdentityUnavailable(f"the identity provider answered {exc.http_status}; retry later") from None
        except globus_sdk.GlobusError as exc:
            logger.error("cannot reach Globus Auth: %s", exc)
            raise HTTPIdentityUnavailable("the identity provider cannot be reached; retry later") from None
        if not isinstance(data, dict):
            logger.error("Globus Auth answered an introspection with %s, not a JSON object", type(data).__name__)
            raise HTTPIdentityUnavailable("the identity provider gave an unreadable answer; retry later")
        return data

    def _admit(self, answer: dict[str, Any]) -> tuple[User | None, float]:
        """The user an introspection answer admits (None: refused), and until when (epoch seconds)."""
        refused: tuple[User | None, float] = (None, float("inf"))
        if answer.get("active") is not True:
            return refused
        scopes, expires, sub = answer.get("scope"), answer.get("exp"), answer.get("sub")
        if not isinstance(scopes, str) or self.required_scope not in scopes.split():
            logger.info("refused a Globus token without the scope %s", self.required_scope)
            return refused
        if not isinstance(expires, (int, float)) or isinstance(expires, bool) or expires <= time.time():
            return refused
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            return refused
        username = answer.get("username")
        name = username if isinstance(username, str) and 0 < len(username) <= 256 else sub
        return self.store.user_for_identity(PROVIDER, sub, name), float(expires)
