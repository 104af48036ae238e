"""Errors of the interchange process (the shared ones live in ``fabric.errors``).

::

    FabricError                 (fabric.errors)
    └── InterchangeError        the interchange cannot run as configured
        └── SpoolError          the result spool's folder cannot be used (``path``, ``reason``)
"""

from __future__ import annotations

from fabric.errors import FabricError


class InterchangeError(FabricError):
    """The interchange cannot run as configured."""


class SpoolError(InterchangeError):
    """The result spool's folder cannot be created, locked or read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"result spool {self.path}: {self.reason}"
