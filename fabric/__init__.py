"""fabric: a federated function-as-a-service fabric for science.

The public facade::

    from fabric import Endpoint
    with Endpoint(workers=4) as endpoint:
        future = endpoint.submit(pow, 2, 10)
        print(future.result())

Submodules (``fabric.protocol``, ``fabric.serialize``, ``fabric.errors``) are shared by
every process; the facade's classes are imported lazily so workers stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fabric.errors import (EndpointError, EndpointShutdown, FabricError, ManagerLost, PayloadTooLarge, ProtocolError,
                           RemoteExecutionError, SerializationError, TaskCancelled, TaskError, TaskTimeout,
                           WorkerLost)

if TYPE_CHECKING:
    from sdk.endpoint import Endpoint, EndpointStatus

__version__ = "0.1.0"

__all__ = [
    "Endpoint", "EndpointError", "EndpointShutdown", "EndpointStatus", "FabricError", "ManagerLost",
    "PayloadTooLarge", "ProtocolError", "RemoteExecutionError", "SerializationError", "TaskCancelled", "TaskError",
    "TaskTimeout", "WorkerLost", "__version__",
]

_LAZY = {"Endpoint": "sdk.endpoint", "EndpointStatus": "sdk.endpoint"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fabric' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
