"""fabric: a federated function-as-a-service fabric for science.

The public facade::

    from fabric import Endpoint                 # a local endpoint, no service
    with Endpoint(workers=4) as endpoint:
        future = endpoint.submit(pow, 2, 10)
        print(future.result())

    from fabric import Client, Executor         # through the service, to a registered endpoint
    with Executor(endpoint_id, client=Client(service_url, token)) as executor:
        print(executor.submit(pow, 2, 10).result())

Submodules (``fabric.protocol``, ``fabric.serialize``, ``fabric.errors``) are shared by
every process; the facade's classes are imported lazily so workers stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabric.errors import (AuthError, BatchGone, EndpointError, EndpointShutdown, FabricError, Forbidden,
                           FunctionNotAllowed, InvalidRequest, ManagerLost, NoEligibleEndpoint, NotFound,
                           PayloadTooLarge, ProtocolError, RateLimited, RemoteExecutionError, SerializationError,
                           ServiceError, ServiceInternalError, ServiceUnavailable, TaskCancelled, TaskError,
                           TaskPending, TaskTimeout, WorkerLost, DependencyFailed)

if TYPE_CHECKING:
    from sdk.client import Client
    from sdk.endpoint import Endpoint, EndpointStatus
    from fabric.dependencies import NotAFabricFuture, TaskRef
    from sdk.executor import Executor

__version__ = "0.1.0"

__all__ = [
    "AuthError", "BatchGone", "Client", "Endpoint", "EndpointError", "EndpointShutdown", "EndpointStatus", "Executor",
    "FabricError", "Forbidden", "FunctionNotAllowed", "InvalidRequest", "ManagerLost", "NoEligibleEndpoint",
    "NotFound", "PayloadTooLarge", "ProtocolError", "RateLimited", "RemoteExecutionError", "SerializationError",
    "ServiceError", "ServiceInternalError", "ServiceUnavailable", "TaskCancelled", "TaskError", "DependencyFailed",
    "NotAFabricFuture", "TaskRef", "TaskPending", "TaskTimeout", "WorkerLost", "__version__",
]

_LAZY = {"Client": "sdk.client", "Endpoint": "sdk.endpoint", "EndpointStatus": "sdk.endpoint",
         "Executor": "sdk.executor", "NotAFabricFuture": "fabric.dependencies", "TaskRef": "fabric.dependencies"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fabric' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
