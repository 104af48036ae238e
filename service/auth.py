"""Who is calling, and how often: identity providers and the per-user rate limit.

Every request carries ``Authorization: Bearer <token>``; an ``IdentityProvider`` turns the
token into a ``User`` (or refuses it). ``LocalTokens`` checks the tokens that
``fabric service add-user`` created; ``service.globus_auth.GlobusAuthIdentity`` checks
Globus Auth tokens by introspection. ``make_identity`` picks one from the configuration.
"""

from __future__ import annotations

import abc
import threading
import time

from service.config import ServiceConfig
from service.store import Store, User


class IdentityProvider(abc.ABC):
    """Turns a bearer token into the user it belongs to."""

    @abc.abstractmethod
    def authenticate(self, token: str) -> User | None:
        """The token's user, or None for an unknown, expired or malformed token. Raises
        ``IdentityUnavailable`` when the token cannot be checked now (never admits it)."""


def make_identity(config: ServiceConfig, store: Store) -> IdentityProvider:
    """The identity provider ``config.identity`` names."""
    if config.identity == "globus":
        from service.globus_auth import GlobusAuthIdentity

        assert config.globus_client_id is not None and config.globus_client_secret is not None  # checked by config
        return GlobusAuthIdentity(store, client_id=config.globus_client_id, client_secret=config.globus_client_secret,
                                  required_scope=config.required_scope, cache_seconds=config.globus_cache_seconds)
    return LocalTokens(store)


class LocalTokens(IdentityProvider):
    """Tokens issued by this service (stored hashed in the store)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def authenticate(self, token: str) -> User | None:
        if not token or len(token) > 512:
            return None
        return self.store.user_for_token(token)


class RateLimiter:
    """A token bucket per user: ``rate`` requests per second, bursts of ``burst``.

    ``acquire(user)`` returns 0.0 when the request may go ahead, else how many seconds to
    wait before the next one would. ``rate`` 0 admits everything.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_time(self, user_id: str, now: float | None = None) -> float:
        """What ``acquire`` would answer, without taking a token."""
        return self._take(user_id, now, take=False)

    def acquire(self, user_id: str, now: float | None = None) -> float:
        return self._take(user_id, now, take=True)

    def _take(self, user_id: str, now: float | None, *, take: bool) -> float:
        """Refill ``user_id``'s bucket to ``now``; with ``take``, spend a token if there is one.
        Returns 0.0 when a request may go ahead, else the seconds until one could."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(user_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                if take:
                    self._buckets[user_id] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if take:
                self._buckets[user_id] = (tokens - 1.0, now)
            return 0.0
