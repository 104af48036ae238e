"""The sans-IO contract (``fabric.sansio``): whatever a machine's ``handle`` answers is carried
out (``execute(machine.handle(event))`` at every call), and ``assert_never`` refuses at run
time what mypy refuses statically. Each machine's own tests check that it raises TypeError
for an event outside its ``Event`` union."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fabric
from fabric.sansio import assert_never

REPOSITORY = Path(fabric.__file__).resolve().parents[1]
CALLERS = ["interchange/interchange.py", "interchange/scaling.py", "manager/manager.py"]
"""The processes that own the machines' sockets."""


def handle_calls(tree: ast.AST) -> list[ast.Call]:
    """Every ``<something>.handle(...)`` call in ``tree``."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "handle"]


def carried_out(tree: ast.AST) -> set[int]:
    """The ids of the calls passed straight to an ``execute...(...)`` call."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr.startswith("execute"):
            found.update(id(argument) for argument in node.args)
    return found


@pytest.mark.parametrize("path", CALLERS)
def test_every_handle_result_is_executed(path: str) -> None:
    tree = ast.parse((REPOSITORY / path).read_text(), path)
    calls = handle_calls(tree)
    assert calls, f"{path} calls no handle()"
    executed = carried_out(tree)
    dropped = [f"{path}:{call.lineno}" for call in calls if id(call) not in executed]
    assert dropped == []


def test_assert_never_raises_type_error_at_run_time() -> None:
    with pytest.raises(TypeError, match="unexpected str"):
        assert_never("not an event")  # type: ignore[arg-type]
