"""The core knows no role: no module of ``fabric/`` but the facade (``__init__``) and the CLI
entry point (``cli``) imports a role package, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import fabric

ROLES = {"endpoint", "service", "sdk", "interchange", "manager", "worker", "benchmarks"}
FACADE = {"__init__.py", "cli.py"}
CORE = Path(fabric.__file__).resolve().parent


def imported_packages(path: Path) -> set[str]:
    """The top-level packages that ``path`` imports anywhere (module level or in a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_core_module_imports_a_role_package() -> None:
    modules = sorted(p for p in CORE.glob("*.py") if p.name not in FACADE)
    names = {p.name for p in modules}
    assert {"protocol.py", "serialize.py", "errors.py", "config.py", "streams.py", "process.py"} <= names
    reaching = {p.name: sorted(imported_packages(p) & ROLES) for p in modules}
    assert {name: roles for name, roles in reaching.items() if roles} == {}
