"""The shared fixtures (``tests.support.fixtures``), visible to every test folder."""

from tests.support.fixtures import cluster, interchanges, start_service, zmq_context

__all__ = ["cluster", "interchanges", "start_service", "zmq_context"]
