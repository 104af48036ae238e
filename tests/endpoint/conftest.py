"""The fixtures of the endpoint CLI tests (``tests.support.endpoint_cli``)."""

from tests.support.endpoint_cli import endpoints, service

__all__ = ["endpoints", "service"]
