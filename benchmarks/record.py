"""Record directories: ``record.json`` (machine, versions, configuration, figures) and ``report.md``.

A record holds one or more *sections* (``endpoint``, ``service``, ``peers``, ``scale``, ``micro``), each
the dictionary its module's ``run_section`` returned; ``report.md`` is rendered from the
record alone (each section module's ``report_lines``), so it can be redrawn at any time.
"""

from __future__ import annotations

import datetime
import importlib
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import fabric
from benchmarks.measure import machine_info, versions

SCHEMA = "fabric-bench/1"
RESULTS = Path(__file__).resolve().parent / "results"
"""Where record directories go by default (git-ignored)."""

SECTION_MODULES = {"endpoint": "benchmarks.sweep", "service": "benchmarks.sweep", "peers": "benchmarks.peers",
                   "scale": "benchmarks.scale", "micro": "benchmarks.micro.runner", "routing": "benchmarks.routing"}

NOT_MEASURED: dict[str, str] = {}
"""What the suite knows it does not measure, by topic; every record and report says so (nothing now)."""

Log = Callable[[str], None]


def log(message: str) -> None:
    """Progress for a person: stderr, so stdout keeps only the JSON lines."""
    print(message, file=sys.stderr, flush=True)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def output_directory(requested: Path | None) -> Path:
    """``requested``, or a new ``benchmarks/results/<UTC timestamp>/``; created either way."""
    if requested is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        requested = RESULTS / stamp
        suffix = 1
        while requested.exists():
            suffix += 1
            requested = RESULTS / f"{stamp}-{suffix}"
    requested.mkdir(parents=True, exist_ok=True)
    return requested


def git_commit() -> str | None:
    """The checkout's commit, with ``-dirty`` when it has changes (``None`` outside git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def command_line() -> str:
    """How this process was started, as a person would type it."""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        program = "python -m " + Path(sys.argv[0]).resolve().parent.name
    elif program.endswith(".py"):
        program = "python -m benchmarks." + program[:-3]
    return " ".join([program, shlex.join(sys.argv[1:])]).strip()


def new_record(command: str | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "command": command if command is not None else command_line(),
        "started": now(),
        "finished": None,
        "fabric_version": fabric.__version__,
        "git_commit": git_commit(),
        "machine": machine_info(),
        "versions": versions(),
        "not_measured": dict(NOT_MEASURED),
        "sections": {},
    }


def write(directory: Path, record: dict[str, Any]) -> None:
    """Write ``record.json`` and ``report.md`` (rewritten after each section, so a crash keeps the rest)."""
    (directory / "record.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (directory / "report.md").write_text(render(record), encoding="utf-8")


def load(directory: Path) -> dict[str, Any]:
    record = json.loads((directory / "record.json").read_text(encoding="utf-8"))
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise ValueError(f"{directory / 'record.json'} is not a {SCHEMA} record")
    return record


def latest(root: Path = RESULTS) -> Path | None:
    """The newest record directory under ``root``."""
    found = sorted((p.parent for p in root.glob("*/record.json")), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def render(record: dict[str, Any]) -> str:
    """``report.md`` of a record: how it was made, then a table per section."""
    machine = record["machine"]
    lines = [
        "# Benchmark report",
        "",
        f"- command: `{record['command']}`",
        f"- fabric {record['fabric_version']}, commit {record.get('git_commit') or 'unknown'}; "
        f"started {record['started']}, finished {record.get('finished') or 'not yet'}",
        f"- machine: {machine['usable_cpus']} usable CPUs of {machine['cpu_count']} ({machine.get('cpu_model', '')}), "
        f"{machine['memory_gb']} GiB, {machine['platform']}, {machine['implementation']} {machine['python']}",
        "- versions: " + ", ".join(f"{name} {version}" for name, version in record["versions"].items() if version),
    ]
    lines += [f"- not measured: {text}" for text in record.get("not_measured", {}).values()]
    for name, section in record["sections"].items():
        module = importlib.import_module(SECTION_MODULES[name])
        lines += ["", *module.report_lines(section)]
    return "\n".join(lines) + "\n"


# --- formatting helpers for the section reports -------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def number(value: float | None, digits: int = 0) -> str:
    """``12,345`` / ``1.23``; an em dash for a missing value."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def spread(values: Sequence[float | None], digits: int = 0) -> str:
    """The median of ``values``, with ``(min–max)`` when there are several."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return "—"
    middle = median(present)
    if len(present) == 1:
        return number(middle, digits)
    return f"{number(middle, digits)} ({number(present[0], digits)}–{number(present[-1], digits)})"


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def workers_label(workers: int, usable_cpus: int) -> str:
    return f"{workers} (oversubscribed)" if workers > usable_cpus else str(workers)
