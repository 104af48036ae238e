"""The public API of ``fabric``: exactly these names, each importable from the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fabric

EXPORTED = [
    "AuthError",
    "BatchGone",
    "Client",
    "Endpoint",
    "EndpointError",
    "EndpointShutdown",
    "EndpointStatus",
    "Executor",
    "FabricError",
    "Forbidden",
    "FunctionNotAllowed",
    "InvalidRequest",
    "ManagerLost",
    "NoEligibleEndpoint", "NotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "RateLimited",
    "RemoteExecutionError",
    "SerializationError",
    "ServiceError",
    "ServiceInternalError",
    "ServiceUnavailable",
    "TaskCancelled",
    "DependencyFailed",
    "NotAFabricFuture",
    "TaskRef",
    "TaskError",
    "TaskPending",
    "TaskTimeout",
    "WorkerLost",
    "__version__",
]


def test_all_is_pinned() -> None:
    assert sorted(fabric.__all__) == sorted(EXPORTED)
    assert len(fabric.__all__) == len(set(fabric.__all__))


@pytest.mark.parametrize("name", EXPORTED)
def test_each_exported_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from fabric import {name}", namespace)  # noqa: S102 - the import statement is the test
    assert namespace[name] is getattr(fabric, name)


@pytest.mark.parametrize("name", [n for n in EXPORTED if n != "__version__"])
def test_exported_classes_name_themselves(name: str) -> None:
    member = getattr(fabric, name)
    assert isinstance(member, type)
    assert member.__name__ == name


def test_errors_are_the_ones_in_fabric_errors() -> None:
    from fabric import errors

    for name in EXPORTED:
        if hasattr(errors, name):
            assert getattr(fabric, name) is getattr(errors, name)


def test_version_is_a_string() -> None:
    assert isinstance(fabric.__version__, str)
    assert fabric.__version__.count(".") >= 1


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        fabric.NoSuchThing  # noqa: B018
    with pytest.raises(ImportError):
        exec("from fabric import NoSuchThing", {})  # noqa: S102


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from fabric import *", namespace)  # noqa: S102
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPORTED)


def test_importing_fabric_stays_light() -> None:
    """Workers import ``fabric``; the SDK facade must only load when it is used."""
    code = "import sys, fabric; print(sorted(m for m in ('sdk', 'sdk.endpoint', 'zmq') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
