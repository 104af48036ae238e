"""Memoization, opt-in: ``memoize`` marks a function, ``Executor(memoize=True)`` a whole executor.

A memoized call with the same function and the same serialized arguments as an earlier
successful one of yours is answered by the service with that result, without running
(``service.store.memo``); failures are never remembered. Results are kept ``ttl`` seconds
(None: the service's default, a week). ``Client.forget`` drops them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

MARK = "__fabric_memoize__"


def memoize(fn: F | None = None, *, ttl: float | None = None) -> Any:
    """Decorator: calls of ``fn`` through an ``Executor`` are memoized (``@memoize`` or ``@memoize(ttl=60)``)."""
    def mark(function: F) -> F:
        setattr(function, MARK, ttl if ttl is not None else True)
        return function

    return mark(fn) if fn is not None else mark


def memo_option(fn: Callable[..., Any] | None, executor_setting: bool | float) -> bool | float | None:
    """What to ask the service for a call of ``fn``: True (default ttl), a ttl, or None (not memoized)."""
    marked = getattr(fn, MARK, None) if fn is not None else None
    value = marked if marked is not None else executor_setting
    if value is False or value is None:
        return None
    return value
