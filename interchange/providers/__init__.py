"""Providers start managers: locally now; batch schedulers plug in behind the same interface."""

from interchange.providers.local import LocalProvider

__all__ = ["LocalProvider"]
