"""fabric: a federated function-as-a-service fabric for science.

The public facade::

    from fabric import Endpoint                 # a local endpoint, no service
    with Endpoint(workers=4) as endpoint:
        future = endpoint.submit(pow, 2, 10)
        print(future.result())

    from fabric import Client, Executor         # through the service, to a registered endpoint
    with Executor(endpoint_id, client=Client(service_url, token)) as executor:
        print(executor.submit(pow, 2, 10).result())

Submodules are the core every role shares, and import no role: ``fabric.protocol`` (the
wire spec between the processes), ``fabric.rest`` (between client and service),
``fabric.serialize``, ``fabric.errors``, ``fabric.config``, ``fabric.sansio`` (the state
machines' contract), ``fabric.streams``, ``fabric.process``, ``fabric.home``. The facade's
classes are imported lazily so workers stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabric.errors import (AuthError, BatchGone, ContainerError, ContainerNotAllowed, DataOnlyError, EndpointError,
                           EndpointShutdown, FabricError, Forbidden, FunctionNotAllowed, InvalidRequest, ManagerLost,
                           NoEligibleEndpoint, NotFound, PayloadTooLarge, ProtocolError, RateLimited,
                           RemoteExecutionError, ResourcesUnavailable, ResourceSpecError, SerializationError,
                           SerializerNotAllowed, ServiceError, ServiceInternalError, ServiceUnavailable,
                           ShellCommandFailed, TaskCancelled, TaskError, TaskPending, TaskTimeout, TemplateKeyMissing,
                           WorkerLost, DependencyFailed)

if TYPE_CHECKING:
    from fabric.functions import MPIFunction, ShellFunction, ShellResult
    from sdk.client import Client
    from sdk.endpoint import Endpoint, EndpointStatus
    from fabric.dependencies import NotAFabricFuture, TaskRef
    from sdk.executor import Executor

__version__ = "0.1.0"

__all__ = [
    "AuthError", "BatchGone", "Client", "DataOnlyError", "Endpoint", "EndpointError", "EndpointShutdown",
    "EndpointStatus", "Executor", "FabricError", "Forbidden", "FunctionNotAllowed", "InvalidRequest", "ManagerLost",
    "NoEligibleEndpoint", "NotFound", "PayloadTooLarge", "ProtocolError", "RateLimited", "RemoteExecutionError",
    "SerializationError", "SerializerNotAllowed", "ServiceError", "ServiceInternalError", "ServiceUnavailable",
    "TaskCancelled", "TaskError", "DependencyFailed", "NotAFabricFuture", "TaskRef", "TaskPending", "TaskTimeout",
    "WorkerLost", "__version__",
    "ContainerError", "ContainerNotAllowed", "MPIFunction", "ResourceSpecError", "ResourcesUnavailable",
    "ShellCommandFailed", "ShellFunction", "ShellResult", "TemplateKeyMissing",
]

_LAZY = {"Client": "sdk.client", "Endpoint": "sdk.endpoint", "EndpointStatus": "sdk.endpoint",
         "Executor": "sdk.executor", "NotAFabricFuture": "fabric.dependencies", "TaskRef": "fabric.dependencies",
         "MPIFunction": "fabric.functions", "ShellFunction": "fabric.functions", "ShellResult": "fabric.functions"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fabric' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
