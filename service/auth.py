"""Who is calling, and how often: identity providers and the per-user rate limit.

Every request carries ``Authorization: Bearer <token>``; an ``IdentityProvider`` turns the
token into a ``User`` (or refuses it). ``LocalTokens`` checks the tokens that
``fabric service add-user`` created; a Globus Auth provider (token introspection) can
take its place without touching the routes.
"""

from __future__ import annotations

import abc
import threading
import time

from service.store import Store, User


class IdentityProvider(abc.ABC):
    """Turns a bearer token into the user it belongs to."""

    @abc.abstractmethod
    def authenticate(self, token: str) -> User | None:
        """The token's user, or None for an unknown, expired or malformed token."""


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

    def acquire(self, user_id: str, now: float | None = None) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(user_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[user_id] = (tokens, now)
                return (1.0 - tokens) / self.rate
            self._buckets[user_id] = (tokens - 1.0, now)
            return 0.0
